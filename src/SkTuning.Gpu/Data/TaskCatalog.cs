using System.Globalization;
using M = SkTuning.Gpu.Training.MetricNames;

namespace SkTuning.Gpu.Data;

/// <summary>Options of the <c>custom</c> task: the user's own files.</summary>
public sealed record CustomTaskOptions
{
    /// <summary>Training file (relative paths are relative to the current directory).</summary>
    public required string TrainFile { get; init; }

    /// <summary>Dev file; null splits the training file (seeded, stratified for classification) by <see cref="DevFraction"/>.</summary>
    public string? DevFile { get; init; }

    /// <summary>File format; null infers it from the extension (.tsv, .csv, .jsonl/.json/.ndjson, .conll).</summary>
    public DataFormat? Format { get; init; }

    /// <summary>Text column (name, or 0-based index for TSV/CSV); for token classification in JSON Lines, the array of words.</summary>
    public string TextColumn { get; init; } = "text";

    /// <summary>Second-text column of sentence pairs, or null.</summary>
    public string? PairColumn { get; init; }

    /// <summary>Label column; for token classification in JSON Lines, the array of tags.</summary>
    public string LabelColumn { get; init; } = "label";

    /// <summary>What the head predicts.</summary>
    public TaskKind Kind { get; init; } = TaskKind.Classification;

    /// <summary>Whether TSV/CSV files start with a header row.</summary>
    public bool HasHeader { get; init; } = true;

    /// <summary>Tag scheme of token-classification files (IOB1 is converted to BIO).</summary>
    public TagScheme TagScheme { get; init; } = TagScheme.Bio;

    /// <summary>Fraction held out for dev when there is no dev file.</summary>
    public double DevFraction { get; init; } = 0.1;

    /// <summary>Label whose F1 is reported, or null (then accuracy, macro F1 and MCC).</summary>
    public string? PositiveLabel { get; init; }
}

/// <summary>The named tasks over the shared data folder, and the <c>custom</c> task over the user's files.</summary>
public static class TaskCatalog
{
    /// <summary>The seed of the tasks' own splits (Wikigold, SMS spam, custom without a dev file) unless another is given.</summary>
    public const int DefaultSeed = 42;

    private static readonly TaskSpec[] Named =
    [
        new("sst2", "GLUE SST-2 sentiment (sentence → 0 neg / 1 pos)", TaskKind.Classification, [M.Accuracy], null,
            (t, root, _) => Glue(t, root, "SST-2", p => DelimitedReader.Tsv(p), "sentence", null, "label"),
            ClassNames("negative", "positive")),
        new("cola", "GLUE CoLA acceptability (sentence → 0 / 1)", TaskKind.Classification, [M.Matthews, M.Accuracy], null,
            (t, root, _) => Glue(t, root, "CoLA", p => DelimitedReader.Tsv(p, hasHeader: false), 3, null, 1),
            ClassNames("unacceptable", "acceptable")),
        new("mrpc", "GLUE MRPC paraphrase (sentence pair → 0 / 1)", TaskKind.Classification, [M.F1, M.Accuracy], "1",
            (t, root, _) => Glue(t, root, "MRPC", p => DelimitedReader.Tsv(p), "#1 String", "#2 String", "Quality"),
            ClassNames("not_equivalent", "equivalent")),
        new("rte", "GLUE RTE entailment (sentence pair → entailment / not_entailment)", TaskKind.Classification, [M.Accuracy], null,
            (t, root, _) => Glue(t, root, "RTE", p => DelimitedReader.Tsv(p), "sentence1", "sentence2", "label")),
        new("stsb", "GLUE STS-B similarity (sentence pair → score 0..5)", TaskKind.Regression, [M.Pearson, M.Spearman], null,
            (t, root, _) => Glue(t, root, "STS-B", p => DelimitedReader.Tsv(p), "sentence1", "sentence2", "score")),
        new("wnut17", "WNUT 2017 named entities (6 types, BIO)", TaskKind.TokenClassification, [M.EntityF1], null,
            (t, root, _) => Tagged(t,
                new ConllReader(Path.Combine(Root(root), "ner", "wnut17", "train.conll")).Read().ToList(),
                new ConllReader(Path.Combine(Root(root), "ner", "wnut17", "dev.conll")).Read().ToList(),
                new ConllReader(Path.Combine(Root(root), "ner", "wnut17", "test.conll")).Read().ToList())),
        new("wikigold", "Wikigold named entities (PER ORG LOC MISC; IOB1 read as BIO; seeded 80/10/10 split)", TaskKind.TokenClassification, [M.EntityF1], null,
            (t, root, seed) =>
            {
                var all = new ConllReader(Path.Combine(Root(root), "ner", "wikigold", "wikigold.conll"), TagScheme.Iob1).Read().ToList();
                var (train, dev, test) = Splits.Random(all, 0.8, 0.1, seed);
                return Tagged(t, train, dev, test);
            }),
        new("sms-spam", "SMS Spam Collection (message → ham / spam; seeded stratified 90/10 split)", TaskKind.Classification, [M.F1, M.Accuracy], "spam",
            (t, root, seed) =>
            {
                var all = DelimitedReader.Tsv(Path.Combine(Root(root), "spam", "sms", "SMSSpamCollection")).Read("sms_message", null, "label").ToList();
                var (train, dev) = Splits.Stratified(all, 0.1, seed);
                return Classified(t, train, dev);
            }),
    ];

    /// <summary>The names of the named tasks (not <c>custom</c>).</summary>
    public static IReadOnlyList<string> Names { get; } = Named.Select(t => t.Name).ToArray();

    /// <summary>The named tasks.</summary>
    public static IReadOnlyList<TaskSpec> All => Named;

    /// <summary>The task called <paramref name="name"/> (case-insensitive); an unknown name is a <see cref="SkTuningException"/>.</summary>
    public static TaskSpec Get(string name) =>
        Named.FirstOrDefault(t => string.Equals(t.Name, name, StringComparison.OrdinalIgnoreCase))
        ?? throw new SkTuningException($"unknown task '{name}' (tasks: {string.Join(", ", Names)}, custom)");

    /// <summary>The <c>custom</c> task over the user's files; its <see cref="TaskSpec.Load"/> ignores the data root.</summary>
    public static TaskSpec Custom(CustomTaskOptions o)
    {
        if (o.DevFraction is <= 0 or >= 1) throw new SkTuningException($"dev fraction {o.DevFraction} must be between 0 and 1");
        DataFormat format = o.Format ?? FormatOf(o.TrainFile);
        string[] metrics = o.Kind switch
        {
            TaskKind.Regression => [M.Pearson, M.Spearman],
            TaskKind.TokenClassification => [M.EntityF1],
            _ when o.PositiveLabel != null => [M.F1, M.Accuracy],
            _ => [M.Accuracy, M.MacroF1, M.Matthews],
        };
        if (format == DataFormat.Conll && o.Kind != TaskKind.TokenClassification)
            throw new SkTuningException($"{o.TrainFile}: CoNLL files are for token classification (kind {o.Kind})");
        return new TaskSpec("custom", $"custom {o.Kind} from {o.TrainFile}", o.Kind, metrics, o.PositiveLabel, (t, unusedRoot, seed) =>
        {
            if (o.Kind == TaskKind.TokenClassification)
            {
                List<RawSentence> Sentences(string f) => format switch
                {
                    DataFormat.Conll => new ConllReader(f, o.TagScheme).Read().ToList(),
                    DataFormat.JsonLines => new JsonLinesReader(f).ReadSentences(o.TextColumn, o.LabelColumn, o.TagScheme).ToList(),
                    _ => throw new SkTuningException($"{f}: token classification needs CoNLL or JSON Lines, not {format}"),
                };
                var tr = Sentences(o.TrainFile);
                if (o.DevFile != null) return Tagged(t, tr, Sentences(o.DevFile), null);
                var (a, b, _) = Splits.Random(tr, 1 - o.DevFraction, o.DevFraction, seed);
                return Tagged(t, a, b, null);
            }
            List<RawExample> Rows(string f) => format switch
            {
                DataFormat.Tsv => DelimitedReader.Tsv(f, o.HasHeader).Read(ColumnRef.Parse(o.TextColumn), Pair(o.PairColumn), ColumnRef.Parse(o.LabelColumn)).ToList(),
                DataFormat.Csv => DelimitedReader.Csv(f, o.HasHeader).Read(ColumnRef.Parse(o.TextColumn), Pair(o.PairColumn), ColumnRef.Parse(o.LabelColumn)).ToList(),
                DataFormat.JsonLines => new JsonLinesReader(f).Read(o.TextColumn, o.PairColumn, o.LabelColumn).ToList(),
                _ => throw new SkTuningException($"{f}: {format} files are for token classification"),
            };
            var train = Rows(o.TrainFile);
            List<RawExample> dev;
            if (o.DevFile != null) dev = Rows(o.DevFile);
            else if (o.Kind == TaskKind.Classification) (train, dev) = Splits.Stratified(train, o.DevFraction, seed);
            else (train, dev, _) = Splits.Random(train, 1 - o.DevFraction, o.DevFraction, seed);
            return o.Kind == TaskKind.Regression ? Regressed(t, train, dev) : Classified(t, train, dev);
        });
    }

    /// <summary>The format implied by a file's extension; an unknown extension is a <see cref="SkTuningException"/>.</summary>
    public static DataFormat FormatOf(string path) => Path.GetExtension(path).ToLowerInvariant() switch
    {
        ".tsv" or ".tab" => DataFormat.Tsv,
        ".csv" => DataFormat.Csv,
        ".jsonl" or ".json" or ".ndjson" => DataFormat.JsonLines,
        ".conll" or ".bio" or ".iob" or ".conllu" => DataFormat.Conll,
        var e => throw new SkTuningException($"{path}: cannot tell the format from the extension '{e}' (name it .tsv, .csv, .jsonl or .conll)"),
    };

    // GLUE's files hold class ids 0, 1, ...; these are the classes' names in id order (from the GLUE paper's task definitions).
    private static Dictionary<string, string> ClassNames(params string[] names) =>
        names.Select((n, i) => (Id: i.ToString(CultureInfo.InvariantCulture), Name: n)).ToDictionary(x => x.Id, x => x.Name);

    private static ColumnRef? Pair(string? c) => c is null ? null : (ColumnRef?)ColumnRef.Parse(c);

    private static string Root(string root) =>
        Directory.Exists(root) ? root : throw new SkTuningException($"{root}: data folder not found (pass --data <folder>)");

    private static TaskData Glue(TaskSpec t, string root, string dir, Func<string, DelimitedReader> open, ColumnRef text, ColumnRef? pair, ColumnRef label)
    {
        string folder = Path.Combine(Root(root), "glue", dir);
        var train = open(Path.Combine(folder, "train.tsv")).Read(text, pair, label).ToList();
        var dev = open(Path.Combine(folder, "dev.tsv")).Read(text, pair, label).ToList();
        return t.Kind == TaskKind.Regression ? Regressed(t, train, dev) : Classified(t, train, dev);
    }

    internal static TaskData Classified(TaskSpec t, List<RawExample> train, List<RawExample> dev)
    {
        var labels = LabelSet.FromTraining(train.Select(r => r.Label));
        if (t.PositiveLabel is { } p && !labels.TryGetId(p, out _))
            throw new SkTuningException($"{train[0].File}: positive label '{p}' does not occur in the training data (labels: {labels})");
        List<TextExample> Encode(List<RawExample> rows) =>
            rows.ConvertAll(r => TextExample.ForClass(r.Text, r.TextPair, labels.Encode(r.Label, r.File, r.Line), r.Source));
        return new TaskData(t, Encode(train), Encode(dev), null, labels);
    }

    /// <summary>The largest |target| a regression task takes: its square, summed over a batch, stays far inside float32.</summary>
    public const double MaxRegressionTarget = 1e9;

    internal static TaskData Regressed(TaskSpec t, List<RawExample> train, List<RawExample> dev)
    {
        static List<TextExample> Parse(List<RawExample> rows) => rows.ConvertAll(r =>
            !double.TryParse(r.Label, NumberStyles.Float, CultureInfo.InvariantCulture, out double v) || !double.IsFinite(v)
                ? throw new SkTuningException($"{r.File}:{r.Line}: regression target '{LabelSet.Printable(r.Label)}' is not a number")
                : Math.Abs(v) > MaxRegressionTarget
                    ? throw new SkTuningException($"{r.File}:{r.Line}: regression target {LabelSet.Printable(r.Label)} is beyond ±{MaxRegressionTarget:0e0}, where the float32 squared error overflows; rescale the targets")
                    : TextExample.ForValue(r.Text, r.TextPair, v, r.Source));
        return new TaskData(t, Parse(train), Parse(dev), null, null);
    }

    internal static TaskData Tagged(TaskSpec t, List<RawSentence> train, List<RawSentence> dev, List<RawSentence>? test)
    {
        var labels = LabelSet.FromTags(train.SelectMany(s => s.Tags));
        List<TextExample> Encode(List<RawSentence> rows) => rows.ConvertAll(s =>
        {
            var ids = new int[s.Tags.Length];
            for (int i = 0; i < ids.Length; i++) ids[i] = labels.Encode(s.Tags[i], s.File, s.TagLines[i]);
            return TextExample.ForWords(s.Words, ids, s.Source);
        });
        return new TaskData(t, Encode(train), Encode(dev), test is null ? null : Encode(test), labels);
    }
}

/// <summary>Seeded, deterministic splits of a list (each part keeps the file order).</summary>
internal static class Splits
{
    /// <summary>Shuffles indices with <paramref name="seed"/>; the first round(n·a) go to the first part, the next round(n·b) to the second, the rest to the third.</summary>
    public static (List<T> A, List<T> B, List<T> C) Random<T>(List<T> all, double a, double b, int seed)
    {
        int n = all.Count;
        var idx = Enumerable.Range(0, n).ToArray();
        new System.Random(seed).Shuffle(idx);
        int na = (int)Math.Round(n * a), nb = Math.Min(n - na, (int)Math.Round(n * b));
        List<T> Take(int from, int count) => idx.Skip(from).Take(count).Order().Select(i => all[i]).ToList();
        return (Take(0, na), Take(na, nb), Take(na + nb, n - na - nb));
    }

    /// <summary>Per label (in ordinal order), round(count·<paramref name="devFraction"/>) examples chosen by a seeded shuffle go to dev.</summary>
    public static (List<RawExample> Train, List<RawExample> Dev) Stratified(List<RawExample> all, double devFraction, int seed)
    {
        var rng = new System.Random(seed);
        var dev = new bool[all.Count];
        foreach (var group in Enumerable.Range(0, all.Count).GroupBy(i => all[i].Label).OrderBy(g => g.Key, StringComparer.Ordinal))
        {
            var idx = group.ToArray();
            rng.Shuffle(idx);
            int nd = (int)Math.Round(idx.Length * devFraction);
            for (int k = 0; k < nd; k++) dev[idx[k]] = true;
        }
        var train = new List<RawExample>();
        var d = new List<RawExample>();
        for (int i = 0; i < all.Count; i++) (dev[i] ? d : train).Add(all[i]);
        return (train, d);
    }
}
