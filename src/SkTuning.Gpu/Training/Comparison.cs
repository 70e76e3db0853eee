using System.Globalization;
using System.Text;
using SkTuning.Gpu.Runs;

namespace SkTuning.Gpu.Training;

/// <summary>One method's row of a comparison.</summary>
/// <param name="Method">Method name.</param>
/// <param name="Error">Why it failed (one line), or null.</param>
/// <param name="TrainableParameters">Trainable values.</param>
/// <param name="ModelParameters">The frozen model's parameter count.</param>
/// <param name="Best">Best dev value of the primary metric.</param>
/// <param name="BestStep">Its step.</param>
/// <param name="Final">Final dev value of the primary metric.</param>
/// <param name="SecondsPerStep">Mean training time per step (evaluations excluded).</param>
/// <param name="StepsToTarget">First evaluated step reaching the target metric, or null.</param>
/// <param name="SecondsToTarget">Training seconds at that step, or null.</param>
/// <param name="PeakBytes">Peak bytes the backend held during the run.</param>
/// <param name="Curve">(step, dev metric) points of the learning curve.</param>
public sealed record MethodResult(string Method, string? Error, long TrainableParameters, long ModelParameters, double Best, long BestStep,
    double Final, double SecondsPerStep, long? StepsToTarget, double? SecondsToTarget, long PeakBytes, IReadOnlyList<ChartPoint> Curve);

/// <summary>
/// <c>sktune compare</c>: trains several methods with the same data, head, seed and step budget, one after another on
/// one backend, and tabulates metric, speed, size and memory. A method that fails is reported with its reason
/// instead of aborting the comparison.
/// </summary>
public static class Comparison
{
    /// <summary>Trains every method into <c>outDirectory/METHOD</c> and returns one row each.</summary>
    public static IReadOnlyList<MethodResult> Run(TrainingSetup setup, IReadOnlyList<string> methods, TrainOptions options, double? target,
        Func<string, TrainOptions, TrainOptions> optionsFor, Action<string>? log = null, Action<TrainProgress>? progress = null)
    {
        var rows = new List<MethodResult>();
        foreach (var method in methods)
        {
            log?.Invoke($"compare: {method}");
            var dir = Path.Combine(setup.OutDirectory, method);
            setup.Backend.Memory.ResetPeak();
            try
            {
                if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true);
                var result = Trainer.Train(setup with { OutDirectory = dir }, optionsFor(method, options), resume: false, log, progress);
                var history = RunFolder.Open(dir).ReadHistory();
                string metric = result.Config.PrimaryMetric;
                var curve = history.Points.Where(p => p.Dev is not null && p.Dev.ContainsKey(metric))
                    .Select(p => new ChartPoint(p.Step, p.Dev![metric])).ToList();
                var hit = target is { } t ? history.Points.FirstOrDefault(p => p.Dev is not null && p.Dev.TryGetValue(metric, out var v) && v >= t) : null;
                rows.Add(new MethodResult(method, null, result.Config.TrainableParameters, result.Config.ModelParameters,
                    result.Best.GetValueOrDefault(metric, double.NaN), result.BestStep, result.Final.GetValueOrDefault(metric, double.NaN),
                    result.SecondsPerStep, hit?.Step, hit?.ElapsedSeconds, setup.Backend.Memory.Peak, curve));
            }
            catch (Exception e) when (e is SkTuningException or ArgumentException or NotSupportedException or InvalidOperationException)
            {
                log?.Invoke($"compare: {method} failed: {e.Message}");
                rows.Add(new MethodResult(method, e.Message.ReplaceLineEndings(" "), 0, 0, double.NaN, 0, double.NaN, double.NaN, null, null,
                    setup.Backend.Memory.Peak, []));
            }
        }
        return rows;
    }

    /// <summary>Writes compare.md, compare.json and compare.svg (one learning curve per method) into <paramref name="directory"/>.</summary>
    public static void Write(string directory, string title, string metric, double? target, int steps, IReadOnlyList<MethodResult> rows, string command)
    {
        Directory.CreateDirectory(directory);
        AtomicFile.WriteAllText(Path.Combine(directory, "compare.md"), Markdown(title, metric, target, steps, rows, command));
        RunJson.Write(Path.Combine(directory, "compare.json"), new { title, metric, target, steps, command, methods = rows });
        var series = rows.Where(r => r.Curve.Count > 0).Select(r => new Series(r.Method, r.Curve, ChartAxis.Left, Markers: true)).ToList();
        if (series.Count > 0) LearningCurveSvg.Write(Path.Combine(directory, "compare.svg"), title, series, "step", $"dev {metric}");
    }

    /// <summary>The comparison table in Markdown.</summary>
    public static string Markdown(string title, string metric, double? target, int steps, IReadOnlyList<MethodResult> rows, string command)
    {
        var ic = CultureInfo.InvariantCulture;
        var sb = new StringBuilder();
        sb.AppendLine(CultureInfo.InvariantCulture, $"# {title}").AppendLine();
        sb.AppendLine(CultureInfo.InvariantCulture, $"Same data, head, seed and budget ({steps} steps) for every method. Reproduce: `{command}`").AppendLine();
        string targetHeader = target is { } t ? string.Create(ic, $"steps / s to {metric} ≥ {t:F3}") : "steps / s to target";
        sb.AppendLine($"| method | best dev {metric} (step) | final | {targetHeader} | trainable | % of model | s / step | peak memory |");
        sb.AppendLine("|---|---|---|---|---|---|---|---|");
        foreach (var r in rows)
        {
            if (r.Error is not null)
            {
                sb.AppendLine($"| {r.Method} | failed: {r.Error.Replace("|", "\\|")} | | | | | | |");
                continue;
            }
            string toTarget = r.StepsToTarget is { } s ? string.Create(ic, $"{s} / {r.SecondsToTarget:F0} s") : "not reached";
            sb.AppendLine(string.Create(ic,
                $"| {r.Method} | {r.Best:F4} ({r.BestStep}) | {r.Final:F4} | {toTarget} | {r.TrainableParameters:N0} | {100.0 * r.TrainableParameters / r.ModelParameters:F2}% | {r.SecondsPerStep:F3} | {r.PeakBytes / 1048576.0:F0} MiB |"));
        }
        sb.AppendLine().AppendLine("![learning curves](compare.svg)");
        return sb.ToString();
    }
}
