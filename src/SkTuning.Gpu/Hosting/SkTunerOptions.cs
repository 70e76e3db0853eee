namespace SkTuning.Gpu.Hosting;

/// <summary>How <see cref="SkTuner"/> loads a run and batches concurrent requests.</summary>
public sealed class SkTunerOptions
{
    /// <summary>The frozen model: catalog name, .onnx file or folder (null: the one the run names). Ignored when a <see cref="SharedModel"/> is given.</summary>
    public string? Model { get; set; }

    /// <summary>auto (CUDA when present, else CPU), cuda or cpu. Ignored when a <see cref="SharedModel"/> is given.</summary>
    public string Device { get; set; } = "auto";

    /// <summary>
    /// How the frozen model's weight matrices are stored: fp32, or bf16 (CPU backend; half the memory); null: as the run
    /// was trained (<see cref="Training.AdapterConfig.Weights"/>). Ignored when a <see cref="SharedModel"/> is given.
    /// </summary>
    public string? WeightPrecision { get; set; }

    /// <summary>
    /// How long the batcher waits for more requests after the first one of a batch, when requests are arriving concurrently
    /// (a lone caller never waits: its request runs at once).
    /// </summary>
    public TimeSpan BatchWindow { get; set; } = TimeSpan.FromMilliseconds(2);

    /// <summary>The most requests one batch runs.</summary>
    public int MaxBatchSize { get; set; } = 32;

    /// <summary>
    /// When set, caps the threads one CPU kernel uses (<see cref="Kernels.KernelParallelism.MaxThreads"/>, process-wide) so
    /// that the engine leaves cores to the host's own threads; null leaves it as it is (all cores by default).
    /// </summary>
    public int? MaxKernelThreads { get; set; }

    /// <summary>Whether loading runs one prediction (JIT compilation, first kernels, buffers) so the first caller gets warm latency.</summary>
    public bool WarmUp { get; set; } = true;
}
