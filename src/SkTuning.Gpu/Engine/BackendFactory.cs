using SkTuning.Gpu.Kernels.Gpu;

namespace SkTuning.Gpu.Engine;

/// <summary>Chooses the backend for <c>--device auto|cuda|cpu</c>.</summary>
public static class BackendFactory
{
    /// <summary>auto = CUDA when ILGPU finds a CUDA device, else CPU; the choice is logged.</summary>
    /// <exception cref="SkTuningException">An unknown device name, or cuda asked for where there is none.</exception>
    public static Backend Create(string device, Action<string>? log = null)
    {
        switch (device.ToLowerInvariant())
        {
            case "cpu":
                log?.Invoke("engine: CPU backend (SIMD kernels)");
                return new CpuBackend();
            case "cuda":
                if (!GpuDevice.CudaAvailable()) throw new SkTuningException("--device cuda: no CUDA device found");
                goto case "cuda!";
            case "auto":
                if (GpuDevice.CudaAvailable()) goto case "cuda!";
                log?.Invoke("engine: no CUDA device found; CPU backend (SIMD kernels)");
                return new CpuBackend();
            case "cuda!":
                var gpu = GpuDevice.CreateCuda();
                log?.Invoke($"engine: CUDA backend on {gpu.Accelerator.Name}");
                return new GpuBackend(gpu);
            default:
                throw new SkTuningException($"--device {device}: expected auto, cuda or cpu");
        }
    }
}
