using SkTuning.Gpu.Engine;
using SkTuning.Gpu.Kernels;
using SkTuning.Gpu.Tests.Support;
using static SkTuning.Gpu.Tests.Kernels.OpsTest;

namespace SkTuning.Gpu.Tests.Kernels;

/// <summary>
/// The FFN's GELU fused into the GPU GEMM's epilogue (forward: pre-activation saved, GELU stored; backward: the product
/// times GELU'(pre)), against the fp64 GEMM and GELU references, and the backends' fused FFN ops against the same.
/// </summary>
public class GemmEpilogueTests(SimulatorFixture sim) : IClassFixture<SimulatorFixture>
{
    private const int M = 37, N = 70, K = 19;   // edge tiles in every direction

    private static (double[] Pre, double[] Act) ForwardReference(float[] x, float[] w, float[] bias)
    {
        var pre = new double[M * N];
        Gemm.NNReference(M, N, K, D(x), D(w), pre, D(bias));
        var act = new double[M * N];
        Gelu.ForwardReference(pre, act);
        return (pre, act);
    }

    /// <summary>dPre = GELU'(pre)·(dy·Wᵀ): dy [M, K], W [N, K].</summary>
    private static double[] BackwardReference(float[] dy, float[] w, float[] pre)
    {
        var product = new double[M * N];
        Gemm.NTReference(M, N, K, D(dy), D(w), product);
        var dPre = new double[M * N];
        Gelu.BackwardReference(product, D(pre), dPre);
        return dPre;
    }

    [Fact]
    public void SimulatorEpiloguesMatchTheReference()
    {
        var dev = sim.Device;
        var rng = new Random(11);
        float[] x = TestData.Random(rng, M * K), w = TestData.Random(rng, K * N), bias = TestData.Random(rng, N), dy = TestData.Random(rng, M * K);
        var (pre, act) = ForwardReference(x, w, bias);
        using var bx = Up(dev, x); using var bw = Up(dev, w); using var bb = Up(dev, bias);
        using var bpre = Up(dev, TestData.Poisoned(M * N)); using var bact = Up(dev, TestData.Poisoned(M * N));
        GemmGpu.NN(dev, M, N, K, bx.View, bw.View, bact.View, bb.View, epilogue: GemmEpilogue.Gelu, aux: bpre.View);
        Close(Down(dev, bpre), pre, 1e-3, what: "pre");
        Close(Down(dev, bact), act, 1e-3, what: "act");

        var preF = Array.ConvertAll(pre, v => (float)v);
        var wt = TestData.Random(rng, N * K);   // the backward's W [N, K]
        using var bdy = Up(dev, dy); using var bwt = Up(dev, wt); using var bp = Up(dev, preF); using var bd = Up(dev, TestData.Poisoned(M * N));
        GemmGpu.NT(dev, M, N, K, bdy.View, bwt.View, bd.View, epilogue: GemmEpilogue.GeluSlope, aux: bp.View);
        Close(Down(dev, bd), BackwardReference(dy, wt, preF), 1e-3, what: "dPre");
    }

    [Fact]
    public void BackendsFusedFfnOpsMatchTheReference()
    {
        var rng = new Random(12);
        float[] x = TestData.Random(rng, M * K), w = TestData.Random(rng, K * N), bias = TestData.Random(rng, N), dy = TestData.Random(rng, M * K),
            wt = TestData.Random(rng, N * K);
        var (pre, act) = ForwardReference(x, w, bias);
        foreach (var backend in new Backend[] { new CpuBackend(), new GpuBackend(sim.Device, ownsDevice: false) })
        {
            using var _ = backend;
            using var bx = backend.UploadNew(x); using var bw = backend.UploadNew(w); using var bb = backend.UploadNew(bias);
            using var bpre = backend.UploadNew(TestData.Poisoned(M * N)); using var bact = backend.UploadNew(TestData.Poisoned(M * N));
            backend.GemmGeluForward(M, N, K, bx.All, new WeightMatrix(bw.All, default), bb.All, bpre.All, bact.All);
            Close(backend.ToHost(bpre.All), pre, 1e-3, what: $"{backend.Name} pre");
            Close(backend.ToHost(bact.All), act, 1e-3, what: $"{backend.Name} act");

            var preF = backend.ToHost(bpre.All);
            using var bdy = backend.UploadNew(dy); using var bwt = backend.UploadNew(wt);
            using var bd = backend.UploadNew(TestData.Poisoned(M * N)); using var scratch = backend.UploadNew(TestData.Poisoned(M * N));
            backend.GemmGeluBackward(M, N, K, bdy.All, new WeightMatrix(bwt.All, default), bpre.All, bd.All, scratch.All);
            Close(backend.ToHost(bd.All), BackwardReference(dy, wt, preF), 1e-3, what: $"{backend.Name} dPre");
        }
    }

    [Fact]
    public void AnEpilogueNeedsItsOperandAndDoesNotAccumulate()
    {
        var dev = sim.Device;
        using var a = Up(dev, new float[6]); using var b = Up(dev, new float[6]); using var c = Up(dev, new float[4]);
        Throws(() => GemmGpu.NN(dev, 2, 2, 3, a.View, b.View, c.View, epilogue: GemmEpilogue.Gelu, aux: a.View), "operand", "m*n");
        Throws(() => GemmGpu.NN(dev, 2, 2, 3, a.View, b.View, c.View, accumulate: true, epilogue: GemmEpilogue.Gelu, aux: c.View), "accumulate");
    }
}
