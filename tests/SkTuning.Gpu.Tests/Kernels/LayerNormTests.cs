using SkTuning.Gpu.Kernels;
using SkTuning.Gpu.Tests.Support;
using static SkTuning.Gpu.Tests.Kernels.OpsTest;

namespace SkTuning.Gpu.Tests.Kernels;

public class LayerNormTests(SimulatorFixture sim) : IClassFixture<SimulatorFixture>
{
    [Fact]
    public void ReferenceBackwardMatchesFiniteDifferences()
    {
        var rng = new Random(1);
        int rows = 4, d = 6;
        double eps = 1e-5;
        var x = D(TestData.Random(rng, rows * d, 2f)); var gamma = D(TestData.Random(rng, d)); var beta = D(TestData.Random(rng, d));
        var w = D(TestData.Random(rng, rows * d));
        double Loss()
        {
            double[] y = new double[rows * d], m = new double[rows], s = new double[rows];
            LayerNorm.ForwardReference(x, gamma, beta, y, m, s, rows, d, eps);
            return TestData.Dot(w, y);
        }
        double[] y0 = new double[rows * d], mean = new double[rows], rstd = new double[rows];
        LayerNorm.ForwardReference(x, gamma, beta, y0, mean, rstd, rows, d, eps);
        double[] dx = new double[x.Length], dg = new double[d], db = new double[d];
        LayerNorm.BackwardReference(w, x, gamma, mean, rstd, dx, dg, db, rows, d);
        Close(dx, TestData.FiniteDifference(x, Loss), what: "dx");
        Close(dg, TestData.FiniteDifference(gamma, Loss), what: "dGamma");
        Close(db, TestData.FiniteDifference(beta, Loss), what: "dBeta");
    }

    [Theory]
    [InlineData(37, 67)]
    [InlineData(37, 384)]
    [InlineData(300, 384)]
    public void CpuMatchesReference(int rows, int d)
    {
        var rng = new Random(rows * 7 + d);
        float eps = 1e-12f;
        float[] x = TestData.Random(rng, rows * d, 3f), gamma = TestData.Random(rng, d), beta = TestData.Random(rng, d);
        for (int i = 0; i < x.Length; i++) x[i] += 0.5f;   // a non-zero mean
        float[] y = TestData.Poisoned(x.Length), mean = TestData.Poisoned(rows), rstd = TestData.Poisoned(rows);
        LayerNorm.Forward(x, gamma, beta, y, mean, rstd, rows, d, eps);
        double[] yr = new double[x.Length], mr = new double[rows], sr = new double[rows];
        LayerNorm.ForwardReference(D(x), D(gamma), D(beta), yr, mr, sr, rows, d, eps);
        Close(y, yr, what: "y");
        Close(mean, mr, what: "mean");
        Close(rstd, sr, what: "rstd");

        float[] dy = TestData.Random(rng, x.Length), dx0 = TestData.Random(rng, x.Length), dg0 = TestData.Random(rng, d), db0 = TestData.Random(rng, d);
        float[] dx = (float[])dx0.Clone(), dg = (float[])dg0.Clone(), db = (float[])db0.Clone();
        LayerNorm.Backward(dy, x, gamma, mean, rstd, dx, dg, db, rows, d);
        double[] rdx = new double[x.Length], rdg = new double[d], rdb = new double[d];
        LayerNorm.BackwardReference(D(dy), D(x), D(gamma), mr, sr, rdx, rdg, rdb, rows, d);
        Close(Delta(dx, dx0), rdx, what: "dx");
        Close(Delta(dg, dg0), rdg, what: "dGamma");
        Close(Delta(db, db0), rdb, what: "dBeta");

        var dxOnly = (float[])dx0.Clone();
        LayerNorm.Backward(dy, x, gamma, mean, rstd, dxOnly, [], [], rows, d);   // frozen γ/β
        Assert.Equal(dx, dxOnly);
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
        float[] x = TestData.Random(rng, rows * d, 2f), gamma = TestData.Random(rng, d), beta = TestData.Random(rng, d), dy = TestData.Random(rng, rows * d);
        float[] dx0 = TestData.Random(rng, x.Length), dg0 = TestData.Random(rng, d), db0 = TestData.Random(rng, d);
        using var bx = Up(dev, x); using var bg = Up(dev, gamma); using var bb = Up(dev, beta);
        using var by = Up(dev, TestData.Poisoned(x.Length)); using var bm = Up(dev, TestData.Poisoned(rows)); using var bs = Up(dev, TestData.Poisoned(rows));
        using var bdy = Up(dev, dy); using var bdx = Up(dev, dx0); using var bdg = Up(dev, dg0); using var bdb = Up(dev, db0);
        LayerNorm.Forward(dev, bx.View, bg.View, bb.View, by.View, bm.View, bs.View, rows, d, eps);
        LayerNorm.Backward(dev, bdy.View, bx.View, bg.View, bm.View, bs.View, bdx.View, bdg.View, bdb.View, rows, d);
        double[] yr = new double[x.Length], mr = new double[rows], sr = new double[rows];
        LayerNorm.ForwardReference(D(x), D(gamma), D(beta), yr, mr, sr, rows, d, eps);
        double[] rdx = new double[x.Length], rdg = new double[d], rdb = new double[d];
        LayerNorm.BackwardReference(D(dy), D(x), D(gamma), mr, sr, rdx, rdg, rdb, rows, d);
        Close(Down(dev, by), yr, what: "y");
        Close(Down(dev, bs), sr, what: "rstd");
        Close(Delta(Down(dev, bdx), dx0), rdx, what: "dx");
        Close(Delta(Down(dev, bdg), dg0), rdg, what: "dGamma");
        Close(Delta(Down(dev, bdb), db0), rdb, what: "dBeta");
    }

    [Fact]
    public void KernelsCompileToPtx() => CompilesToPtx(typeof(LayerNorm), "BackwardParamsKernel");

    [Fact]
    public void WarpPerRowKernelsCompileToPtxWithShuffles() => CompilesToPtxWithShuffles(typeof(LayerNorm), "ForwardKernel", "BackwardInputKernel");

    [Fact]
    public void BadSizesThrow()
    {
        Throws(() => LayerNorm.Forward(new float[12], new float[4], new float[3], new float[12], new float[3], new float[3], 3, 4, 1e-12f), "beta", "3", "4");
        Throws(() => LayerNorm.Forward(new float[12], new float[4], new float[4], new float[12], new float[2], new float[3], 3, 4, 1e-12f), "mean", "2", "3");
        Throws(() => LayerNorm.Backward(new float[12], new float[12], new float[4], new float[3], new float[3], new float[11], [], [], 3, 4), "dx", "11", "12");
    }
}
