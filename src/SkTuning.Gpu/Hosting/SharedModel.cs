using SkTuning.Gpu.Engine;
using SkTuning.Gpu.Import;

namespace SkTuning.Gpu.Hosting;

/// <summary>
/// A frozen model loaded once onto a backend for serving: parsed, imported and its weights uploaded a single time, so that
/// several runs loaded over it (<see cref="SkTuner.Load(string, SharedModel, SkTunerOptions?, Microsoft.Extensions.Logging.ILogger{SkTuner}?)"/>)
/// each cost their adapter's memory, not the model's. Runs that train the transformer's own weights (LoRA, full
/// fine-tuning) upload their own copy. Runs loaded with <see cref="SkTunerOptions.MixAdapters"/> also share one
/// micro-batcher: their concurrent requests run as one engine batch. Dispose it after the runs that use it.
/// </summary>
public sealed class SharedModel : IDisposable
{
    private readonly Lock _mixerLock = new();
    private AdapterMixer? _mixer;

    private SharedModel(FrozenModel frozen, Backend backend)
    {
        Frozen = frozen;
        Backend = backend;
        Weights = new TransformerEngine(backend, frozen.Spec, frozen.Weights);
    }

    /// <summary>The frozen model (graph, weights, tokenizer).</summary>
    public FrozenModel Frozen { get; }

    /// <summary>The backend every run over this model runs on.</summary>
    public Backend Backend { get; }

    /// <summary>A frozen engine holding the uploaded weights; runs build their engines over its weights (never run itself).</summary>
    internal TransformerEngine Weights { get; }

    /// <summary>Loads <paramref name="model"/> (a catalog name, .onnx file or folder) onto the backend named by <paramref name="device"/>.</summary>
    /// <param name="model">Catalog name, .onnx file or model folder.</param>
    /// <param name="device">auto, cuda or cpu.</param>
    /// <param name="log">One-line messages.</param>
    /// <param name="weightPrecision">fp32 or bf16: how the frozen weight matrices are stored (bf16: CPU backend).</param>
    /// <exception cref="SkTuningException">A missing or unsupported model, or an unknown device.</exception>
    public static SharedModel Load(string model, string device = "auto", Action<string>? log = null, string weightPrecision = "fp32")
    {
        var frozen = FrozenModel.Load(model);
        var backend = BackendFactory.Create(device, log, weightPrecision);
        try { return new SharedModel(frozen, backend); }
        catch { backend.Dispose(); throw; }
    }

    /// <summary>The batcher of the runs that mix their rows, started by the first of them with its batching options.</summary>
    internal AdapterMixer Mixer(SkTunerOptions options)
    {
        lock (_mixerLock) return _mixer ??= new AdapterMixer(this, options.MaxBatchSize, options.BatchWindow);
    }

    /// <summary>The mixer, or null before a run asked for one (tests and benchmarks).</summary>
    internal AdapterMixer? CurrentMixer => _mixer;

    /// <inheritdoc />
    public void Dispose()
    {
        _mixer?.Dispose();
        Weights.Dispose();
        Backend.Dispose();
    }
}
