using System.Globalization;
using System.Text;

namespace SkTuning.Gpu.Runs;

/// <summary>
/// The contents of a run's <c>report.md</c>: what was trained on what, how well, at what cost. Render it with
/// <see cref="ToMarkdown"/> or write it with <see cref="RunFolder.WriteReport"/>.
/// </summary>
public sealed record RunReport
{
    /// <summary>The report's heading.</summary>
    public required string Title { get; init; }

    /// <summary>What the method does (a sentence or two).</summary>
    public required string Method { get; init; }

    /// <summary>The data set (name, split sizes).</summary>
    public required string Dataset { get; init; }

    /// <summary>The frozen model's name.</summary>
    public required string ModelName { get; init; }

    /// <summary>The frozen model's SHA-256.</summary>
    public required string ModelHash { get; init; }

    /// <summary>Dev metrics at the best step; empty when none.</summary>
    public IReadOnlyDictionary<string, double> BestMetrics { get; init; } = new Dictionary<string, double>();

    /// <summary>The best step; null when unknown.</summary>
    public long? BestStep { get; init; }

    /// <summary>Metrics at the end of training; empty when none.</summary>
    public IReadOnlyDictionary<string, double> FinalMetrics { get; init; } = new Dictionary<string, double>();

    /// <summary>Number of trained parameters (adapter + head).</summary>
    public long TrainableParameters { get; init; }

    /// <summary>Number of parameters of the frozen model.</summary>
    public long ModelParameters { get; init; }

    /// <summary>Mean wall time of one optimizer step, in seconds.</summary>
    public double SecondsPerStep { get; init; }

    /// <summary>Total training time, in seconds.</summary>
    public double TotalSeconds { get; init; }

    /// <summary>Optimizer steps taken; null when unknown.</summary>
    public long? Steps { get; init; }

    /// <summary>Hyperparameters by name (numbers are written with the invariant culture).</summary>
    public IReadOnlyDictionary<string, object?> Hyperparameters { get; init; } = new Dictionary<string, object?>();

    /// <summary>Relative link of the learning-curve image; null for none.</summary>
    public string? LearningCurveImage { get; init; } = RunFolder.LearningCurveFileName;

    /// <summary>The report as Markdown.</summary>
    public string ToMarkdown()
    {
        var md = new StringBuilder();
        md.Append("# ").Append(Inline(Title)).Append("\n\n");
        md.Append("| | |\n|---|---|\n");
        Row(md, "Method", Cell(Method));
        Row(md, "Dataset", Cell(Dataset));
        Row(md, "Model", $"{Cell(ModelName)} (`{Cell(ModelHash)}`)");
        string share = ModelParameters > 0 ? $" ({Percent(100.0 * TrainableParameters / ModelParameters)} of the model's {Count(ModelParameters)})" : "";
        Row(md, "Trainable parameters", Count(TrainableParameters) + share);
        if (Steps is { } steps) Row(md, "Steps", Count(steps));
        Row(md, "Time per step", Duration(SecondsPerStep));
        Row(md, "Total time", Duration(TotalSeconds));
        md.Append('\n');

        md.Append("## Metrics\n\n");
        var names = BestMetrics.Keys.Concat(FinalMetrics.Keys).Distinct().ToList();
        if (names.Count == 0) md.Append("No metrics were recorded.\n\n");
        else
        {
            string best = BestStep is { } b ? $"Best (step {b.ToString(CultureInfo.InvariantCulture)})" : "Best";
            md.Append("| Metric | ").Append(best).Append(" | Final |\n|---|---:|---:|\n");
            foreach (var name in names)
                md.Append("| ").Append(Cell(name)).Append(" | ")
                  .Append(BestMetrics.TryGetValue(name, out var bv) ? Number(bv) : "–").Append(" | ")
                  .Append(FinalMetrics.TryGetValue(name, out var fv) ? Number(fv) : "–").Append(" |\n");
            md.Append('\n');
        }

        md.Append("## Hyperparameters\n\n");
        if (Hyperparameters.Count == 0) md.Append("None recorded.\n\n");
        else
        {
            md.Append("| Name | Value |\n|---|---|\n");
            foreach (var (name, value) in Hyperparameters.OrderBy(h => h.Key, StringComparer.Ordinal))
                md.Append("| ").Append(Cell(name)).Append(" | ").Append(Cell(Format(value))).Append(" |\n");
            md.Append('\n');
        }

        if (LearningCurveImage != null)
            md.Append("## Learning curve\n\n![learning curve](").Append(LearningCurveImage.Replace(" ", "%20")).Append(")\n");
        return md.ToString();
    }

    /// <summary>A metric value: 4 decimals, or "NaN"/"∞".</summary>
    public static string Number(double v) =>
        double.IsNaN(v) ? "NaN" : double.IsInfinity(v) ? (v > 0 ? "∞" : "-∞") : v.ToString("F4", CultureInfo.InvariantCulture);

    /// <summary>A duration: "12.3 ms", "4.56 s", "3m 07s" or "1h 02m 03s".</summary>
    public static string Duration(double seconds)
    {
        if (!double.IsFinite(seconds)) return "–";
        if (seconds < 1) return (seconds * 1000).ToString("0.0", CultureInfo.InvariantCulture) + " ms";
        if (seconds < 60) return seconds.ToString("0.00", CultureInfo.InvariantCulture) + " s";
        var t = TimeSpan.FromSeconds(Math.Round(seconds));
        return t.TotalHours >= 1
            ? $"{(int)t.TotalHours}h {t.Minutes:00}m {t.Seconds:00}s"
            : $"{t.Minutes}m {t.Seconds:00}s";
    }

    private static string Count(long n) => n.ToString("N0", CultureInfo.InvariantCulture);

    private static string Percent(double p) =>
        (p >= 1 ? p.ToString("0.00", CultureInfo.InvariantCulture) : p.ToString("0.####", CultureInfo.InvariantCulture)) + "%";

    private static string Format(object? value) => value switch
    {
        null => "–",
        double d => d.ToString("R", CultureInfo.InvariantCulture),
        float f => f.ToString("R", CultureInfo.InvariantCulture),
        IFormattable f => f.ToString(null, CultureInfo.InvariantCulture),
        _ => value.ToString() ?? "",
    };

    private static void Row(StringBuilder md, string name, string value) => md.Append("| ").Append(name).Append(" | ").Append(value).Append(" |\n");

    /// <summary>One line of text.</summary>
    private static string Inline(string text) => string.Join(' ', text.Split(['\r', '\n'], StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries));

    /// <summary>One line of text safe inside a table cell.</summary>
    private static string Cell(string text) => Inline(text).Replace("|", "\\|");
}
