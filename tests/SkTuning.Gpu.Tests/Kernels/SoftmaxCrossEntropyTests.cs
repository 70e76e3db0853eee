using SkTuning.Gpu.Kernels;
using SkTuning.Gpu.Tests.Support;
using static SkTuning.Gpu.Tests.Kernels.OpsTest;

namespace SkTuning.Gpu.Tests.Kernels;

public class SoftmaxCrossEntropyTests(SimulatorFixture sim) : IClassFixture<SimulatorFixture>
{
    private static int[] Labels(Random rng, int n, int classes) =>
        Enumerable.Range(0, n).Select(i => i % 5 == 3 ? SoftmaxCrossEntropy.IgnoreIndex : rng.Next(classes)).ToArray();

    [Fact]
    public void ReferenceBackwardMatchesFiniteDifferences()
    {
        var rng = new Random(1);
        int N = 7, C = 4;
        var labels = Labels(rng, N, C);
        var z = D(TestData.Random(rng, N * C, 3f));
        double Loss() => SoftmaxCrossEntropy.ForwardBackwardReference(z, labels, [], N, C);
        var dz = new double[z.Length];
        SoftmaxCrossEntropy.ForwardBackwardReference(z, labels, dz, N, C);
        Close(dz, TestData.FiniteDifference(z, Loss));
    }

    [Theory]
    [InlineData(37, 2)]
    [InlineData(37, 67)]
    [InlineData(256, 384)]
    public void CpuMatchesReference(int N, int C)
    {
        var rng = new Random(N + C);
        var labels = Labels(rng, N, C);
        float[] z = TestData.Random(rng, N * C, 5f), dz0 = TestData.Random(rng, N * C, 1f / N); // g0 at the gradient's scale
        var dz = (float[])dz0.Clone();
        float loss = SoftmaxCrossEntropy.ForwardBackward(z, labels, dz, N, C);
        var rdz = new double[dz.Length];
        double rloss = SoftmaxCrossEntropy.ForwardBackwardReference(D(z), labels, rdz, N, C);
        Assert.True(Math.Abs(loss - rloss) <= 1e-4 * Math.Abs(rloss), $"loss {loss} vs {rloss}");
        Close(Delta(dz, dz0), rdz);
        Assert.Equal(loss, SoftmaxCrossEntropy.ForwardBackward(z, labels, [], N, C));
        // All ignored: loss 0, gradient untouched.
        var none = Enumerable.Repeat(SoftmaxCrossEntropy.IgnoreIndex, N).ToArray();
        var untouched = (float[])dz0.Clone();
        Assert.Equal(0f, SoftmaxCrossEntropy.ForwardBackward(z, none, untouched, N, C));
        Assert.Equal(dz0, untouched);
    }

    [Fact]
    public void SimulatorMatchesReference()
    {
        var dev = sim.Device;
        var rng = new Random(3);
        int N = 300, C = 5;   // more rows than the group has threads
        var labels = Labels(rng, N, C);
        float[] z = TestData.Random(rng, N * C, 4f), dz0 = TestData.Random(rng, N * C, 1f / N);
        using var bz = Up(dev, z); using var bl = Up(dev, labels); using var bloss = Up(dev, TestData.Poisoned(1)); using var bdz = Up(dev, dz0);
        int count = SoftmaxCrossEntropy.CountValid(labels);
        SoftmaxCrossEntropy.ForwardBackwardMean(dev, bz.View, bl.View, bdz.View, bloss.View, N, C, count);
        var rdz = new double[dz0.Length];
        double rloss = SoftmaxCrossEntropy.ForwardBackwardReference(D(z), labels, rdz, N, C);
        double loss = Down(dev, bloss)[0];
        Assert.True(Math.Abs(loss - rloss) <= 1e-5 * Math.Abs(rloss), $"loss {loss} vs {rloss}");
        Close(Delta(Down(dev, bdz), dz0), rdz);
    }

    [Fact]
    public void KernelsCompileToPtx() => CompilesToPtxAsGroup(typeof(SoftmaxCrossEntropy), "ForwardBackwardMeanKernel");

    [Fact]
    public void BadSizesAndLabelsThrow()
    {
        Throws(() => SoftmaxCrossEntropy.ForwardBackward(new float[12], [0, 1], [], 3, 4), "labels", "2", "3");
        Throws(() => SoftmaxCrossEntropy.ForwardBackward(new float[12], [0, 4, -100], [], 3, 4), "label 4", "row 1");
        Throws(() => SoftmaxCrossEntropy.ForwardBackward(new float[12], [0, 1, 2], new float[11], 3, 4), "dLogits", "11", "12");
    }
}
