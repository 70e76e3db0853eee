using SkTuning.Gpu.Kernels.Gpu;

namespace SkTuning.Gpu.Engine;

/// <summary>Chooses the backend for <c>--device auto|cuda|cpu</c> and <c>--weights fp32|bf16</c>.</summary>
public static class BackendFactory
{
    /// <summary>
    /// auto = CUDA when ILGPU finds a CUDA device, else CPU; the choice is logged. bf16 frozen weights run on the CPU
    /// backend only (the ILGPU kernels read fp32 weights): auto then picks the CPU, and cuda is refused.
    /// </summary>
    /// <exception cref="SkTuningException">An unknown device or precision name, cuda asked for where there is none, or with bf16.</exception>
    public static Backend Create(string device, Action<string>? log = null, string weights = "fp32")
    {
        var precision = ParsePrecision(weights);
        if (precision == WeightPrecision.Bf16)
        {
            switch (device.ToLowerInvariant())
            {
                case "cpu" or "auto":
                    log?.Invoke("engine: CPU backend (SIMD kernels), frozen weight matrices in bf16");
                    return new CpuBackend(WeightPrecision.Bf16);
                case "cuda":
                    throw new SkTuningException("--weights bf16 --device cuda: bf16 weights run on the CPU backend only for now (the CUDA kernels read fp32); use --device cpu or --weights fp32");
            }
        }
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

    /// <summary><c>fp32</c> or <c>bf16</c>.</summary>
    /// <exception cref="SkTuningException">Another name.</exception>
    public static WeightPrecision ParsePrecision(string weights) => weights.ToLowerInvariant() switch
    {
        "fp32" => WeightPrecision.Fp32,
        "bf16" => WeightPrecision.Bf16,
        _ => throw new SkTuningException($"--weights {weights}: expected fp32 or bf16"),
    };
}
