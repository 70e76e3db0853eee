using ILGPU.Runtime;
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

    [Theory]
    [InlineData(1.0)]     // clipping active (the norm is ~40)
    [InlineData(1000.0)]  // clipping inactive: scale 1
    public void SimulatorNormAndClipScaleStayOnTheDeviceAndMatchTheReference(double maxNorm)
    {
        var dev = sim.Device;
        var x = TestData.Random(new Random(3), 5013);
        using var bx = Up(dev, x);
        using var partials = dev.Accelerator.Allocate1D<double>(GradientNorm.GpuWorkspace);
        partials.MemSetToZero();
        using var norm = Up(dev, [float.NaN]); using var scale = Up(dev, [float.NaN]);
        long waits = dev.Synchronizations;
        GradientNorm.ClipScale(dev, bx.View, partials.View, norm.View, scale.View, maxNorm);
        GradientNorm.ClipScale(dev, bx.View, partials.View, norm.View, scale.View, maxNorm);   // the first launch left the count at zero
        Assert.Equal(waits, dev.Synchronizations);
        double expected = Math.Sqrt(GradientNorm.SumOfSquaresReference(D(x)));
        float got = Down(dev, norm)[0];
        Assert.True(Math.Abs(got - expected) <= 1e-6 * expected, $"{got} vs {expected}");
        Assert.Equal(GradientNorm.ClipScale(expected, maxNorm), Down(dev, scale)[0], 6);
        Assert.Equal(GradientNorm.NormAndClipScale(x, maxNorm), (Down(dev, norm)[0], Down(dev, scale)[0]));
    }

    [Fact]
    public void ANonFiniteNormGivesANaNClipScale()
    {
        var dev = sim.Device;
        var x = TestData.Random(new Random(4), 100);
        x[17] = float.PositiveInfinity;
        using var bx = Up(dev, x);
        using var partials = dev.Accelerator.Allocate1D<double>(GradientNorm.GpuWorkspace);
        partials.MemSetToZero();
        using var norm = Up(dev, [0f]); using var scale = Up(dev, [0f]);
        GradientNorm.ClipScale(dev, bx.View, partials.View, norm.View, scale.View, 1.0);
        Assert.True(float.IsNaN(Down(dev, scale)[0]));
        Assert.True(float.IsNaN(GradientNorm.NormAndClipScale(x, 1.0).ClipScale));
    }

    [Fact]
    public void KernelsCompileToPtx() => CompilesToPtxAsGroup(typeof(GradientNorm), "ClipScaleKernel");

    [Fact]
    public void BadSizesThrow()
    {
        var dev = sim.Device;
        using var x = Up(dev, new float[8]);
        using var partials = dev.Accelerator.Allocate1D<double>(7);
        using var one = Up(dev, [0f]);
        Throws(() => GradientNorm.ClipScale(dev, x.View, partials.View, one.View, one.View, 1.0), "workspace", "7", "4097");
    }
}
