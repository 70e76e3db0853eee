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
                var (found, why) = GpuDevice.ProbeCuda();
                if (!found) throw new SkTuningException($"--device cuda: no CUDA device found — {why}");
                goto case "cuda!";
            case "auto":
                var (any, detail) = GpuDevice.ProbeCuda();
                if (any) goto case "cuda!";
                log?.Invoke($"engine: no CUDA device ({detail}); CPU backend (SIMD kernels)");
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
