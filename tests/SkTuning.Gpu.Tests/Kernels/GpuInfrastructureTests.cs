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

    /// <summary>
    /// The H200 is sm_90: the heaviest kernels (tiled GEMM, warp-per-row norms) build with its settings. ILGPU 1.5.3 still
    /// writes <c>.target sm_80</c> when asked for sm_90 (its newest PTX target); the driver JIT-compiles that PTX for sm_90
    /// (PTX is forward compatible), so this pins that behaviour: if a later ILGPU emits sm_90, revisit the tensor-core plans.
    /// </summary>
    [Fact]
    public void TheHeaviestKernelsCompileForTheH200()
    {
        using var ptx = new PtxCompiler(ILGPU.Runtime.Cuda.CudaArchitecture.SM_90, ILGPU.Runtime.Cuda.CudaInstructionSet.ISA_78);
        var any = System.Reflection.BindingFlags.NonPublic | System.Reflection.BindingFlags.Public | System.Reflection.BindingFlags.Static;
        foreach (var kernel in new[]
        {
            typeof(SkTuning.Gpu.Kernels.GemmGpu).GetMethod("Kernel", any)!,
            typeof(SkTuning.Gpu.Kernels.LayerNorm).GetMethod("ForwardKernel", any)!,
            typeof(SkTuning.Gpu.Kernels.RmsNorm).GetMethod("BackwardInputKernel", any)!,
        })
        {
            var text = ptx.CompileExplicitlyGrouped(kernel);
            Assert.Contains(".version 7.8", text);
            Assert.Contains(".target sm_80", text);
            Assert.Contains(".entry", text);
        }
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
