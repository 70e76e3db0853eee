using SkTuning.Gpu.Kernels;
using SkTuning.Gpu.Tests.Support;
using static SkTuning.Gpu.Tests.Kernels.OpsTest;

namespace SkTuning.Gpu.Tests.Kernels;

public class MeanPoolDropoutTests(SimulatorFixture sim) : IClassFixture<SimulatorFixture>
{
    private const int B = 3, T = 6, Skip = 2, Dim = 10;

    private static int[] Mask() => [1, 1, 0, 0, /**/ 1, 1, 1, 1, /**/ 0, 0, 0, 0];   // [B, T − skip]; the last example has no token

    [Theory]
    [InlineData(0.3f)]
    [InlineData(0f)]
    public void ReferenceBackwardMatchesFiniteDifferences(float p)
    {
        var rng = new Random(1);
        var x = D(TestData.Random(rng, B * T * Dim)); var w = D(TestData.Random(rng, B * Dim));
        double Loss() { var y = new double[B * Dim]; MeanPoolDropout.ForwardReference(x, Mask(), y, B, T, Skip, Dim, p, 9); return TestData.Dot(w, y); }
        var dx = new double[x.Length];
        MeanPoolDropout.BackwardReference(w, Mask(), dx, B, T, Skip, Dim, p, 9);
        Close(dx, TestData.FiniteDifference(x, Loss));
    }

    [Theory]
    [InlineData(0.3f)]
    [InlineData(0f)]
    public void CpuAndSimulatorMatchTheReference(float p)
    {
        var dev = sim.Device;
        var rng = new Random(2);
        float[] x = TestData.Random(rng, B * T * Dim), dy = TestData.Random(rng, B * Dim), dx0 = TestData.Random(rng, B * T * Dim);
        var yr = new double[B * Dim]; MeanPoolDropout.ForwardReference(D(x), Mask(), yr, B, T, Skip, Dim, p, 77);
        var dxr = new double[x.Length]; MeanPoolDropout.BackwardReference(D(dy), Mask(), dxr, B, T, Skip, Dim, p, 77);

        var y = TestData.Poisoned(B * Dim); var dx = (float[])dx0.Clone();
        MeanPoolDropout.Forward(x, Mask(), y, B, T, Skip, Dim, p, 77);
        MeanPoolDropout.Backward(dy, Mask(), dx, B, T, Skip, Dim, p, 77);
        Close(y, yr, what: "cpu y"); Close(Delta(dx, dx0), dxr, what: "cpu dx");

        using var bx = Up(dev, x); using var bm = Up(dev, Mask()); using var by = Up(dev, TestData.Poisoned(B * Dim));
        using var bdy = Up(dev, dy); using var bdx = Up(dev, dx0);
        MeanPoolDropout.Forward(dev, bx.View, bm.View, by.View, B, T, Skip, Dim, p, 77);
        MeanPoolDropout.Backward(dev, bdy.View, bm.View, bdx.View, B, T, Skip, Dim, p, 77);
        Close(Down(dev, by), yr, what: "gpu y"); Close(Delta(Down(dev, bdx), dx0), dxr, what: "gpu dx");
    }

    [Fact]
    public void KernelsCompileToPtx() => CompilesToPtx(typeof(MeanPoolDropout), "ForwardKernel", "BackwardKernel");
}
