namespace SkTuning.Gpu.Runs;

/// <summary>One point of the learning curve.</summary>
/// <param name="Step">Optimizer steps taken.</param>
/// <param name="ExamplesSeen">Training examples consumed.</param>
/// <param name="TrainLoss">Mean training loss since the previous point (NaN when none was measured).</param>
/// <param name="LearningRate">The learning rate at this step.</param>
/// <param name="ElapsedSeconds">Training time so far.</param>
/// <param name="Dev">Dev-set metrics when an evaluation ran at this step; else null.</param>
public sealed record CurvePoint(
    long Step,
    long ExamplesSeen,
    double TrainLoss,
    double LearningRate,
    double ElapsedSeconds,
    IReadOnlyDictionary<string, double>? Dev = null);

/// <summary>
/// The learning-curve history of a run plus its best and final metrics, saved as <c>metrics.json</c>.
/// Append points as training goes (<see cref="Add"/>) and save after each; on resume, <see cref="Load"/> it and
/// <see cref="TruncateAfter"/> the checkpoint's step so the points after it are not duplicated.
/// </summary>
public sealed class RunHistory
{
    private readonly List<CurvePoint> _points = [];

    /// <summary>The points, in step order.</summary>
    public IReadOnlyList<CurvePoint> Points => _points;

    /// <summary>The dev metric that selects the best step ("accuracy", "mcc", ...); null when unknown.</summary>
    public string? PrimaryMetric { get; set; }

    /// <summary>Step of the best evaluation; null before the first one.</summary>
    public long? BestStep { get; set; }

    /// <summary>Dev metrics at <see cref="BestStep"/>; null before the first evaluation.</summary>
    public IReadOnlyDictionary<string, double>? Best { get; set; }

    /// <summary>Metrics at the end of training (of the weights saved); null until the run ends.</summary>
    public IReadOnlyDictionary<string, double>? Final { get; set; }

    /// <summary>Appends <paramref name="point"/>; steps must not decrease.</summary>
    public void Add(CurvePoint point)
    {
        ArgumentNullException.ThrowIfNull(point);
        if (_points.Count > 0 && point.Step < _points[^1].Step)
            throw new ArgumentException($"step {point.Step} comes before the last point's step {_points[^1].Step}", nameof(point));
        _points.Add(point);
    }

    /// <summary>Removes the points after <paramref name="step"/> (resuming from a checkpoint at that step).</summary>
    public void TruncateAfter(long step) => _points.RemoveAll(p => p.Step > step);

    /// <summary>Saves the history to <c>metrics.json</c> in <paramref name="folder"/>, atomically.</summary>
    public void Save(string folder) =>
        RunJson.Write(Path.Combine(folder, RunFolder.MetricsFileName), new MetricsFile(_points, PrimaryMetric, BestStep, Best, Final));

    /// <summary>Loads <c>metrics.json</c> from <paramref name="folder"/>; a missing or corrupt file is a one-line error.</summary>
    public static RunHistory Load(string folder)
    {
        var path = Path.Combine(folder, RunFolder.MetricsFileName);
        var file = RunJson.Read<MetricsFile>(path);
        var history = new RunHistory { PrimaryMetric = file.PrimaryMetric, BestStep = file.BestStep, Best = file.Best, Final = file.Final };
        foreach (var p in file.Points ?? [])
        {
            if (p is null) throw new SkTuningException($"{path}: a point of the learning curve is null");
            if (history._points.Count > 0 && p.Step < history._points[^1].Step)
                throw new SkTuningException($"{path}: the learning curve's steps decrease ({history._points[^1].Step} then {p.Step})");
            history._points.Add(p);
        }
        return history;
    }

    /// <summary>The file layout of <c>metrics.json</c>.</summary>
    private sealed record MetricsFile(
        IReadOnlyList<CurvePoint> Points,
        string? PrimaryMetric,
        long? BestStep,
        IReadOnlyDictionary<string, double>? Best,
        IReadOnlyDictionary<string, double>? Final);
}
