using SkTuning.Gpu.Kernels;
using SkTuning.Gpu.Tests.Support;
using static SkTuning.Gpu.Tests.Kernels.OpsTest;

namespace SkTuning.Gpu.Tests.Kernels;

public class EmbeddingLayerNormTests(SimulatorFixture sim) : IClassFixture<SimulatorFixture>
{
    private const int B = 2, T = 5, Dim = 40, Vocab = 11, Positions = 7, TypeCount = 2, Rows = B * T;

    [Theory]
    [InlineData(true, true)]
    [InlineData(false, false)]   // no position or type table (GPT-style tables, BLOOM)
    public void CpuAndSimulatorMatchTheReference(bool positionTable, bool typeTable)
    {
        var dev = sim.Device;
        var rng = new Random(positionTable ? 1 : 2);
        int[] ids = Ints(rng, Rows, Vocab), types = Ints(rng, Rows, TypeCount), positions = Ints(rng, Rows, Positions);
        float[] wte = TestData.Random(rng, Vocab * Dim), wpe = positionTable ? TestData.Random(rng, Positions * Dim) : [],
            wtt = typeTable ? TestData.Random(rng, TypeCount * Dim) : [], gamma = TestData.Random(rng, Dim), beta = TestData.Random(rng, Dim);
        double[] sum = new double[Rows * Dim], y = new double[Rows * Dim], mean = new double[Rows], rstd = new double[Rows];
        EmbeddingLayerNorm.ForwardReference(ids, types, positions, D(wte), D(wpe), D(wtt), sum, D(gamma), D(beta), y, mean, rstd, B, T, Dim, 1e-12);

        float[] cs = TestData.Poisoned(Rows * Dim), cy = TestData.Poisoned(Rows * Dim), cm = TestData.Poisoned(Rows), cr = TestData.Poisoned(Rows);
        EmbeddingLayerNorm.Forward(ids, types, positions, wte, wpe, wtt, cs, gamma, beta, cy, cm, cr, B, T, Dim, 1e-12f);
        Close(cs, sum, what: "cpu sum"); Close(cy, y, what: "cpu y"); Close(cm, mean, what: "cpu mean"); Close(cr, rstd, what: "cpu rstd");

        using var bi = Up(dev, ids); using var bt = Up(dev, types); using var bp = Up(dev, positions);
        using var bwte = Up(dev, wte); using var bwpe = UpOrNull(dev, wpe); using var bwtt = UpOrNull(dev, wtt);
        using var bg = Up(dev, gamma); using var bb = Up(dev, beta);
        using var bs = Up(dev, TestData.Poisoned(Rows * Dim)); using var by = Up(dev, TestData.Poisoned(Rows * Dim));
        using var bm = Up(dev, TestData.Poisoned(Rows)); using var br = Up(dev, TestData.Poisoned(Rows));
        EmbeddingLayerNorm.Forward(dev, bi.View, bt.View, bp.View, bwte.View, View(bwpe), View(bwtt), bs.View, bg.View, bb.View, by.View, bm.View, br.View,
            B, T, Dim, 1e-12f);
        Close(Down(dev, bs), sum, what: "gpu sum"); Close(Down(dev, by), y, what: "gpu y");
        Close(Down(dev, bm), mean, what: "gpu mean"); Close(Down(dev, br), rstd, what: "gpu rstd");
    }

    [Fact]
    public void KernelCompilesToPtx() => CompilesToPtxWithShuffles(typeof(EmbeddingLayerNorm), "ForwardKernel");
}
