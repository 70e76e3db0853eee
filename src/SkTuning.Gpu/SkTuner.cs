using SkTuning.Gpu.Data;
using SkTuning.Gpu.Engine;
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
/// The library face of a trained run, for hosts that embed a tuned model: load the run folder once, then
/// <see cref="Predict(string, string?)"/> from any thread. The frozen model must be the one the adapter was
/// trained on (checked by hash).
/// </summary>
public sealed class SkTuner : IDisposable
{
    private readonly Lock _gate = new();
    private readonly SkTuningModel _model;
    private readonly Backend _backend;

    private SkTuner(RunFolder run, AdapterConfig config, FrozenModel frozen, Backend backend, SkTuningModel model)
    {
        Run = run;
        Config = config;
        Frozen = frozen;
        _backend = backend;
        _model = model;
    }

    /// <summary>The run folder.</summary>
    public RunFolder Run { get; }

    /// <summary>The run's configuration.</summary>
    public AdapterConfig Config { get; }

    /// <summary>The frozen model.</summary>
    public FrozenModel Frozen { get; }

    /// <summary>The names of the classes (or tags) in class-id order, as <see cref="Prediction.Label"/> shows them; null for regression.</summary>
    public IReadOnlyList<string>? LabelNames => Config.TaskKind == TaskKind.Regression ? null : Config.LabelNames ?? Config.Labels;

    /// <summary>Loads a run folder's adapter and head onto the frozen model.</summary>
    /// <param name="runDirectory">The run folder written by training.</param>
    /// <param name="model">The frozen model (default: the one the run names).</param>
    /// <param name="device">auto, cuda or cpu.</param>
    /// <param name="log">One-line messages.</param>
    /// <param name="weightPrecision">fp32 or bf16: how the frozen model's weight matrices are stored (bf16: CPU backend).</param>
    /// <exception cref="SkTuningException">Not a run folder, unreadable files, or a model whose hash differs from the adapter's.</exception>
    public static SkTuner Load(string runDirectory, string? model = null, string device = "auto", Action<string>? log = null, string weightPrecision = "fp32")
    {
        var run = RunFolder.Open(runDirectory);
        var config = run.ReadConfig<AdapterConfig>();
        config.Validate(run.ConfigPath);
        var frozen = FrozenModel.Load(model ?? config.Model);
        var weights = run.ReadAdapter(expectedModelHash: frozen.Hash);
        var backend = BackendFactory.Create(device, log, weightPrecision);
        try
        {
            var tuned = TunedModelBuilder.Build(frozen, config, backend, log);
            tuned.Parameters.Import(tuned.Parameters.Values, weights.Tensors, weights.Source);
            return new SkTuner(run, config, frozen, backend, tuned);
        }
        catch
        {
            backend.Dispose();
            throw;
        }
    }

    /// <summary>Predicts one text (or sentence pair). Thread-safe.</summary>
    /// <exception cref="SkTuningException">A pair for a run trained on single texts, or a single text for a run trained on pairs.</exception>
    public Prediction Predict(string text, string? pair = null) => Predict([(text, pair)])[0];

    /// <summary>Predicts several inputs in batches. Thread-safe.</summary>
    /// <exception cref="SkTuningException">A pair for a run trained on single texts, or a single text for a run trained on pairs.</exception>
    public IReadOnlyList<Prediction> Predict(IReadOnlyList<(string Text, string? Pair)> inputs)
    {
        for (int i = 0; i < inputs.Count; i++) Config.CheckInput(inputs[i].Pair, $"input {i + 1}");
        var examples = inputs.Select((x, i) => Config.TaskKind == TaskKind.TokenClassification
            ? TextExample.ForWords(Words(x.Text), new int[Words(x.Text).Length], $"input {i + 1}")
            : new TextExample { Text = x.Text, TextPair = x.Pair, Source = $"input {i + 1}" }).ToList();
        var predictions = PredictExamples(examples);
        return examples.Select((e, i) => ToPrediction(predictions, i, e)).ToList();
    }

    /// <summary>Predictions for labelled or unlabelled examples, in their order. Thread-safe.</summary>
    public Predictions PredictExamples(IReadOnlyList<TextExample> examples)
    {
        var encoded = ExampleEncoder.Encode(Frozen.Tokenizer, examples, Config.TaskKind, Config.MaxTokens, requireTargets: false);
        lock (_gate) return Evaluator.Predict(_model, encoded, examples, Trainer.EvalBatchSize, Frozen.Tokenizer.PadId);
    }

    /// <summary>The task's metrics on labelled examples (the same computation as training's dev evaluation).</summary>
    public Dictionary<string, double> Evaluate(TaskSpec task, TaskData data, IReadOnlyList<TextExample> examples, out Predictions predictions)
    {
        predictions = PredictExamples(examples);
        var metrics = Evaluator.Score(task, data, examples, predictions);
        metrics["loss"] = predictions.Loss;
        return metrics;
    }

    private Prediction ToPrediction(Predictions p, int i, TextExample e) => Config.TaskKind switch
    {
        TaskKind.Regression => new Prediction(null, null, null, p.Values![i], null, null),
        TaskKind.TokenClassification => new Prediction(null, null, null, null, e.Words, p.WordLabels![i].Select(Config.LabelName).ToArray()),
        _ => new Prediction(Config.LabelName(p.Classes![i]), p.Classes![i], p.Probabilities![i], null, null, null),
    };

    private static string[] Words(string text) => text.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries);

    /// <inheritdoc />
    public void Dispose()
    {
        _model.Dispose();
        _backend.Dispose();
    }
}
