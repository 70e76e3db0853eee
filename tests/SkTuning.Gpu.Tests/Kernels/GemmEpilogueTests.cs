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

    private static (double[] Pre, double[] Act) ForwardReference(float[] x, float[] w, float[] bias, int m = M, int n = N, int k = K)
    {
        var pre = new double[m * n];
        Gemm.NNReference(m, n, k, D(x), D(w), pre, D(bias));
        var act = new double[m * n];
        Gelu.ForwardReference(pre, act);
        return (pre, act);
    }

    /// <summary>dPre = GELU'(pre)·(dy·Wᵀ): dy [M, K], W [N, K].</summary>
    private static double[] BackwardReference(float[] dy, float[] w, float[] pre, int m = M, int n = N, int k = K)
    {
        var product = new double[m * n];
        Gemm.NTReference(m, n, k, D(dy), D(w), product);
        var dPre = new double[m * n];
        Gelu.BackwardReference(product, D(pre), dPre);
        return dPre;
    }

    /// <summary>
    /// Every GEMM tier forced, at edge shapes it takes: the 64×64 tier with no dimension a multiple of 4; the vectorised
    /// tier with two row tiles, the last partial; split-K (2 splits, chunks 24 + 20) with two column tiles, where the epilogue
    /// runs once, on the in-order sum.
    /// </summary>
    [Theory]
    [InlineData(GemmTier.Tiled64, M, N, K)]
    [InlineData(GemmTier.Vectorized128, 137, 68, 20)]
    [InlineData(GemmTier.SplitK, 37, 132, 44)]
    public void SimulatorEpiloguesMatchTheReference(GemmTier tier, int m, int n, int k)
    {
        var dev = sim.Device;
        var rng = new Random(11 + m + n + k);
        float[] x = TestData.Random(rng, m * k), w = TestData.Random(rng, k * n), bias = TestData.Random(rng, n), dy = TestData.Random(rng, m * k);
        var (pre, act) = ForwardReference(x, w, bias, m, n, k);
        using var bx = Up(dev, x); using var bw = Up(dev, w); using var bb = Up(dev, bias);
        using var bpre = Up(dev, TestData.Poisoned(m * n)); using var bact = Up(dev, TestData.Poisoned(m * n));
        GemmGpu.NN(dev, m, n, k, bx.View, bw.View, bact.View, bb.View, tier: tier, epilogue: GemmEpilogue.Gelu, aux: bpre.View);
        Close(Down(dev, bpre), pre, 1e-3, what: $"{tier} pre");
        Close(Down(dev, bact), act, 1e-3, what: $"{tier} act");

        var preF = Array.ConvertAll(pre, v => (float)v);
        var wt = TestData.Random(rng, n * k);   // the backward's W [N, K]
        using var bdy = Up(dev, dy); using var bwt = Up(dev, wt); using var bp = Up(dev, preF); using var bd = Up(dev, TestData.Poisoned(m * n));
        GemmGpu.NT(dev, m, n, k, bdy.View, bwt.View, bd.View, tier: tier, epilogue: GemmEpilogue.GeluSlope, aux: bp.View);
        Close(Down(dev, bd), BackwardReference(dy, wt, preF, m, n, k), 1e-3, what: $"{tier} dPre");
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
