using SkTuning.Gpu.Kernels;
using SkTuning.Gpu.Tests.Support;
using static SkTuning.Gpu.Tests.Kernels.OpsTest;

namespace SkTuning.Gpu.Tests.Kernels;

public class ResidualLayerNormTests(SimulatorFixture sim) : IClassFixture<SimulatorFixture>
{
    private static (double[] Sum, double[] Y, double[] Mean, double[] Rstd) Reference(float[] x, float[] residual, float[] gamma, float[] beta, int rows, int d)
    {
        double[] sum = new double[rows * d], y = new double[rows * d], mean = new double[rows], rstd = new double[rows];
        ResidualLayerNorm.ForwardReference(D(x), D(residual), sum, D(gamma), D(beta), y, mean, rstd, rows, d, 1e-12);
        return (sum, y, mean, rstd);
    }

    [Theory]
    [InlineData(37, 384)]
    [InlineData(5, 7)]
    public void CpuMatchesReferenceInPlace(int rows, int d)
    {
        var rng = new Random(rows + d);
        float[] x = TestData.Random(rng, rows * d), residual = TestData.Random(rng, rows * d), gamma = TestData.Random(rng, d), beta = TestData.Random(rng, d);
        var r = Reference(x, residual, gamma, beta, rows, d);
        float[] sum = (float[])x.Clone(), y = TestData.Poisoned(rows * d), mean = TestData.Poisoned(rows), rstd = TestData.Poisoned(rows);
        ResidualLayerNorm.Forward(sum, residual, sum, gamma, beta, y, mean, rstd, rows, d, 1e-12f);   // sum aliases x, as the engine calls it
        Close(sum, r.Sum, what: "sum"); Close(y, r.Y, what: "y"); Close(mean, r.Mean, what: "mean"); Close(rstd, r.Rstd, what: "rstd");
    }

    [Theory]
    [InlineData(9, 40)]
    [InlineData(3, 5)]
    public void SimulatorMatchesReferenceInPlace(int rows, int d)
    {
        var dev = sim.Device;
        var rng = new Random(7 + rows);
        float[] x = TestData.Random(rng, rows * d), residual = TestData.Random(rng, rows * d), gamma = TestData.Random(rng, d), beta = TestData.Random(rng, d);
        var r = Reference(x, residual, gamma, beta, rows, d);
        using var bs = Up(dev, x); using var br = Up(dev, residual); using var bg = Up(dev, gamma); using var bb = Up(dev, beta);
        using var by = Up(dev, TestData.Poisoned(rows * d)); using var bm = Up(dev, TestData.Poisoned(rows)); using var bv = Up(dev, TestData.Poisoned(rows));
        ResidualLayerNorm.Forward(dev, bs.View, br.View, bs.View, bg.View, bb.View, by.View, bm.View, bv.View, rows, d, 1e-12f);
        Close(Down(dev, bs), r.Sum, what: "sum"); Close(Down(dev, by), r.Y, what: "y");
        Close(Down(dev, bm), r.Mean, what: "mean"); Close(Down(dev, bv), r.Rstd, what: "rstd");
    }

    [Fact]
    public void KernelCompilesToPtx() => CompilesToPtxWithShuffles(typeof(ResidualLayerNorm), "ForwardKernel");

    [Fact]
    public void BadSizesAreRefused() =>
        Throws(() => ResidualLayerNorm.Forward(new float[6], new float[5], new float[6], new float[3], new float[3], new float[6], new float[2], new float[2], 2, 3, 1e-5f),
            "residual", "rows·d");
}
