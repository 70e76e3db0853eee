using SkTuning.Gpu.Engine;
using SkTuning.Gpu.Kernels;
using SkTuning.Gpu.Kernels.Gpu;

namespace SkTuning.Gpu.Tests.Engine;

/// <summary>
/// An operation on zero elements launches nothing: ILGPU's simulator shrugs at an empty grid, CUDA refuses it
/// (CUDA_ERROR_INVALID_VALUE), so every wrapper must return before the launch. Counted with <see cref="GpuDevice.Launches"/>.
/// </summary>
public class ZeroLengthLaunchTests
{
    [Fact]
    public void EveryOperationOnZeroElementsLaunchesNothing()
    {
        using var gpu = new GpuBackend(GpuDevice.CreateCpuSimulator());
        var none = default(DeviceView<float>);
        var noInts = default(DeviceView<int>);
        using var one = gpu.Allocate(4);
        var ops = new (string Name, Action Run)[]
        {
            ("embedding forward", () => gpu.EmbeddingForward(noInts, noInts, noInts, one.All, none, none, none, 0, 0, 4)),
            ("embedding backward", () => gpu.EmbeddingBackward(noInts, noInts, noInts, none, one.All, none, none, 0, 0, 4)),
            ("column block add", () => gpu.AddColumnBlock(none, none, 0, 2, 4, 0, 1f)),
            ("column block backward", () => gpu.ColumnBlockBackward(none, none, 0, 2, 4, 0, 1f)),
            ("prepend", () => gpu.Prepend(none, none, none, 0, 0, 0, 4)),
            ("prepend backward", () => gpu.PrependBackward(none, none, none, 0, 0, 0, 4)),
            ("gemm", () => gpu.Gemm(GemmOp.NN, 0, 4, 4, none, one.All.Slice(0, 0), none)),
            ("layernorm forward", () => gpu.LayerNormForward(none, one.All, one.All, none, none, none, 0, 4, 1e-5f)),
            ("layernorm backward", () => gpu.LayerNormBackward(none, none, one.All, none, none, none, one.All, one.All, 0, 4)),
            ("rmsnorm forward", () => gpu.RmsNormForward(none, one.All, none, none, 0, 4, 1e-5f)),
            ("rmsnorm backward", () => gpu.RmsNormBackward(none, none, one.All, none, none, one.All, 0, 4)),
            ("gelu forward", () => gpu.GeluForward(none, none)),
            ("gelu backward", () => gpu.GeluBackward(none, none, none)),
            ("gelu-tanh forward", () => gpu.GeluTanhForward(none, none)),
            ("gelu-tanh backward", () => gpu.GeluTanhBackward(none, none, none)),
            ("swiglu forward", () => gpu.SwiGluForward(none, none, 0, 4)),
            ("swiglu backward", () => gpu.SwiGluBackward(none, none, none, 0, 4)),
            ("rope forward", () => gpu.RopeForward(none, noInts, one.All, one.All, 0, 8, 2, 4, 4)),
            ("rope backward", () => gpu.RopeBackward(none, noInts, one.All, one.All, 0, 8, 2, 4, 4)),
            ("tanh forward", () => gpu.TanhForward(none, none)),
            ("tanh backward", () => gpu.TanhBackward(none, none, none)),
            ("add", () => gpu.Add(none, none, none)),
            ("accumulate", () => gpu.Accumulate(none, none)),
            ("mean pooling forward", () => gpu.MeanPoolForward(none, noInts, none, 0, 0, 0, 4)),
            ("mean pooling backward", () => gpu.MeanPoolBackward(none, noInts, none, 0, 0, 0, 4)),
            ("dropout forward", () => gpu.DropoutForward(none, none, 0.1f, 1, 0)),
            ("dropout backward", () => gpu.DropoutBackward(none, none, 0.1f, 1, 0)),
            ("bias backward", () => gpu.BiasBackward(none, one.All, 0, 4)),
            ("adamw", () => gpu.AdamW(none, none, none, none, new AdamWStep(1e-3f, 0.9f, 0.999f, 1e-8f, 0f, 1), one.Slice(0, 1))),
            ("grouped linear forward", () => gpu.GroupedLinearForward(none, none, none, 2, 0, 4, 4, 0.1f, 1, 0)),
            ("grouped linear backward", () => gpu.GroupedLinearBackward(none, none, none, 2, 0, 4, 4, 0.1f, 1, 0)),
            ("residual + layernorm forward", () => gpu.ResidualLayerNormForward(none, none, none, one.All, one.All, none, none, none, 0, 4, 1e-5f)),
            ("embedding + layernorm forward", () => gpu.EmbeddingLayerNormForward(noInts, noInts, noInts, one.All, none, none, none, one.All, one.All, none,
                none, none, 0, 0, 4, 1e-5f)),
            ("mean pooling + dropout forward", () => gpu.MeanPoolDropoutForward(none, noInts, none, 0, 0, 0, 4, 0.1f, 1)),
            ("mean pooling + dropout backward", () => gpu.MeanPoolDropoutBackward(none, noInts, none, 0, 0, 0, 4, 0.1f, 1)),
            ("gemm + gelu forward", () => gpu.GemmGeluForward(0, 4, 1, none, new WeightMatrix(one.All, default), one.All, none, none)),
            ("gemm + gelu backward", () => gpu.GemmGeluBackward(0, 4, 1, none, new WeightMatrix(one.All, default), none, none, none)),
            ("attention forward", () => gpu.AttentionForward(new AttentionShape(0, 0, 2, 2, 0, 2), -1e4f, false, none, none, none, none, none, noInts, none, none)),
            ("attention backward", () => gpu.AttentionBackward(new AttentionShape(0, 0, 2, 2, 0, 2), none, none, none, none, none, none, none, none)),
        };
        var launched = new List<string>();
        foreach (var (name, run) in ops)
        {
            long before = gpu.Device.Launches;
            try { run(); }
            catch (ArgumentException) { }   // refusing the size is fine too: what CUDA must not see is an empty grid

            if (gpu.Device.Launches != before) launched.Add(name);
        }
        Assert.True(launched.Count == 0, "launched with zero elements: " + string.Join(", ", launched));
    }
}
