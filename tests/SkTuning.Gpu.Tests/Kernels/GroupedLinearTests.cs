using SkTuning.Gpu.Kernels;
using SkTuning.Gpu.Tests.Support;
using static SkTuning.Gpu.Tests.Kernels.OpsTest;

namespace SkTuning.Gpu.Tests.Kernels;

public class GroupedLinearTests(SimulatorFixture sim) : IClassFixture<SimulatorFixture>
{
    [Theory]
    [InlineData(0f)]
    [InlineData(0.3f)]
    public void ReferenceBackwardMatchesFiniteDifferences(float p)
    {
        var rng = new Random(1);
        int g = 3, rows = 4, n = 3, o = 2, size = g * (n + 1) * o;
        var x = D(TestData.Random(rng, rows * n)); var wb = D(TestData.Random(rng, size)); var w = D(TestData.Random(rng, g * rows * o));
        double Loss() { var y = new double[g * rows * o]; GroupedLinear.ForwardReference(x, wb, y, g, rows, n, o, p, 42, 7); return TestData.Dot(w, y); }
        var dwb = new double[size];
        GroupedLinear.BackwardReference(x, w, dwb, g, rows, n, o, p, 42, 7);
        Close(dwb, TestData.FiniteDifference(wb, Loss));
    }

    [Theory]
    [InlineData(24, 12, 384, 384, 0.1f)]   // SK-Prefix, MiniLM: 2·L key/value maps of the m = 12 semantic rows
    [InlineData(1, 32, 384, 2, 0f)]        // the classification head's weight gradient
    [InlineData(2, 5, 7, 3, 0.5f)]
    public void CpuMatchesReference(int g, int rows, int n, int o, float p)
    {
        var rng = new Random(g + rows + n + o);
        float[] x = TestData.Random(rng, rows * n), wb = TestData.Random(rng, g * (n + 1) * o), dy = TestData.Random(rng, g * rows * o),
            dwb0 = TestData.Random(rng, wb.Length);
        var y = TestData.Poisoned(g * rows * o);
        GroupedLinear.Forward(x, wb, y, g, rows, n, o, p, 99, 1000);
        var yr = new double[y.Length]; GroupedLinear.ForwardReference(D(x), D(wb), yr, g, rows, n, o, p, 99, 1000);
        Close(y, yr, 1e-3, what: "y");   // sums of 384 random terms: single elements lose more than 1e-4 to cancellation
        var dwb = (float[])dwb0.Clone();
        GroupedLinear.Backward(x, dy, dwb, g, rows, n, o, p, 99, 1000);
        var rdwb = new double[wb.Length]; GroupedLinear.BackwardReference(D(x), D(dy), rdwb, g, rows, n, o, p, 99, 1000);
        Close(Delta(dwb, dwb0), rdwb, 1e-3, what: "dWeights");
    }

    [Theory]
    [InlineData(0.2f)]
    [InlineData(0f)]
    public void SimulatorMatchesReference(float p)
    {
        var dev = sim.Device;
        var rng = new Random(3);
        int g = 4, rows = 5, n = 9, o = 6;
        float[] x = TestData.Random(rng, rows * n), wb = TestData.Random(rng, g * (n + 1) * o), dy = TestData.Random(rng, g * rows * o),
            dwb0 = TestData.Random(rng, wb.Length);
        using var bx = Up(dev, x); using var bw = Up(dev, wb); using var by = Up(dev, TestData.Poisoned(g * rows * o));
        using var bdy = Up(dev, dy); using var bdw = Up(dev, dwb0);
        GroupedLinear.Forward(dev, bx.View, bw.View, by.View, g, rows, n, o, p, 5, 17);
        GroupedLinear.Backward(dev, bx.View, bdy.View, bdw.View, g, rows, n, o, p, 5, 17);
        var yr = new double[g * rows * o]; GroupedLinear.ForwardReference(D(x), D(wb), yr, g, rows, n, o, p, 5, 17);
        var rdwb = new double[wb.Length]; GroupedLinear.BackwardReference(D(x), D(dy), rdwb, g, rows, n, o, p, 5, 17);
        Close(Down(dev, by), yr, what: "y");
        Close(Delta(Down(dev, bdw), dwb0), rdwb, 1e-3, what: "dWeights");
    }

    [Fact]
    public void KernelsCompileToPtx() => CompilesToPtx(typeof(GroupedLinear), "ForwardKernel", "BackwardKernel");

    [Fact]
    public void BadSizesAreRefused()
    {
        Throws(() => GroupedLinear.Forward(new float[6], new float[7], new float[4], 2, 2, 3, 1, 0f, 0, 0), "weights", "G·(in+1)·out");
        Throws(() => GroupedLinear.Forward(new float[6], new float[8], new float[4], 2, 2, 3, 1, 1f, 0, 0), "p = 1");
    }
}
