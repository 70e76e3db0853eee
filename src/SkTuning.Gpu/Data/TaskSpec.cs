using SkTuning.Gpu.Training;

namespace SkTuning.Gpu.Data;

/// <summary>A task's loaded examples: train and dev (and test where the task has one), and its labels.</summary>
public sealed class TaskData
{
    internal TaskData(TaskSpec task, IReadOnlyList<TextExample> train, IReadOnlyList<TextExample> dev, IReadOnlyList<TextExample>? test, LabelSet? labels)
    {
        Task = task;
        Train = train;
        Dev = dev;
        Test = test;
        Labels = labels;
    }

    /// <summary>The task.</summary>
    public TaskSpec Task { get; }

    /// <summary>Training examples.</summary>
    public IReadOnlyList<TextExample> Train { get; }

    /// <summary>Evaluation examples (the dev split; GLUE tests are unlabelled).</summary>
    public IReadOnlyList<TextExample> Dev { get; }

    /// <summary>Held-out test examples where the task defines them (Wikigold's seeded split); else null.</summary>
    public IReadOnlyList<TextExample>? Test { get; }

    /// <summary>The labels (classes or tags) built from training; null for regression.</summary>
    public LabelSet? Labels { get; }

    /// <summary>The id of the task's positive class (for F1), or -1.</summary>
    public int PositiveId => Task.PositiveLabel is { } p && Labels != null && Labels.TryGetId(p, out int id) ? id : -1;

    /// <summary>Whether examples are sentence pairs.</summary>
    public bool IsPair => Train.Count > 0 && Train[0].TextPair != null;
}

/// <summary>
/// A named task: its kind, metrics and how to load it. Get one from <see cref="TaskCatalog"/>.
/// </summary>
public sealed class TaskSpec
{
    private readonly Func<TaskSpec, string, int, TaskData> _load;
    private readonly IReadOnlyDictionary<string, string>? _labelNames;

    internal TaskSpec(string name, string description, TaskKind kind, string[] metrics, string? positiveLabel,
        Func<TaskSpec, string, int, TaskData> load, IReadOnlyDictionary<string, string>? labelNames = null)
    {
        Name = name;
        Description = description;
        Kind = kind;
        MetricNames = metrics;
        PositiveLabel = positiveLabel;
        _load = load;
        _labelNames = labelNames;
    }

    /// <summary>The task's name ("sst2", "custom", ...).</summary>
    public string Name { get; }

    /// <summary>One line: data set and labels.</summary>
    public string Description { get; }

    /// <summary>Classification, regression or token classification.</summary>
    public TaskKind Kind { get; }

    /// <summary>The metrics reported, primary first (names from <see cref="Training.MetricNames"/>).</summary>
    public IReadOnlyList<string> MetricNames { get; }

    /// <summary>The metric used to pick the best checkpoint.</summary>
    public string PrimaryMetric => MetricNames[0];

    /// <summary>The label whose F1 is reported ("1" for MRPC, "spam" for SMS), or null.</summary>
    public string? PositiveLabel { get; }

    /// <summary>
    /// The name a label is shown by: the task's own class name where its files hold only an id (SST-2's "1" is
    /// "positive"), else the label as the data spells it (custom class names, tags, RTE's entailment).
    /// </summary>
    public string LabelName(string label) => _labelNames is not null && _labelNames.TryGetValue(label, out var name) ? name : label;

    /// <summary>Loads train and dev from <paramref name="dataRoot"/> (the shared data folder; custom tasks use their own paths). <paramref name="seed"/> fixes any split the task makes.</summary>
    public TaskData Load(string dataRoot, int seed = TaskCatalog.DefaultSeed) => _load(this, dataRoot, seed);

    /// <summary>Every metric of a classification task, from predicted class ids.</summary>
    public Dictionary<string, double> Evaluate(TaskData data, IReadOnlyList<TextExample> gold, ReadOnlySpan<int> predicted)
    {
        if (Kind != TaskKind.Classification) throw new InvalidOperationException($"{Name} is {Kind}, not classification");
        var g = gold.Select(e => e.Label).ToArray();
        var r = new Dictionary<string, double>();
        foreach (var m in MetricNames)
        {
            r[m] = m switch
            {
                Training.MetricNames.Accuracy => Metrics.Accuracy(g, predicted),
                Training.MetricNames.F1 => Metrics.F1(g, predicted, data.PositiveId).F1,
                Training.MetricNames.MacroF1 => Metrics.MacroF1(g, predicted, data.Labels!.Count),
                Training.MetricNames.Matthews => Metrics.Matthews(g, predicted),
                _ => throw new InvalidOperationException($"metric {m} does not apply to classification"),
            };
        }
        return r;
    }

    /// <summary>Every metric of a regression task, from predicted values.</summary>
    public Dictionary<string, double> Evaluate(IReadOnlyList<TextExample> gold, ReadOnlySpan<double> predicted)
    {
        if (Kind != TaskKind.Regression) throw new InvalidOperationException($"{Name} is {Kind}, not regression");
        var g = gold.Select(e => e.Value).ToArray();
        var r = new Dictionary<string, double>();
        foreach (var m in MetricNames)
        {
            r[m] = m switch
            {
                Training.MetricNames.Pearson => Metrics.Pearson(g, predicted),
                Training.MetricNames.Spearman => Metrics.Spearman(g, predicted),
                _ => throw new InvalidOperationException($"metric {m} does not apply to regression"),
            };
        }
        return r;
    }

    /// <summary>Every metric of a token-classification task, from predicted tag ids per word.</summary>
    public Dictionary<string, double> Evaluate(TaskData data, IReadOnlyList<TextExample> gold, IReadOnlyList<int[]> predicted)
    {
        if (Kind != TaskKind.TokenClassification) throw new InvalidOperationException($"{Name} is {Kind}, not token classification");
        var s = Metrics.EntityF1(gold.Select(e => e.WordLabels!).ToArray(), predicted, data.Labels!.Names);
        var r = new Dictionary<string, double>();
        foreach (var m in MetricNames)
        {
            r[m] = m switch
            {
                Training.MetricNames.EntityF1 => s.F1,
                Training.MetricNames.Accuracy => Metrics.Accuracy(gold.SelectMany(e => e.WordLabels!).ToArray(), predicted.SelectMany(p => p).ToArray()),
                _ => throw new InvalidOperationException($"metric {m} does not apply to token classification"),
            };
        }
        r["entity_precision"] = s.Precision;
        r["entity_recall"] = s.Recall;
        return r;
    }

    /// <inheritdoc/>
    public override string ToString() => Name;
}
