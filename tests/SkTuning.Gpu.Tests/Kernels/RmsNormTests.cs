using SkTuning.Gpu.Kernels;
using SkTuning.Gpu.Tests.Support;
using static SkTuning.Gpu.Tests.Kernels.OpsTest;

namespace SkTuning.Gpu.Tests.Kernels;

public class RmsNormTests(SimulatorFixture sim) : IClassFixture<SimulatorFixture>
{
    [Fact]
    public void ReferenceBackwardMatchesFiniteDifferences()
    {
        var rng = new Random(1);
        int rows = 4, d = 6;
        double eps = 1e-6;
        var x = D(TestData.Random(rng, rows * d, 2f)); var gamma = D(TestData.Random(rng, d));
        var w = D(TestData.Random(rng, rows * d));
        double Loss()
        {
            double[] y = new double[rows * d], s = new double[rows];
            RmsNorm.ForwardReference(x, gamma, y, s, rows, d, eps);
            return TestData.Dot(w, y);
        }
        double[] y0 = new double[rows * d], rstd = new double[rows];
        RmsNorm.ForwardReference(x, gamma, y0, rstd, rows, d, eps);
        double[] dx = new double[x.Length], dg = new double[d];
        RmsNorm.BackwardReference(w, x, gamma, rstd, dx, dg, rows, d);
        Close(dx, TestData.FiniteDifference(x, Loss), what: "dx");
        Close(dg, TestData.FiniteDifference(gamma, Loss), what: "dGamma");
    }

    [Theory]
    [InlineData(37, 67)]
    [InlineData(37, 384)]
    [InlineData(300, 2048)]
    public void CpuMatchesReference(int rows, int d)
    {
        var rng = new Random(rows * 7 + d);
        float eps = 1e-6f;
        float[] x = TestData.Random(rng, rows * d, 3f), gamma = TestData.Random(rng, d);
        for (int i = 0; i < x.Length; i++) x[i] += 0.5f;   // a non-zero mean, which RMSNorm must not remove
        float[] y = TestData.Poisoned(x.Length), rstd = TestData.Poisoned(rows);
        RmsNorm.Forward(x, gamma, y, rstd, rows, d, eps);
        double[] yr = new double[x.Length], sr = new double[rows];
        RmsNorm.ForwardReference(D(x), D(gamma), yr, sr, rows, d, eps);
        Close(y, yr, what: "y");
        Close(rstd, sr, what: "rstd");

        float[] dy = TestData.Random(rng, x.Length), dx0 = TestData.Random(rng, x.Length), dg0 = TestData.Random(rng, d);
        float[] dx = (float[])dx0.Clone(), dg = (float[])dg0.Clone();
        RmsNorm.Backward(dy, x, gamma, rstd, dx, dg, rows, d);
        double[] rdx = new double[x.Length], rdg = new double[d];
        RmsNorm.BackwardReference(D(dy), D(x), D(gamma), sr, rdx, rdg, rows, d);
        Close(Delta(dx, dx0), rdx, what: "dx");
        Close(Delta(dg, dg0), rdg, what: "dGamma");

        var dxOnly = (float[])dx0.Clone();
        RmsNorm.Backward(dy, x, gamma, rstd, dxOnly, [], rows, d);   // frozen γ
        Assert.Equal(dx, dxOnly);
        var dgOnly = (float[])dg0.Clone();
        RmsNorm.Backward(dy, x, gamma, rstd, [], dgOnly, rows, d);   // first layer: no dx
        Assert.Equal(dg, dgOnly);
    }

    // A warp per row: rows that do not fill the last group, rows narrower than a warp, and rows a warp strides over.
    [Theory]
    [InlineData(5, 7)]
    [InlineData(9, 70)]
    public void SimulatorMatchesReference(int rows, int d)
    {
        var dev = sim.Device;
        var rng = new Random(3 + d);
        float eps = 1e-5f;
        float[] x = TestData.Random(rng, rows * d, 2f), gamma = TestData.Random(rng, d), dy = TestData.Random(rng, rows * d);
        float[] dx0 = TestData.Random(rng, x.Length), dg0 = TestData.Random(rng, d);
        using var bx = Up(dev, x); using var bg = Up(dev, gamma);
        using var by = Up(dev, TestData.Poisoned(x.Length)); using var bs = Up(dev, TestData.Poisoned(rows));
        using var bdy = Up(dev, dy); using var bdx = Up(dev, dx0); using var bdg = Up(dev, dg0);
        RmsNorm.Forward(dev, bx.View, bg.View, by.View, bs.View, rows, d, eps);
        RmsNorm.Backward(dev, bdy.View, bx.View, bg.View, bs.View, bdx.View, bdg.View, rows, d);
        double[] yr = new double[x.Length], sr = new double[rows];
        RmsNorm.ForwardReference(D(x), D(gamma), yr, sr, rows, d, eps);
        double[] rdx = new double[x.Length], rdg = new double[d];
        RmsNorm.BackwardReference(D(dy), D(x), D(gamma), sr, rdx, rdg, rows, d);
        Close(Down(dev, by), yr, what: "y");
        Close(Down(dev, bs), sr, what: "rstd");
        Close(Delta(Down(dev, bdx), dx0), rdx, what: "dx");
        Close(Delta(Down(dev, bdg), dg0), rdg, what: "dGamma");
    }

    [Fact]
    public void KernelsCompileToPtx() => CompilesToPtx(typeof(RmsNorm), "BackwardGammaKernel");

    [Fact]
    public void WarpPerRowKernelsCompileToPtxWithShuffles() => CompilesToPtxWithShuffles(typeof(RmsNorm), "ForwardKernel", "BackwardInputKernel");

    [Fact]
    public void BadSizesThrow()
    {
        Throws(() => RmsNorm.Forward(new float[12], new float[3], new float[12], new float[3], 3, 4, 1e-6f), "gamma", "3", "4");
        Throws(() => RmsNorm.Forward(new float[12], new float[4], new float[12], new float[2], 3, 4, 1e-6f), "rstd", "2", "3");
        Throws(() => RmsNorm.Backward(new float[12], new float[12], new float[4], new float[3], new float[11], [], 3, 4), "dx", "11", "12");
        Throws(() => RmsNorm.Backward(new float[12], new float[12], new float[4], new float[3], [], new float[5], 3, 4), "dGamma", "5", "4");
    }
}
