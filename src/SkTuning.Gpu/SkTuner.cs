using Microsoft.Extensions.Logging;
using SkTuning.Gpu.Data;
using SkTuning.Gpu.Hosting;
using SkTuning.Gpu.Import;
using SkTuning.Gpu.Runs;
using SkTuning.Gpu.Training;

namespace SkTuning.Gpu;

/// <summary>One input's prediction.</summary>
/// <param name="Label">Predicted label name (classification): "positive" for SST-2; in runs written before names were kept, the label as the data spells it ("1").</param>
/// <param name="ClassId">Predicted class id (classification).</param>
/// <param name="Probabilities">Class probabilities in class-id order (classification; <see cref="SkTuner.LabelNames"/> names them).</param>
/// <param name="Value">Predicted value (regression).</param>
/// <param name="Words">The words (token classification: the text split on whitespace).</param>
/// <param name="WordLabels">Predicted tag per word (token classification).</param>
public sealed record Prediction(string? Label, int? ClassId, float[]? Probabilities, double? Value, string[]? Words, string[]? WordLabels);

/// <summary>
/// The library face of a trained run, for hosts that embed a tuned model: load the run folder once, then predict from any
/// thread. Loading computes the adapter's output (SK-Prefix keys/values, SK-Prompt rows: constants after training) once
/// and warms the engine up. Concurrent <see cref="PredictAsync"/> / <see cref="Predict(string, string?)"/> callers are
/// served by a micro-batcher: requests arriving together run as one engine batch (<see cref="SkTunerOptions"/>), with
/// the same answers as calls made one at a time. Several runs can share one frozen model (<see cref="SharedModel"/>), and
/// with <see cref="SkTunerOptions.MixAdapters"/> one batcher: concurrent requests of different SK-Prefix (or SK-Prompt)
/// runs then run as one engine batch.
/// The frozen model must be the one the adapter was trained on (checked by hash). With
/// <see cref="SkTunerOptions.Runtime"/> = <see cref="SkTunerRuntime.OnnxRuntime"/> the run's standalone export
/// (<c>sktune export --format onnx</c>) is served by ONNX Runtime instead, through the same batcher and with the same
/// results. Metrics: <see cref="SkTunerMetrics"/>.
/// </summary>
public sealed class SkTuner : IDisposable
{
    private readonly ITunedPredictor _model;
    private readonly SharedModel? _shared;
    private readonly bool _ownsShared;
    private readonly int _maxBatchSize;
    private readonly MicroBatcher<(TextExample Example, EncodedExample Encoded), Prediction> _batcher;
    // The engine's activations belong to one batch at a time: the batcher's worker and the bulk paths
    // (PredictBatch, PredictExamples) take turns. Single requests never contend for it one by one.
    private readonly Lock _engine = new();
    // Set when this run's requests go through the shared model's mixer (MixAdapters, and an adapter that mixes).
    private readonly AdapterMixer? _mixer;

    private SkTuner(RunFolder run, AdapterConfig config, FrozenModel frozen, SharedModel? shared, bool ownsShared, ITunedPredictor model,
        SkTunerOptions options, AdapterMixer? mixer = null)
    {
        _mixer = mixer;
        Run = run;
        Config = config;
        Frozen = frozen;
        Runtime = options.Runtime;
        _shared = shared;
        _ownsShared = ownsShared;
        _model = model;
        _maxBatchSize = options.MaxBatchSize;
        _batcher = new(RunBatch, options.MaxBatchSize, options.BatchWindow);
    }

    /// <summary>The run folder.</summary>
    public RunFolder Run { get; }

    /// <summary>The run's configuration.</summary>
    public AdapterConfig Config { get; }

    /// <summary>The frozen model (with <see cref="SkTunerRuntime.OnnxRuntime"/>: the tokenizer's source).</summary>
    public FrozenModel Frozen { get; }

    /// <summary>What runs the model: the engine, or ONNX Runtime on the run's export.</summary>
    public SkTunerRuntime Runtime { get; }

    /// <summary>The names of the classes (or tags) in class-id order, as <see cref="Prediction.Label"/> shows them; null for regression.</summary>
    public IReadOnlyList<string>? LabelNames => Config.TaskKind == TaskKind.Regression ? null : Config.LabelNames ?? Config.Labels;

    /// <summary>Loads a run folder's adapter and head onto the frozen model.</summary>
    /// <param name="runDirectory">The run folder written by training.</param>
    /// <param name="model">The frozen model (default: the one the run names).</param>
    /// <param name="device">auto, cuda or cpu.</param>
    /// <param name="log">One-line messages.</param>
    /// <param name="weightPrecision">fp32 or bf16: how the frozen model's weight matrices are stored (bf16: CPU backend); null: as the run was trained.</param>
    /// <exception cref="SkTuningException">Not a run folder, unreadable files, or a model whose hash differs from the adapter's.</exception>
    public static SkTuner Load(string runDirectory, string? model = null, string device = "auto", Action<string>? log = null, string? weightPrecision = null) =>
        Load(runDirectory, null, new SkTunerOptions { Model = model, Device = device, WeightPrecision = weightPrecision }, log);

    /// <summary>Loads a run folder's adapter and head onto its own copy of the frozen model (<see cref="SkTunerOptions.Model"/>).</summary>
    /// <param name="runDirectory">The run folder written by training.</param>
    /// <param name="options">Model, device and batching.</param>
    /// <param name="logger">Where loading reports (model, backend, warm-up).</param>
    /// <exception cref="SkTuningException">Not a run folder, unreadable files, or a model whose hash differs from the adapter's.</exception>
    public static SkTuner Load(string runDirectory, SkTunerOptions options, ILogger<SkTuner>? logger = null) =>
        Load(runDirectory, null, options, Log(logger));

    /// <summary>
    /// Loads a run folder's adapter and head over a frozen model already loaded: the run costs its adapter's memory, not the
    /// model's (LoRA and full fine-tuning runs upload their own weights). <paramref name="model"/> must outlive the tuner.
    /// </summary>
    /// <param name="runDirectory">The run folder written by training.</param>
    /// <param name="model">The shared frozen model and backend.</param>
    /// <param name="options">Batching (model and device come from <paramref name="model"/>).</param>
    /// <param name="logger">Where loading reports.</param>
    /// <exception cref="SkTuningException">Not a run folder, unreadable files, or a model whose hash differs from the adapter's.</exception>
    public static SkTuner Load(string runDirectory, SharedModel model, SkTunerOptions? options = null, ILogger<SkTuner>? logger = null) =>
        Load(runDirectory, model, options ?? new SkTunerOptions(), Log(logger));

    private static Action<string>? Log(ILogger? logger) => logger is null ? null : message => logger.LogInformation("{Message}", message);

    private static SkTuner Load(string runDirectory, SharedModel? shared, SkTunerOptions options, Action<string>? log)
    {
        var run = RunFolder.Open(runDirectory);
        var config = run.ReadConfig<AdapterConfig>();
        config.Validate(run.ConfigPath);
        if (options.Runtime == SkTunerRuntime.OnnxRuntime) return LoadExport(run, config, shared, options, log);
        if (options.MaxKernelThreads is { } threads) Kernels.KernelParallelism.MaxThreads = threads;
        bool owns = shared is null;
        if (owns && options.WeightPrecision is { } asked && !string.Equals(asked, config.Weights, StringComparison.OrdinalIgnoreCase))
            log?.Invoke($"note: the run was trained with {config.Weights} frozen weights; loading them as {asked} as asked (outputs differ by that rounding)");
        shared ??= SharedModel.Load(options.Model ?? config.Model, options.Device, log, options.WeightPrecision ?? config.Weights);
        SkTuningModel? tuned = null;
        SkTuner tuner;
        try
        {
            var weights = run.ReadAdapter(expectedModelHash: shared.Frozen.Hash);
            tuned = TunedModelBuilder.Build(shared.Frozen, config, shared.Backend, log, shared.Weights);
            tuned.Parameters.Import(tuned.Parameters.Values, weights.Tensors, weights.Source);
            tuned.FixInjection();
            AdapterMixer? mixer = null;
            if (options.MixAdapters && !owns)
            {
                if (tuned.MixableInjection is not null) mixer = shared.Mixer(options);
                else log?.Invoke($"note: {config.Method} rows do not mix with other runs' (only a prompt or prefix on the frozen model does); this run batches alone");
            }
            tuner = new SkTuner(run, config, shared.Frozen, shared, owns, tuned, options, mixer);
        }
        catch
        {
            tuned?.Dispose();
            if (owns) shared.Dispose();
            throw;
        }
        return WarmedUp(tuner, options, log);
    }

    /// <summary>The run served by ONNX Runtime on its export: the frozen model is read for its tokenizer only.</summary>
    private static SkTuner LoadExport(RunFolder run, AdapterConfig config, SharedModel? shared, SkTunerOptions options, Action<string>? log)
    {
        if (shared is not null)
            throw new SkTuningException("a shared model serves the engine runtime; with Runtime = OnnxRuntime the exported file holds the whole model");
        var path = options.OnnxModel
            ?? throw new SkTuningException("Runtime = OnnxRuntime needs SkTunerOptions.OnnxModel: the file written by sktune export --format onnx");
        var frozen = FrozenModel.Load(options.Model ?? config.Model);
        var model = OrtTunedModel.Load(path, config, options.MaxKernelThreads);
        log?.Invoke($"serving {path} with ONNX Runtime");
        return WarmedUp(new SkTuner(run, config, frozen, null, false, model, options), options, log);
    }

    private static SkTuner WarmedUp(SkTuner tuner, SkTunerOptions options, Action<string>? log)
    {
        try
        {
            if (options.WarmUp) tuner.WarmUp(log);
            return tuner;
        }
        catch
        {
            tuner.Dispose();
            throw;
        }
    }

    private void WarmUp(Action<string>? log)
    {
        var started = System.Diagnostics.Stopwatch.GetTimestamp();
        string pair = Config.TextPairs == true ? "warm up" : null!;
        // One row and two rows of different lengths: JIT-compiles the single and the padded batch paths.
        PredictBatch([("warm up", pair), ("warm up the engine", pair)]);
        Predict("warm up", pair);
        log?.Invoke($"warm-up: {System.Diagnostics.Stopwatch.GetElapsedTime(started).TotalMilliseconds:F0} ms");
    }

    /// <summary>
    /// Predicts one text (or sentence pair), batched with concurrent callers; a lone caller (nothing queued, no batch running)
    /// runs it on its own thread. Thread-safe.
    /// </summary>
    /// <exception cref="SkTuningException">A pair for a run trained on single texts, or a single text for a run trained on pairs.</exception>
    public Prediction Predict(string text, string? pair = null)
    {
        var request = Request(text, pair);
        if (_mixer is not null) return _mixer.Predict(new MixedRequest(this, request.Example, request.Encoded));
        return _batcher.TryRunAlone(request, out var prediction) ? prediction : _batcher.Submit(request, CancellationToken.None).GetAwaiter().GetResult();
    }

    /// <summary>
    /// Predicts one text (or sentence pair): queued for the micro-batcher, which runs it with the requests arriving with it.
    /// Thread-safe. Cancelling <paramref name="cancel"/> before its batch runs cancels the task and drops the request.
    /// </summary>
    /// <exception cref="SkTuningException">A pair for a run trained on single texts, or a single text for a run trained on pairs.</exception>
    public Task<Prediction> PredictAsync(string text, string? pair = null, CancellationToken cancel = default)
    {
        var request = Request(text, pair);
        return _mixer is not null ? _mixer.PredictAsync(new MixedRequest(this, request.Example, request.Encoded), cancel) : _batcher.Submit(request, cancel);
    }

    /// <summary>The prompt or prefix this run feeds the shared engine, and its kind (only on a tuner that mixes).</summary>
    internal (AdapterKind Kind, bool Prompt, Engine.DeviceView<float> Values) MixableInjection => ((SkTuningModel)_model).MixableInjection!.Value;

    /// <summary>
    /// This run's answers for some rows of a batch the mixer's engine ran with this run's prefix on them: its head on the
    /// hidden states of the whole batch, then rows <paramref name="rows"/> (the batch rows of <paramref name="examples"/>).
    /// </summary>
    internal IReadOnlyList<Prediction> PredictRows(Engine.DeviceView<float> hidden, Engine.TokenBatch batch, IReadOnlyList<TextExample> examples,
        IReadOnlyList<EncodedExample> encoded, int[] rows)
    {
        var model = (SkTuningModel)_model;
        float[] outputs;
        // The head's buffers belong to this run: its own batcher's worker may be using them.
        lock (_engine) outputs = model.PredictHead(hidden, batch);
        int chunk = outputs.Length / batch.Batch;
        var mine = new float[rows.Length * chunk];
        for (int j = 0; j < rows.Length; j++) Array.Copy(outputs, rows[j] * chunk, mine, j * chunk, chunk);
        var predictions = Evaluator.Collect(model.Head.Kind, model.Head.Classes, model.SkipRows, new EncodedDataset(encoded, 0), examples,
            [(Enumerable.Range(0, rows.Length).ToArray(), batch.SeqLen, mine)]);
        return examples.Select((e, i) => ToPrediction(predictions, i, e)).ToList();
    }

    /// <summary>One input, checked and encoded, as the batcher takes it.</summary>
    internal (TextExample Example, EncodedExample Encoded) Request(string text, string? pair)
    {
        Config.CheckInput(pair, "input");
        var example = Example(text, pair, "input");
        return (example, ExampleEncoder.Encode(Frozen.Tokenizer, [example], Config.TaskKind, Config.MaxTokens, requireTargets: false).Examples[0]);
    }

    /// <summary>Predicts many inputs at once, in length-sorted engine batches, in their order. Thread-safe.</summary>
    /// <exception cref="SkTuningException">A pair for a run trained on single texts, or a single text for a run trained on pairs.</exception>
    public IReadOnlyList<Prediction> PredictBatch(IReadOnlyList<(string Text, string? Pair)> inputs)
    {
        for (int i = 0; i < inputs.Count; i++) Config.CheckInput(inputs[i].Pair, $"input {i + 1}");
        var examples = inputs.Select((x, i) => Example(x.Text, x.Pair, $"input {i + 1}")).ToList();
        var predictions = PredictExamples(examples);
        return examples.Select((e, i) => ToPrediction(predictions, i, e)).ToList();
    }

    /// <summary>Predictions for labelled or unlabelled examples, in their order. Thread-safe.</summary>
    public Predictions PredictExamples(IReadOnlyList<TextExample> examples)
    {
        var encoded = ExampleEncoder.Encode(Frozen.Tokenizer, examples, Config.TaskKind, Config.MaxTokens, requireTargets: false);
        lock (_engine) return Evaluator.Predict(_model, encoded, examples, Trainer.EvalBatchSize, Frozen.Tokenizer.PadId);
    }

    /// <summary>The task's metrics on labelled examples (the same computation as training's dev evaluation).</summary>
    public Dictionary<string, double> Evaluate(TaskSpec task, TaskData data, IReadOnlyList<TextExample> examples, out Predictions predictions)
    {
        predictions = PredictExamples(examples);
        var metrics = Evaluator.Score(task, data, examples, predictions);
        metrics["loss"] = predictions.Loss;
        return metrics;
    }

    private IReadOnlyList<Prediction> RunBatch(IReadOnlyList<(TextExample Example, EncodedExample Encoded)> requests)
    {
        var examples = requests.Select(r => r.Example).ToList();
        var encoded = new EncodedDataset(requests.Select(r => r.Encoded).ToList(), 0);
        Predictions predictions;
        lock (_engine) predictions = Evaluator.Predict(_model, encoded, examples, _maxBatchSize, Frozen.Tokenizer.PadId);
        return examples.Select((e, i) => ToPrediction(predictions, i, e)).ToList();
    }

    private TextExample Example(string text, string? pair, string source) => Config.TaskKind == TaskKind.TokenClassification
        ? TextExample.ForWords(Words(text), new int[Words(text).Length], source)
        : new TextExample { Text = text, TextPair = pair, Source = source };

    private Prediction ToPrediction(Predictions p, int i, TextExample e) => Config.TaskKind switch
    {
        TaskKind.Regression => new Prediction(null, null, null, p.Values![i], null, null),
        TaskKind.TokenClassification => new Prediction(null, null, null, null, e.Words, p.WordLabels![i].Select(Config.LabelName).ToArray()),
        _ => new Prediction(Config.LabelName(p.Classes![i]), p.Classes![i], p.Probabilities![i], null, null, null),
    };

    private static string[] Words(string text) => text.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries);

    /// <summary>
    /// Finishes the queued requests, then frees the adapter (and the frozen model when this tuner loaded it). A tuner that
    /// mixes its rows with other runs' shares the model's batcher: let its calls finish before disposing it.
    /// </summary>
    public void Dispose()
    {
        _batcher.Dispose();
        _model.Dispose();
        if (_ownsShared) _shared?.Dispose();
    }
}
