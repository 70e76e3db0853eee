using SkTuning.Gpu.Kernels;
using SkTuning.Gpu.Tests.Support;
using static SkTuning.Gpu.Tests.Kernels.OpsTest;

namespace SkTuning.Gpu.Tests.Kernels;

public class ResidualTests(SimulatorFixture sim) : IClassFixture<SimulatorFixture>
{
    [Fact]
    public void ReferenceBackwardMatchesFiniteDifferences()
    {
        var rng = new Random(1);
        int n = 11;
        var a = D(TestData.Random(rng, n)); var b = D(TestData.Random(rng, n)); var w = D(TestData.Random(rng, n));
        double Loss() { var y = new double[n]; Residual.ForwardReference(a, b, y); return TestData.Dot(w, y); }
        double[] ga = new double[n], gb = new double[n];
        Residual.BackwardReference(w, ga, gb);
        Close(ga, TestData.FiniteDifference(a, Loss));
        Close(gb, TestData.FiniteDifference(b, Loss));
    }

    [Theory]
    [InlineData(37 * 67)]
    [InlineData(37 * 384)]
    public void CpuMatchesReference(int n)
    {
        var rng = new Random(n);
        float[] a = TestData.Random(rng, n), b = TestData.Random(rng, n), dy = TestData.Random(rng, n), ga0 = TestData.Random(rng, n), gb0 = TestData.Random(rng, n);
        var y = TestData.Poisoned(n);
        Residual.Forward(a, b, y);
        var yr = new double[n]; Residual.ForwardReference(D(a), D(b), yr);
        Close(y, yr);
        float[] ga = (float[])ga0.Clone(), gb = (float[])gb0.Clone();
        Residual.Backward(dy, ga, gb);
        double[] ra = new double[n], rb = new double[n]; Residual.BackwardReference(D(dy), ra, rb);
        Close(Delta(ga, ga0), ra);
        Close(Delta(gb, gb0), rb);
        Residual.Backward(dy, [], gb); // optional gradient skipped
    }

    [Fact]
    public void SimulatorMatchesReference()
    {
        var dev = sim.Device;
        var rng = new Random(5);
        int n = 29;
        float[] a = TestData.Random(rng, n), b = TestData.Random(rng, n), dy = TestData.Random(rng, n), ga0 = TestData.Random(rng, n), gb0 = TestData.Random(rng, n);
        using var ba = Up(dev, a); using var bb = Up(dev, b); using var by = Up(dev, TestData.Poisoned(n));
        using var bdy = Up(dev, dy); using var bga = Up(dev, ga0); using var bgb = Up(dev, gb0);
        Residual.Forward(dev, ba.View, bb.View, by.View);
        Residual.Backward(dev, bdy.View, bga.View, bgb.View);
        var yr = new double[n]; Residual.ForwardReference(D(a), D(b), yr);
        double[] ra = new double[n], rb = new double[n]; Residual.BackwardReference(D(dy), ra, rb);
        Close(Down(dev, by), yr);
        Close(Delta(Down(dev, bga), ga0), ra);
        Close(Delta(Down(dev, bgb), gb0), rb);
    }

    [Fact]
    public void KernelsCompileToPtx() => CompilesToPtx(typeof(Residual), "ForwardKernel", "AccumulateKernel");

    [Fact]
    public void BadSizesThrow()
    {
        Throws(() => Residual.Forward(new float[4], new float[5], new float[4]), "b", "5", "4");
        Throws(() => Residual.Backward(new float[4], new float[3], []), "da", "3", "4");
    }
}
