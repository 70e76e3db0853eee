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

/// <summary>Mean and sample standard deviation (n − 1; 0 for a single value) of a metric over seeds.</summary>
/// <param name="Mean">Mean (NaN when there are no values).</param>
/// <param name="Sd">Sample standard deviation.</param>
/// <param name="Count">Values.</param>
public readonly record struct Spread(double Mean, double Sd, int Count)
{
    /// <summary>The spread of <paramref name="values"/>.</summary>
    public static Spread Of(IEnumerable<double> values)
    {
        var v = values.ToArray();
        if (v.Length == 0) return new Spread(double.NaN, double.NaN, 0);
        double mean = v.Average();
        double sd = v.Length > 1 ? Math.Sqrt(v.Sum(x => (x - mean) * (x - mean)) / (v.Length - 1)) : 0;
        return new Spread(mean, sd, v.Length);
    }

    /// <inheritdoc />
    public override string ToString() => string.Create(CultureInfo.InvariantCulture, $"{Mean:F4} ± {Sd:F4}");
}

/// <summary>One method trained with several seeds: the per-seed rows and their summary.</summary>
/// <param name="Method">Method name.</param>
/// <param name="Runs">One row per seed, in seed order (failed ones carry their error).</param>
public sealed record SeededResult(string Method, IReadOnlyList<MethodResult> Runs)
{
    private IEnumerable<MethodResult> Succeeded => Runs.Where(r => r.Error is null);

    /// <summary>Why every seed failed (the first seed's reason), or null when at least one trained.</summary>
    public string? Error => Succeeded.Any() ? null : Runs[0].Error;

    /// <summary>Seeds that failed while others trained.</summary>
    public int Failed => Runs.Count(r => r.Error is not null);

    /// <summary>Best dev value of the primary metric over the seeds that trained.</summary>
    public Spread Best => Spread.Of(Succeeded.Select(r => r.Best));

    /// <summary>Final dev value over the seeds that trained.</summary>
    public Spread Final => Spread.Of(Succeeded.Select(r => r.Final));

    /// <summary>Mean training seconds per step.</summary>
    public double SecondsPerStep => Spread.Of(Succeeded.Select(r => r.SecondsPerStep)).Mean;

    /// <summary>Seeds whose run reached the target.</summary>
    public int ReachedTarget => Succeeded.Count(r => r.StepsToTarget is not null);

    /// <summary>Mean steps to the target over the seeds that reached it, or null.</summary>
    public double? MeanStepsToTarget => ReachedTarget == 0 ? null : Succeeded.Where(r => r.StepsToTarget is not null).Average(r => (double)r.StepsToTarget!);

    /// <summary>Mean training seconds to the target over the seeds that reached it, or null.</summary>
    public double? MeanSecondsToTarget => ReachedTarget == 0 ? null : Succeeded.Where(r => r.SecondsToTarget is not null).Average(r => r.SecondsToTarget!.Value);

    /// <summary>Trainable values (the same for every seed).</summary>
    public long TrainableParameters => Succeeded.FirstOrDefault()?.TrainableParameters ?? 0;

    /// <summary>The frozen model's parameter count.</summary>
    public long ModelParameters => Succeeded.FirstOrDefault()?.ModelParameters ?? 0;

    /// <summary>Largest peak backend memory over the seeds.</summary>
    public long PeakBytes => Runs.Max(r => r.PeakBytes);

    /// <summary>The mean learning curve: at each evaluated step every successful seed has, the mean dev metric.</summary>
    public IReadOnlyList<ChartPoint> MeanCurve
    {
        get
        {
            var runs = Succeeded.ToList();
            if (runs.Count == 0) return [];
            return runs[0].Curve.Select(p => p.X)
                .Where(x => runs.All(r => r.Curve.Any(q => q.X == x)))
                .Select(x => new ChartPoint(x, runs.Average(r => r.Curve.First(q => q.X == x).Y)))
                .ToList();
        }
    }
}

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

    /// <summary>
    /// <see cref="Run"/> once per seed (into <c>outDirectory/seed-N/METHOD</c>), every method with the same seed in a
    /// round; returns one <see cref="SeededResult"/> per method, its runs in the order of <paramref name="seeds"/>.
    /// </summary>
    public static IReadOnlyList<SeededResult> RunSeeds(TrainingSetup setup, IReadOnlyList<string> methods, TrainOptions options,
        IReadOnlyList<int> seeds, double? target, Func<string, TrainOptions, TrainOptions> optionsFor, Action<string>? log = null,
        Action<TrainProgress>? progress = null)
    {
        var rounds = seeds.Select(seed =>
        {
            log?.Invoke($"compare: seed {seed}");
            return Run(setup with { OutDirectory = Path.Combine(setup.OutDirectory, $"seed-{seed}") }, methods, options with { Seed = seed },
                target, optionsFor, log, progress);
        }).ToList();
        return methods.Select((m, i) => new SeededResult(m, rounds.Select(r => r[i]).ToList())).ToList();
    }

    /// <summary>Writes compare.md, compare.json and compare.svg (one learning curve per method) into <paramref name="directory"/>.</summary>
    public static void Write(string directory, string title, string metric, double? target, int steps, IReadOnlyList<MethodResult> rows, string command) =>
        WriteFiles(directory, title, metric, Markdown(title, metric, target, steps, rows, command),
            new { title, metric, target, steps, command, methods = rows },
            rows.Where(r => r.Curve.Count > 0).Select(r => new Series(r.Method, r.Curve, ChartAxis.Left, Markers: true)));

    /// <summary>The same files for a multi-seed comparison: mean ± sd table, every seed's row in the JSON, mean curves.</summary>
    public static void Write(string directory, string title, string metric, double? target, int steps, IReadOnlyList<int> seeds,
        IReadOnlyList<SeededResult> rows, string command) =>
        WriteFiles(directory, title, metric, Markdown(title, metric, target, steps, seeds, rows, command),
            new
            {
                title, metric, target, steps, seeds, command,
                methods = rows.Select(r => new
                {
                    method = r.Method, error = r.Error, best = r.Best, final = r.Final, secondsPerStep = r.SecondsPerStep,
                    reachedTarget = r.ReachedTarget, meanStepsToTarget = r.MeanStepsToTarget, meanSecondsToTarget = r.MeanSecondsToTarget,
                    trainableParameters = r.TrainableParameters, modelParameters = r.ModelParameters, peakBytes = r.PeakBytes,
                    meanCurve = r.MeanCurve, runs = r.Runs,
                }),
            },
            rows.Where(r => r.MeanCurve.Count > 0).Select(r => new Series(r.Method, r.MeanCurve, ChartAxis.Left, Markers: true)));

    private static void WriteFiles(string directory, string title, string metric, string markdown, object json, IEnumerable<Series> curves)
    {
        Directory.CreateDirectory(directory);
        AtomicFile.WriteAllText(Path.Combine(directory, "compare.md"), markdown);
        RunJson.Write(Path.Combine(directory, "compare.json"), json);
        var series = curves.ToList();
        if (series.Count > 0) LearningCurveSvg.Write(Path.Combine(directory, "compare.svg"), title, series, "step", $"dev {metric}");
    }

    /// <summary>The comparison table in Markdown.</summary>
    public static string Markdown(string title, string metric, double? target, int steps, IReadOnlyList<MethodResult> rows, string command)
    {
        var ic = CultureInfo.InvariantCulture;
        string targetHeader = target is { } t ? string.Create(ic, $"steps / s to {metric} ≥ {t:F3}") : "steps / s to target";
        var sb = Table(title, $"Same data, head, seed and budget ({steps} steps) for every method. Reproduce: `{command}`",
            ["method", $"best dev {metric} (step)", "final", targetHeader, "trainable", "% of model", "s / step", "peak memory"]);
        foreach (var r in rows)
        {
            if (r.Error is not null)
            {
                FailedRow(sb, r.Method, r.Error, 8);
                continue;
            }
            string toTarget = r.StepsToTarget is { } s ? string.Create(ic, $"{s} / {r.SecondsToTarget:F0} s") : "not reached";
            sb.AppendLine(string.Create(ic,
                $"| {r.Method} | {r.Best:F4} ({r.BestStep}) | {r.Final:F4} | {toTarget} | {r.TrainableParameters:N0} | {100.0 * r.TrainableParameters / r.ModelParameters:F2}% | {r.SecondsPerStep:F3} | {r.PeakBytes / 1048576.0:F0} MiB |"));
        }
        sb.AppendLine().AppendLine("![learning curves](compare.svg)");
        return sb.ToString();
    }

    /// <summary>The multi-seed comparison table in Markdown: mean ± sample sd over the seeds, and each seed's best.</summary>
    public static string Markdown(string title, string metric, double? target, int steps, IReadOnlyList<int> seeds,
        IReadOnlyList<SeededResult> rows, string command)
    {
        var ic = CultureInfo.InvariantCulture;
        string targetHeader = target is { } t ? string.Create(ic, $"seeds reaching {metric} ≥ {t:F3} (mean steps / s)") : "seeds reaching the target";
        var sb = Table(title, $"Same data, head and budget ({steps} steps) for every method, trained once per seed ({string.Join(", ", seeds)}); " +
            $"mean ± sample standard deviation over the seeds. Reproduce: `{command}`",
            ["method", $"best dev {metric}", "final", "best per seed", targetHeader, "trainable", "% of model", "s / step", "peak memory"]);
        foreach (var r in rows)
        {
            if (r.Error is not null)
            {
                FailedRow(sb, r.Method, r.Error, 9);
                continue;
            }
            string perSeed = string.Join(", ", r.Runs.Select(x => x.Error is null ? x.Best.ToString("F4", ic) : "failed"));
            string toTarget = r.MeanStepsToTarget is { } st
                ? string.Create(ic, $"{r.ReachedTarget}/{r.Runs.Count} ({st:F0} / {r.MeanSecondsToTarget:F0} s)")
                : $"0/{r.Runs.Count}";
            sb.AppendLine(string.Create(ic,
                $"| {r.Method} | {r.Best} | {r.Final} | {perSeed} | {toTarget} | {r.TrainableParameters:N0} | {100.0 * r.TrainableParameters / r.ModelParameters:F2}% | {r.SecondsPerStep:F3} | {r.PeakBytes / 1048576.0:F0} MiB |"));
        }
        foreach (var r in rows.Where(r => r.Error is null && r.Failed > 0))
            sb.AppendLine().AppendLine(ic, $"{r.Method}: {r.Failed} of {r.Runs.Count} seeds failed: {r.Runs.First(x => x.Error is not null).Error}");
        sb.AppendLine().AppendLine("![mean learning curves](compare.svg)");
        return sb.ToString();
    }

    private static StringBuilder Table(string title, string intro, IReadOnlyList<string> columns)
    {
        var sb = new StringBuilder();
        sb.AppendLine($"# {title}").AppendLine().AppendLine(intro).AppendLine();
        sb.AppendLine("| " + string.Join(" | ", columns) + " |");
        sb.AppendLine("|" + string.Concat(Enumerable.Repeat("---|", columns.Count)));
        return sb;
    }

    private static void FailedRow(StringBuilder sb, string method, string error, int columns) =>
        sb.AppendLine($"| {method} | failed: {error.Replace("|", "\\|")} |" + string.Concat(Enumerable.Repeat(" |", columns - 2)));
}
