using SkTuning.Gpu.Kernels;
using SkTuning.Gpu.Tests.Support;
using static SkTuning.Gpu.Tests.Kernels.OpsTest;

namespace SkTuning.Gpu.Tests.Kernels;

public class TanhTests(SimulatorFixture sim) : IClassFixture<SimulatorFixture>
{
    /// <summary>
    /// Scalar and vector float tanh vs Math.Tanh on a dense grid over [−12, 12] (including tiny arguments, where a
    /// naive (e^2x − 1)/(e^2x + 1) loses all relative accuracy). Bound: 3 float ulps relative (3.6e-7).
    /// </summary>
    [Fact]
    public void FloatTanhIsWithinFewUlpsOnDenseGrid()
    {
        double worstScalar = 0, worstVector = 0, atScalar = 0, atVector = 0;
        const int N = 240000;
        var lanes = new float[16];
        for (int i = 0; i < N; i += 16)
        {
            for (int k = 0; k < 16; k++)
            {
                double t = -12 + 24.0 * (i + k) / (N - 1);
                lanes[k] = (float)(k % 4 == 0 ? t * 1e-4 : t);   // some lanes tiny
            }
            var v = Tanh.Value(System.Runtime.Intrinsics.Vector512.Create(lanes));
            for (int k = 0; k < 16; k++)
            {
                double exact = Math.Tanh(lanes[k]);
                double es = Math.Abs(Tanh.Value(lanes[k]) - exact) / Math.Max(Math.Abs(exact), 1e-30);
                double ev = Math.Abs(v[k] - exact) / Math.Max(Math.Abs(exact), 1e-30);
                if (lanes[k] == 0) es = ev = 0;
                if (es > worstScalar) { worstScalar = es; atScalar = lanes[k]; }
                if (ev > worstVector) { worstVector = ev; atVector = lanes[k]; }
            }
        }
        Assert.True(worstScalar <= 3.6e-7, $"scalar: max rel error {worstScalar:g3} at x = {atScalar}");
        Assert.True(worstVector <= 3.6e-7, $"vector: max rel error {worstVector:g3} at x = {atVector}");
        Assert.Equal(1f, Tanh.Value(float.PositiveInfinity));
        Assert.Equal(-1f, Tanh.Value(float.NegativeInfinity));
        Assert.Equal(1f, Tanh.Value(100f));
        Assert.True(float.IsNaN(Tanh.Value(float.NaN)));
        Assert.True(float.IsNaN(Tanh.Value(System.Runtime.Intrinsics.Vector512.Create(float.NaN))[0]));
    }

    [Fact]
    public void ReferenceBackwardMatchesFiniteDifferences()
    {
        var rng = new Random(1);
        int n = 40;
        var x = D(TestData.Random(rng, n, 3f)); var w = D(TestData.Random(rng, n));
        double Loss() { var y = new double[n]; Tanh.ForwardReference(x, y); return TestData.Dot(w, y); }
        var yx = new double[n]; Tanh.ForwardReference(x, yx);
        var dx = new double[n];
        Tanh.BackwardReference(w, yx, dx);
        Close(dx, TestData.FiniteDifference(x, Loss));
    }

    [Theory]
    [InlineData(37 * 67)]
    [InlineData(37 * 384 * 4)]
    public void CpuMatchesReference(int n)
    {
        var rng = new Random(n);
        float[] x = TestData.Random(rng, n, 4f), dy = TestData.Random(rng, n), dx0 = TestData.Random(rng, n);
        var y = TestData.Poisoned(n);
        Tanh.Forward(x, y);
        var yr = new double[n]; Tanh.ForwardReference(D(x), yr);
        Close(y, yr, what: "y");
        var dx = (float[])dx0.Clone();
        Tanh.Backward(dy, y, dx);
        // Backward from the saved float output (as the kernel does): 1 − y² of an exact y would differ by the
        // output's rounding, amplified by the cancellation near |y| = 1 — a property of the formula, not the kernel.
        var rdx = new double[n]; Tanh.BackwardReference(D(dy), D(y), rdx);
        Close(Delta(dx, dx0), rdx, what: "dx");
    }

    [Fact]
    public void SimulatorMatchesReference()
    {
        var dev = sim.Device;
        var rng = new Random(3);
        int n = 101;
        float[] x = TestData.Random(rng, n, 4f), dy = TestData.Random(rng, n), dx0 = TestData.Random(rng, n);
        using var bx = Up(dev, x); using var by = Up(dev, TestData.Poisoned(n)); using var bdy = Up(dev, dy); using var bdx = Up(dev, dx0);
        Tanh.Forward(dev, bx.View, by.View);
        Tanh.Backward(dev, bdy.View, by.View, bdx.View);
        var yr = new double[n]; Tanh.ForwardReference(D(x), yr);
        var y = Down(dev, by);
        var rdx = new double[n]; Tanh.BackwardReference(D(dy), D(y), rdx);
        Close(y, yr, what: "y");
        Close(Delta(Down(dev, bdx), dx0), rdx, what: "dx");
    }

    [Fact]
    public void KernelsCompileToPtx() => CompilesToPtx(typeof(Tanh), "ForwardKernel", "BackwardKernel");

    [Fact]
    public void BadSizesThrow()
    {
        Throws(() => Tanh.Forward(new float[4], new float[5]), "y", "5", "4");
        Throws(() => Tanh.Backward(new float[4], new float[4], new float[3]), "dx", "3", "4");
    }
}
