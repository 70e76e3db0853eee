using SkTuning.Gpu.Kernels;
using SkTuning.Gpu.Tests.Support;
using static SkTuning.Gpu.Tests.Kernels.OpsTest;

namespace SkTuning.Gpu.Tests.Kernels;

public class GradientNormTests(SimulatorFixture sim) : IClassFixture<SimulatorFixture>
{
    [Fact]
    public void CpuMatchesReferenceOverSeveralBuffers()
    {
        var rng = new Random(1);
        var buffers = new[] { TestData.Random(rng, 37 * 67), TestData.Random(rng, 5), TestData.Random(rng, 100_003, 3f) };
        double expected = Math.Sqrt(buffers.Sum(b => GradientNorm.SumOfSquaresReference(D(b))));
        double norm = GradientNorm.Norm(buffers.Select(b => (ReadOnlyMemory<float>)b));
        Assert.True(Math.Abs(norm - expected) <= 1e-12 * expected, $"{norm} vs {expected}");
        Assert.Equal(norm, GradientNorm.Norm(buffers.Select(b => (ReadOnlyMemory<float>)b)));  // deterministic
        Assert.Equal(0.0, GradientNorm.SumOfSquares([]));
    }

    [Fact]
    public void ClipScale()
    {
        Assert.Equal(1f, GradientNorm.ClipScale(0.5, 1.0));
        Assert.Equal((float)(1.0 / (4.0 + 1e-6)), GradientNorm.ClipScale(4.0, 1.0));
    }

    [Fact]
    public void SimulatorMatchesReference()
    {
        var dev = sim.Device;
        var rng = new Random(3);
        var a = TestData.Random(rng, 5000); var b = TestData.Random(rng, 13);
        using var ba = Up(dev, a); using var bb = Up(dev, b);
        double norm = GradientNorm.Norm(dev, [ba.View, bb.View]);
        double expected = Math.Sqrt(GradientNorm.SumOfSquaresReference(D(a)) + GradientNorm.SumOfSquaresReference(D(b)));
        Assert.True(Math.Abs(norm - expected) <= 1e-12 * expected, $"{norm} vs {expected}");
    }

    [Fact]
    public void KernelsCompileToPtx() => CompilesToPtx(typeof(GradientNorm), "SumOfSquaresKernel");

    [Fact]
    public void BadSizesThrow()
    {
        var dev = sim.Device;
        using var x = Up(dev, new float[8]);
        using var partials = dev.Accelerator.Allocate1D<double>(7);
        Throws(() => GradientNorm.SumOfSquares(dev, x.View, partials.View), "partials", "7", "4096");
    }
}
