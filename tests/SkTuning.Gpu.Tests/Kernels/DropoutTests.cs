using SkTuning.Gpu.Kernels;
using SkTuning.Gpu.Tests.Support;
using static SkTuning.Gpu.Tests.Kernels.OpsTest;

namespace SkTuning.Gpu.Tests.Kernels;

public class DropoutTests(SimulatorFixture sim) : IClassFixture<SimulatorFixture>
{
    [Fact]
    public void ReferenceBackwardMatchesFiniteDifferences()
    {
        var rng = new Random(1);
        int n = 30;
        var x = D(TestData.Random(rng, n)); var w = D(TestData.Random(rng, n));
        double Loss() { var y = new double[n]; Dropout.ForwardReference(x, y, 0.3f, 42, 5); return TestData.Dot(w, y); }
        var dx = new double[n];
        Dropout.BackwardReference(w, dx, 0.3f, 42, 5);
        Close(dx, TestData.FiniteDifference(x, Loss));
    }

    [Theory]
    [InlineData(37 * 67, 0.1f)]
    [InlineData(37 * 384 * 4, 0.5f)]
    [InlineData(1000, 0f)]
    public void CpuMatchesReference(int n, float p)
    {
        var rng = new Random(n);
        float[] x = TestData.Random(rng, n), dy = TestData.Random(rng, n), dx0 = TestData.Random(rng, n);
        var y = TestData.Poisoned(n);
        Dropout.Forward(x, y, p, 1234, 99);
        var yr = new double[n]; Dropout.ForwardReference(D(x), yr, p, 1234, 99);
        Close(y, yr, what: "y");
        var dx = (float[])dx0.Clone();
        Dropout.Backward(dy, dx, p, 1234, 99);
        var rdx = new double[n]; Dropout.BackwardReference(D(dy), rdx, p, 1234, 99);
        Close(Delta(dx, dx0), rdx, what: "dx");
        if (p == 0) Assert.Equal(x, y);
    }

    [Fact]
    public void MaskStatisticsAndCounterBehaviour()
    {
        const int N = 200_000;
        int kept = 0;
        for (int i = 0; i < N; i++) if (Dropout.Keep(7, i, 0.1f)) kept++;
        Assert.InRange(kept / (double)N, 0.895, 0.905);
        // Offset k shifts the stream: element i at offset k is element i+k at offset 0.
        var x = TestData.Random(new Random(4), 110);
        float[] whole = new float[110], tail = new float[100];
        Dropout.Forward(x, whole, 0.5f, 7, 0);
        Dropout.Forward(x.AsSpan(10), tail, 0.5f, 7, 10);
        Assert.Equal(whole.AsSpan(10).ToArray(), tail);
        int same = 0, sameSeed = 0;
        for (int i = 0; i < 1000; i++)
        {
            if (Dropout.Keep(7, i, 0.5f) == Dropout.Keep(7, i + 1, 0.5f)) same++;
            if (Dropout.Keep(7, i, 0.5f) == Dropout.Keep(8, i, 0.5f)) sameSeed++;
        }
        Assert.InRange(same, 430, 570);
        Assert.InRange(sameSeed, 430, 570);
    }

    [Fact]
    public void SimulatorIsBitwiseEqualToCpu()
    {
        var dev = sim.Device;
        var rng = new Random(3);
        int n = 1001;
        float[] x = TestData.Random(rng, n), dy = TestData.Random(rng, n), dx0 = TestData.Random(rng, n);
        using var bx = Up(dev, x); using var by = Up(dev, TestData.Poisoned(n)); using var bdy = Up(dev, dy); using var bdx = Up(dev, dx0);
        Dropout.Forward(dev, bx.View, by.View, 0.25f, 0xDEADBEEFCAFEUL, 1L << 33);
        Dropout.Backward(dev, bdy.View, bdx.View, 0.25f, 0xDEADBEEFCAFEUL, 1L << 33);
        var y = TestData.Poisoned(n); var dx = (float[])dx0.Clone();
        Dropout.Forward(x, y, 0.25f, 0xDEADBEEFCAFEUL, 1L << 33);
        Dropout.Backward(dy, dx, 0.25f, 0xDEADBEEFCAFEUL, 1L << 33);
        Assert.Equal(y, Down(dev, by));
        Assert.Equal(dx, Down(dev, bdx));
    }

    [Fact]
    public void KernelsCompileToPtx() => CompilesToPtx(typeof(Dropout), "ForwardKernel", "BackwardKernel");

    [Fact]
    public void BadSizesThrow()
    {
        Throws(() => Dropout.Forward(new float[4], new float[5], 0.1f, 1, 0), "y", "5", "4");
        Throws(() => Dropout.Forward(new float[4], new float[4], 1f, 1, 0), "p = 1");
        Throws(() => Dropout.Backward(new float[4], new float[3], 0.1f, 1, 0), "dx", "3", "4");
    }
}
