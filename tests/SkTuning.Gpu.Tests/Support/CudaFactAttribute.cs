using SkTuning.Gpu.Kernels.Gpu;

namespace SkTuning.Gpu.Tests.Support;

/// <summary>A fact that needs a CUDA device; skipped with the reason when ILGPU finds none.</summary>
public sealed class CudaFactAttribute : FactAttribute
{
    private static readonly bool Available = GpuDevice.CudaAvailable();

    public CudaFactAttribute()
    {
        if (!Available) Skip = "no CUDA device (ILGPU found none): GPU checks run on the device machine";
    }
}
