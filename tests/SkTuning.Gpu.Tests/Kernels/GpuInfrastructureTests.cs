using ILGPU;
using ILGPU.Runtime;
using SkTuning.Gpu.Kernels.Gpu;

namespace SkTuning.Gpu.Tests.Kernels;

public class GpuInfrastructureTests
{
    private static void Twice(Index1D i, ArrayView<float> x, ArrayView<float> y) => y[i] = 2f * x[i];

    [Fact]
    public void PtxCompilerEmitsAnEntryPoint()
    {
        using var ptx = new PtxCompiler();
        var text = ptx.CompileImplicitlyGrouped(typeof(GpuInfrastructureTests).GetMethod(nameof(Twice),
            System.Reflection.BindingFlags.NonPublic | System.Reflection.BindingFlags.Static)!);
        Assert.Contains(".entry", text);
        Assert.Contains("sm_80", text);
    }

    [Fact]
    public void CpuSimulatorRunsACachedKernel()
    {
        using var device = GpuDevice.CreateCpuSimulator();
        var kernel = device.Kernel("twice", a => a.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>>(Twice));
        Assert.Same(kernel, device.Kernel("twice", a => a.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>>(Twice)));
        using var x = device.Accelerator.Allocate1D(new[] { 1.5f, -2f, 3f });
        using var y = device.Accelerator.Allocate1D(new[] { float.NaN, float.NaN, float.NaN });
        kernel(3, x.View, y.View);
        device.Synchronize();
        Assert.Equal(new[] { 3f, -4f, 6f }, y.GetAsArray1D());
    }
}
