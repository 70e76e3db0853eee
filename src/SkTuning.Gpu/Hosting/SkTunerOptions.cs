namespace SkTuning.Gpu.Hosting;

/// <summary>What runs a loaded run's model.</summary>
public enum SkTunerRuntime
{
    /// <summary>The project's engine (CPU or CUDA backend) on the frozen model, the adapter's output computed at load.</summary>
    Engine,

    /// <summary>ONNX Runtime (CPU provider) on the run's standalone export (<see cref="SkTunerOptions.OnnxModel"/>).</summary>
    OnnxRuntime,
}

/// <summary>How <see cref="SkTuner"/> loads a run and batches concurrent requests.</summary>
public sealed class SkTunerOptions
{
    /// <summary>The frozen model: catalog name, .onnx file or folder (null: the one the run names). Ignored when a <see cref="SharedModel"/> is given.</summary>
    public string? Model { get; set; }

    /// <summary>auto (CUDA when present, else CPU), cuda or cpu. Ignored when a <see cref="SharedModel"/> is given.</summary>
    public string Device { get; set; } = "auto";

    /// <summary>What runs the model: the engine (default), or ONNX Runtime on <see cref="OnnxModel"/>.</summary>
    public SkTunerRuntime Runtime { get; set; } = SkTunerRuntime.Engine;

    /// <summary>
    /// The file written by <c>sktune export --format onnx</c> from this run, served with <see cref="SkTunerRuntime.OnnxRuntime"/>
    /// (the frozen model then only supplies the tokenizer; <see cref="MaxKernelThreads"/> sets ONNX Runtime's intra-op threads).
    /// </summary>
    public string? OnnxModel { get; set; }

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
    /// For runs loaded over a <see cref="SharedModel"/>: serve <see cref="SkTuner.Predict(string, string?)"/> and
    /// <see cref="SkTuner.PredictAsync"/> through the shared model's one micro-batcher, so that concurrent requests of
    /// different runs run as one engine batch (rows with the same adapter kind and length; each row through its run's head),
    /// with the answers each run gives alone. SK-Prefix runs mix with SK-Prefix runs of the same prefix length, SK-Prompt
    /// runs with SK-Prompt runs of the same prompt length (on causal models their prompt rows run as a prefix); linear
    /// probes, LoRA and full fine-tuning (whose engines read their own weights) do not, and batch alone as before. The
    /// first mixing run's <see cref="MaxBatchSize"/> and <see cref="BatchWindow"/> set the shared batcher's. Default false.
    /// </summary>
    public bool MixAdapters { get; set; }

    /// <summary>
    /// When set, caps the threads one CPU kernel uses (<see cref="Kernels.KernelParallelism.MaxThreads"/>, process-wide) so
    /// that the engine leaves cores to the host's own threads; null leaves it as it is (all cores by default).
    /// </summary>
    public int? MaxKernelThreads { get; set; }

    /// <summary>Whether loading runs one prediction (JIT compilation, first kernels, buffers) so the first caller gets warm latency.</summary>
    public bool WarmUp { get; set; } = true;
}
