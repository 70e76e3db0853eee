using SkTuning.Gpu.Kernels;
using SkTuning.Gpu.Tests.Support;
using static SkTuning.Gpu.Tests.Kernels.OpsTest;

namespace SkTuning.Gpu.Tests.Kernels;

/// <summary>
/// Tolerances: float vs the fp64 reference within 1e-5 relative (<see cref="TestData.MaxRelError(ReadOnlySpan{float}, ReadOnlySpan{double})"/>);
/// gradients are checked from a zero start so the += rounding of a random start does not enter, plus once from a random
/// start (2e-5) to check they accumulate.
/// </summary>
public class SwiGluTests(SimulatorFixture sim) : IClassFixture<SimulatorFixture>
{
    private const double Tol = 1e-5;

    [Fact]
    public void ReferenceBackwardMatchesFiniteDifferences()
    {
        var rng = new Random(1);
        int rows = 3, F = 5;
        var gu = D(TestData.Random(rng, rows * 2 * F, 4f)); var w = D(TestData.Random(rng, rows * F));
        double Loss() { var y = new double[rows * F]; SwiGlu.ForwardReference(gu, y, rows, F); return TestData.Dot(w, y); }
        var d = new double[gu.Length];
        SwiGlu.BackwardReference(w, gu, d, rows, F);
        Close(d, TestData.FiniteDifference(gu, Loss));
    }

    [Theory]
    [InlineData(37, 67)]
    [InlineData(64, 1536)]
    public void CpuMatchesReference(int rows, int F)
    {
        var rng = new Random(rows * 31 + F);
        float[] gu = TestData.Random(rng, rows * 2 * F, 8f), dy = TestData.Random(rng, rows * F);
        gu[0] = -100f; gu[1] = 100f;   // saturated gates: no NaN from e^(−g) overflowing
        var y = TestData.Poisoned(rows * F);
        SwiGlu.Forward(gu, y, rows, F);
        var yr = new double[y.Length]; SwiGlu.ForwardReference(D(gu), yr, rows, F);
        Close(y, yr, Tol, what: "y");

        var rd = new double[gu.Length]; SwiGlu.BackwardReference(D(dy), D(gu), rd, rows, F);
        var d = new float[gu.Length];
        SwiGlu.Backward(dy, gu, d, rows, F);
        Close(d, rd, Tol, what: "dGateUp");
        var d0 = TestData.Random(rng, gu.Length); var acc = (float[])d0.Clone();
        SwiGlu.Backward(dy, gu, acc, rows, F);
        Close(Delta(acc, d0), rd, 2e-5, what: "dGateUp accumulated");
    }

    [Fact]
    public void SimulatorMatchesReference()
    {
        var dev = sim.Device;
        var rng = new Random(3);
        int rows = 5, F = 7;
        float[] gu = TestData.Random(rng, rows * 2 * F, 8f), dy = TestData.Random(rng, rows * F), d0 = TestData.Random(rng, gu.Length);
        using var bgu = Up(dev, gu); using var by = Up(dev, TestData.Poisoned(rows * F)); using var bdy = Up(dev, dy);
        using var bd = Up(dev, new float[gu.Length]); using var bacc = Up(dev, d0);
        SwiGlu.Forward(dev, bgu.View, by.View, rows, F);
        SwiGlu.Backward(dev, bdy.View, bgu.View, bd.View, rows, F);
        SwiGlu.Backward(dev, bdy.View, bgu.View, bacc.View, rows, F);
        var yr = new double[rows * F]; SwiGlu.ForwardReference(D(gu), yr, rows, F);
        var rd = new double[gu.Length]; SwiGlu.BackwardReference(D(dy), D(gu), rd, rows, F);
        Close(Down(dev, by), yr, Tol, what: "y");
        Close(Down(dev, bd), rd, Tol, what: "dGateUp");
        Close(Delta(Down(dev, bacc), d0), rd, 2e-5, what: "dGateUp accumulated");
    }

    [Fact]
    public void KernelsCompileToPtx() => CompilesToPtx(typeof(SwiGlu), "ForwardKernel", "BackwardKernel");

    [Fact]
    public void BadSizesThrow()
    {
        Throws(() => SwiGlu.Forward(new float[11], new float[6], 3, 2), "gateUp", "11", "12");
        Throws(() => SwiGlu.Forward(new float[12], new float[5], 3, 2), "y", "5", "6");
        Throws(() => SwiGlu.Backward(new float[6], new float[12], new float[6], 3, 2), "dGateUp", "6", "12");
    }
}
