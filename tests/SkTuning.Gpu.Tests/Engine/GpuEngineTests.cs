using SkTuning.Gpu.Benchmarking;
using SkTuning.Gpu.Engine;
using SkTuning.Gpu.Import;
using SkTuning.Gpu.Kernels.Gpu;
using SkTuning.Gpu.Onnx;
using SkTuning.Gpu.Tests.Support;

namespace SkTuning.Gpu.Tests.Engine;

/// <summary>
/// The same engine on the ILGPU backend: on ILGPU's CPU simulator at tiny sizes here (every kernel runs),
/// and on a real CUDA device at MiniLM size when one is present.
/// </summary>
public class GpuEngineTests
{
    private static readonly BertFixtureOptions Tiny = new(Layers: 2, Hidden: 16, Heads: 2, FfnSize: 32, VocabSize: 40, MaxPositions: 12, Seed: 3);

    private sealed record Run(float[] Hidden, float[] DPrompt, float[] DPrefix);

    private static Run ForwardBackward(Backend backend, ModelWeights weights, TokenBatch batch, float[] prompt, float[] prefix, float[] dHidden)
    {
        using var engine = new TransformerEngine(backend, weights.Spec, weights);
        using var p = backend.Allocate(prompt.Length); backend.Upload(prompt, p.Slice(0, prompt.Length));
        using var k = backend.Allocate(prefix.Length); backend.Upload(prefix, k.Slice(0, prefix.Length));
        using var dh = backend.Allocate(dHidden.Length); backend.Upload(dHidden, dh.All);
        using var dp = backend.Allocate(prompt.Length);
        using var dk = backend.Allocate(prefix.Length);
        var hidden = engine.Forward(batch, p.Slice(0, prompt.Length), k.Slice(0, prefix.Length));
        var h = new float[hidden.Length];
        backend.Download(hidden, h);
        engine.Backward(dh.All, dp.Slice(0, prompt.Length), dk.Slice(0, prefix.Length));
        var gp = new float[prompt.Length]; backend.Download(dp.Slice(0, prompt.Length), gp);
        var gk = new float[prefix.Length]; backend.Download(dk.Slice(0, prefix.Length), gk);
        return new Run(h, gp, gk);
    }

    private static void AssertClose(float[] actual, float[] expected, string what, double tolerance = 1e-4)
    {
        double err = TestData.MaxRelError(actual, TestData.ToDouble(expected));
        Assert.True(err <= tolerance, $"{what}: max relative error {err:E2}");
    }

    [Fact]
    public void SimulatorEngineMatchesTheCpuEngineForwardAndBackward()
    {
        var weights = FixtureModels.RandomBertWeights(Tiny);
        var rng = new Random(21);
        var batch = TransformerEngineTests.RandomBatch(rng, 2, 5, Tiny.VocabSize);
        var prompt = TestData.Random(rng, 2 * Tiny.Hidden);
        var prefix = TestData.Random(rng, 2 * Tiny.Layers * 3 * Tiny.Hidden);
        var dHidden = TestData.Random(rng, batch.Batch * (2 + batch.SeqLen) * Tiny.Hidden);
        using var cpu = new CpuBackend();
        var expected = ForwardBackward(cpu, weights, batch, prompt, prefix, dHidden);
        using var gpu = new GpuBackend(GpuDevice.CreateCpuSimulator());
        var actual = ForwardBackward(gpu, weights, batch, prompt, prefix, dHidden);
        AssertClose(actual.Hidden, expected.Hidden, "hidden");
        AssertClose(actual.DPrompt, expected.DPrompt, "prompt gradient");
        AssertClose(actual.DPrefix, expected.DPrefix, "prefix gradient");
    }

    [CudaFact]
    public void CudaEngineMatchesTheCpuEngineOnMiniLm()
    {
        var model = FrozenModel.Load("minilm");
        var rng = new Random(4);
        var batch = TransformerEngineTests.RandomBatch(rng, 32, 64, 30_000);
        int m = 12, d = model.Spec.Hidden;
        var prefix = TestData.Random(rng, 2 * model.Spec.Layers * m * d);
        var dHidden = TestData.Random(rng, batch.Batch * batch.SeqLen * d);
        using var cpu = new CpuBackend();
        var expected = ForwardBackward(cpu, model.Weights, batch, [], prefix, dHidden);
        using var gpu = new GpuBackend(GpuDevice.CreateCuda());
        var actual = ForwardBackward(gpu, model.Weights, batch, [], prefix, dHidden);
        // GPU transcendental approximations (ex2.approx) differ from the CPU's at ~1e-6 per op; 6 layers compound.
        Assert.True(DeviceCheck.Normwise(actual.Hidden, expected.Hidden) <= 1e-4, $"hidden {DeviceCheck.Normwise(actual.Hidden, expected.Hidden):E2}");
        Assert.True(DeviceCheck.Normwise(actual.DPrefix, expected.DPrefix) <= 1e-3, $"prefix gradient {DeviceCheck.Normwise(actual.DPrefix, expected.DPrefix):E2}");
    }
}
