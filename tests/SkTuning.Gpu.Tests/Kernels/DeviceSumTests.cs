using SkTuning.Gpu.Kernels;
using SkTuning.Gpu.Tests.Support;
using static SkTuning.Gpu.Tests.Kernels.OpsTest;

namespace SkTuning.Gpu.Tests.Kernels;

public class DeviceSumTests(SimulatorFixture sim) : IClassFixture<SimulatorFixture>
{
    [Theory]
    [InlineData(1, 1)]
    [InlineData(255, 200)]
    [InlineData(4099, 4099)]   // more values than threads: every thread sums a stride
    [InlineData(7, 0)]         // no valid row: the mean is 0
    public void SimulatorMeanMatchesTheReferenceWithoutAHostWait(int n, int divisor)
    {
        var dev = sim.Device;
        var x = TestData.Random(new Random(n), n, 3f);
        using var bx = Up(dev, x);
        using var result = Up(dev, [float.NaN]);
        long waits = dev.Synchronizations;
        DeviceSum.Mean(dev, bx.View, result.View, divisor);
        Assert.Equal(waits, dev.Synchronizations);
        float got = Down(dev, result)[0], expected = DeviceSum.MeanReference(x, divisor);
        double exact = divisor == 0 ? 0 : x.Sum(v => (double)v) / divisor;
        Assert.True(Math.Abs(got - exact) <= 1e-6 * Math.Max(1, Math.Abs(exact)), $"{got} vs {exact}");
        Assert.True(Math.Abs(got - expected) <= 1e-6 * Math.Max(1, Math.Abs(expected)), $"{got} vs {expected}");
    }

    [Fact]
    public void KernelsCompileToPtx() => CompilesToPtxAsGroup(typeof(DeviceSum), "MeanKernel");

    [Fact]
    public void BadSizesThrow()
    {
        var dev = sim.Device;
        using var x = Up(dev, new float[8]);
        Throws(() => DeviceSum.Mean(dev, x.View, x.View, 8), "result", "8");
    }
}
