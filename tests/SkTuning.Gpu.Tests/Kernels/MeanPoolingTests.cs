using SkTuning.Gpu.Kernels;
using SkTuning.Gpu.Tests.Support;
using static SkTuning.Gpu.Tests.Kernels.OpsTest;

namespace SkTuning.Gpu.Tests.Kernels;

public class MeanPoolingTests(SimulatorFixture sim) : IClassFixture<SimulatorFixture>
{
    private static int[] Mask(Random rng, int batch, int n)
    {
        var m = new int[batch * n];
        for (int b = 0; b < batch; b++)
        {
            int len = b == batch - 1 && batch > 2 ? 0 : 1 + rng.Next(n);   // last example all padding when B > 2
            for (int t = 0; t < len; t++) m[b * n + t] = 1;
        }
        return m;
    }

    [Fact]
    public void ReferenceBackwardMatchesFiniteDifferences()
    {
        var rng = new Random(1);
        int B = 3, T = 5, skip = 2, d = 3;
        var mask = Mask(rng, B, T - skip);
        var x = D(TestData.Random(rng, B * T * d)); var w = D(TestData.Random(rng, B * d));
        double Loss() { var y = new double[B * d]; MeanPooling.ForwardReference(x, mask, y, B, T, skip, d); return TestData.Dot(w, y); }
        var dx = new double[x.Length];
        MeanPooling.BackwardReference(w, mask, dx, B, T, skip, d);
        Close(dx, TestData.FiniteDifference(x, Loss));
    }

    [Theory]
    [InlineData(5, 37, 0, 67)]
    [InlineData(4, 40, 3, 384)]
    [InlineData(32, 64, 8, 384)]
    public void CpuMatchesReference(int B, int T, int skip, int d)
    {
        var rng = new Random(B * T + d);
        var mask = Mask(rng, B, T - skip);
        float[] x = TestData.Random(rng, B * T * d), dy = TestData.Random(rng, B * d), dx0 = TestData.Random(rng, B * T * d);
        var y = TestData.Poisoned(B * d);
        MeanPooling.Forward(x, mask, y, B, T, skip, d);
        var yr = new double[y.Length]; MeanPooling.ForwardReference(D(x), mask, yr, B, T, skip, d);
        Close(y, yr, what: "y");
        var dx = (float[])dx0.Clone();
        MeanPooling.Backward(dy, mask, dx, B, T, skip, d);
        var rdx = new double[dx.Length]; MeanPooling.BackwardReference(D(dy), mask, rdx, B, T, skip, d);
        Close(Delta(dx, dx0), rdx, what: "dx");
    }

    [Fact]
    public void SimulatorMatchesReference()
    {
        var dev = sim.Device;
        var rng = new Random(3);
        int B = 3, T = 6, skip = 2, d = 4;
        var mask = Mask(rng, B, T - skip);
        float[] x = TestData.Random(rng, B * T * d), dy = TestData.Random(rng, B * d), dx0 = TestData.Random(rng, B * T * d);
        using var bx = Up(dev, x); using var bm = Up(dev, mask); using var by = Up(dev, TestData.Poisoned(B * d));
        using var bdy = Up(dev, dy); using var bdx = Up(dev, dx0);
        MeanPooling.Forward(dev, bx.View, bm.View, by.View, B, T, skip, d);
        MeanPooling.Backward(dev, bdy.View, bm.View, bdx.View, B, T, skip, d);
        var yr = new double[B * d]; MeanPooling.ForwardReference(D(x), mask, yr, B, T, skip, d);
        var rdx = new double[dx0.Length]; MeanPooling.BackwardReference(D(dy), mask, rdx, B, T, skip, d);
        Close(Down(dev, by), yr, what: "y");
        Close(Delta(Down(dev, bdx), dx0), rdx, what: "dx");
    }

    [Fact]
    public void KernelsCompileToPtx() => CompilesToPtx(typeof(MeanPooling), "ForwardKernel", "BackwardKernel");

    [Fact]
    public void BadSizesThrow()
    {
        Throws(() => MeanPooling.Forward(new float[24], new int[5], new float[8], 2, 3, 0, 4), "mask", "5", "6");
        Throws(() => MeanPooling.Forward(new float[23], new int[4], new float[8], 2, 3, 1, 4), "x", "23", "24");
        Throws(() => MeanPooling.Forward(new float[24], new int[4], new float[8], 2, 3, 3, 4), "skip = 3");
        Throws(() => MeanPooling.Backward(new float[7], new int[6], new float[24], 2, 3, 0, 4), "dOutput", "7", "8");
    }
}
