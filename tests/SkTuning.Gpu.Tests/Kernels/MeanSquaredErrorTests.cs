using SkTuning.Gpu.Kernels;
using SkTuning.Gpu.Tests.Support;
using static SkTuning.Gpu.Tests.Kernels.OpsTest;

namespace SkTuning.Gpu.Tests.Kernels;

public class MeanSquaredErrorTests(SimulatorFixture sim) : IClassFixture<SimulatorFixture>
{
    [Fact]
    public void ReferenceBackwardMatchesFiniteDifferences()
    {
        var rng = new Random(1);
        var p = D(TestData.Random(rng, 9)); var t = D(TestData.Random(rng, 9));
        var dp = new double[9];
        MeanSquaredError.ForwardBackwardReference(p, t, dp);
        Close(dp, TestData.FiniteDifference(p, () => MeanSquaredError.ForwardBackwardReference(p, t, [])));
    }

    [Theory]
    [InlineData(37)]
    [InlineData(384)]
    public void CpuMatchesReference(int n)
    {
        var rng = new Random(n);
        float[] p = TestData.Random(rng, n), t = TestData.Random(rng, n), dp0 = TestData.Random(rng, n, 2f / n); // g0 at the gradient's scale
        var dp = (float[])dp0.Clone();
        float loss = MeanSquaredError.ForwardBackward(p, t, dp);
        var rdp = new double[n];
        double rloss = MeanSquaredError.ForwardBackwardReference(D(p), D(t), rdp);
        Assert.True(Math.Abs(loss - rloss) <= 1e-5 * rloss, $"loss {loss} vs {rloss}");
        Close(Delta(dp, dp0), rdp);
    }

    [Fact]
    public void SimulatorMatchesReference()
    {
        var dev = sim.Device;
        var rng = new Random(3);
        int n = 13;
        float[] p = TestData.Random(rng, n), t = TestData.Random(rng, n), dp0 = TestData.Random(rng, n, 2f / n); // g0 at the gradient's scale
        using var bp = Up(dev, p); using var bt = Up(dev, t); using var bse = Up(dev, TestData.Poisoned(n)); using var bdp = Up(dev, dp0);
        MeanSquaredError.ForwardBackward(dev, bp.View, bt.View, bse.View, bdp.View);
        var rdp = new double[n];
        double rloss = MeanSquaredError.ForwardBackwardReference(D(p), D(t), rdp);
        double loss = Down(dev, bse).Sum(x => (double)x) / n;
        Assert.True(Math.Abs(loss - rloss) <= 1e-5 * rloss, $"loss {loss} vs {rloss}");
        Close(Delta(Down(dev, bdp), dp0), rdp);
    }

    [Fact]
    public void KernelsCompileToPtx() => CompilesToPtx(typeof(MeanSquaredError), "ForwardBackwardKernel");

    [Fact]
    public void BadSizesThrow()
    {
        Throws(() => MeanSquaredError.ForwardBackward(new float[4], new float[5], []), "targets", "5", "4");
        Throws(() => MeanSquaredError.ForwardBackward(new float[4], new float[4], new float[3]), "dPredictions", "3", "4");
    }
}
