using ILGPU.Runtime;
using SkTuning.Gpu.Kernels;
using SkTuning.Gpu.Tests.Support;
using static SkTuning.Gpu.Tests.Kernels.OpsTest;

namespace SkTuning.Gpu.Tests.Kernels;

public class BiasTests(SimulatorFixture sim) : IClassFixture<SimulatorFixture>
{
    [Fact]
    public void ReferenceBackwardMatchesFiniteDifferences()
    {
        var rng = new Random(1);
        int rows = 5, d = 3;
        var x = D(TestData.Random(rng, rows * d)); var bias = D(TestData.Random(rng, d)); var w = D(TestData.Random(rng, rows * d));
        double Loss() { var y = (double[])x.Clone(); Bias.ForwardReference(y, bias, rows, d); return TestData.Dot(w, y); }
        var g = new double[d];
        Bias.BackwardReference(w, g, rows, d);
        Close(g, TestData.FiniteDifference(bias, Loss));
    }

    [Theory]
    [InlineData(37, 67)]
    [InlineData(37, 384)]
    [InlineData(500, 384)]
    public void CpuMatchesReference(int rows, int d)
    {
        var rng = new Random(rows + d);
        float[] x = TestData.Random(rng, rows * d), bias = TestData.Random(rng, d), dy = TestData.Random(rng, rows * d), g0 = TestData.Random(rng, d);
        var y = (float[])x.Clone();
        Bias.Forward(y, bias, rows, d);
        var yr = D(x);
        Bias.ForwardReference(yr, D(bias), rows, d);
        Close(y, yr);
        var g = (float[])g0.Clone();
        Bias.Backward(dy, g, rows, d);
        var gr = new double[d];
        Bias.BackwardReference(D(dy), gr, rows, d);
        Close(Delta(g, g0), gr);
    }

    /// <summary>7 rows: one block, summed straight into dBias; 70 rows: three blocks (the last partial) and the second stage.</summary>
    [Theory]
    [InlineData(7, 5)]
    [InlineData(70, 6)]
    public void SimulatorMatchesReference(int rows, int d)
    {
        var dev = sim.Device;
        var rng = new Random(rows);
        float[] x = TestData.Random(rng, rows * d), bias = TestData.Random(rng, d), dy = TestData.Random(rng, rows * d), g0 = TestData.Random(rng, d);
        using var by = Up(dev, x); using var bb = Up(dev, bias); using var bdy = Up(dev, dy); using var bg = Up(dev, g0);
        Bias.Forward(dev, by.View, bb.View, rows, d);
        Bias.Backward(dev, bdy.View, bg.View, rows, d);
        var yr = D(x); Bias.ForwardReference(yr, D(bias), rows, d);
        var gr = new double[d]; Bias.BackwardReference(D(dy), gr, rows, d);
        Close(Down(dev, by), yr);
        Close(Delta(Down(dev, bg), g0), gr);
    }

    [Fact]
    public void ColumnSumsRepeatBitForBit()
    {
        var dev = sim.Device;
        var rng = new Random(4);
        int rows = 100, d = 3;
        float[] dy = TestData.Random(rng, rows * d), g0 = TestData.Random(rng, d);
        using var bdy = Up(dev, dy); using var bg = Up(dev, g0);
        Bias.Backward(dev, bdy.View, bg.View, rows, d);
        var first = Down(dev, bg);
        bg.CopyFromCPU(g0);
        Bias.Backward(dev, bdy.View, bg.View, rows, d);
        Assert.Equal(first, Down(dev, bg));
    }

    [Fact]
    public void KernelsCompileToPtx() => CompilesToPtx(typeof(Bias), "ForwardKernel", "ColumnSumsKernel", "ReducePartialsKernel");

    [Fact]
    public void BadSizesThrow()
    {
        Throws(() => Bias.Forward(new float[12], new float[5], 3, 4), "bias", "5", "4");
        Throws(() => Bias.Backward(new float[13], new float[4], 3, 4), "dy", "13", "12");
    }
}
