using System.Text.Json;
using SkTuning.Gpu.Engine;
using SkTuning.Gpu.Runs;
using SkTuning.Gpu.Tests.Data;
using SkTuning.Gpu.Training;

namespace SkTuning.Gpu.Tests.Training;

/// <summary><c>sktune compare</c>'s library side on the fixture model: seeds, summaries, failures as rows, written files.</summary>
public class ComparisonTests
{
    [Fact]
    public void EachSeedTrainsEveryMethodAndTheSummaryIsTheirMeanAndSpread()
    {
        using var dir = new TempDir();
        var (model, task, data, custom) = TrainerTests.Fixture(dir);
        using var backend = new CpuBackend();
        var options = new TrainOptions { SemanticText = "good or bad", Steps = 8, BatchSize = 8, EvalEvery = 4, WarmupSteps = 2 };
        var setup = new TrainingSetup(model, dir.Path, task, data, backend, Path.Combine(dir.Path, "cmp"), custom);
        // The prompt-tuning run of seed 7 fails: it must become that seed's row, not abort the comparison.
        TrainOptions For(string method, TrainOptions o) =>
            method == "prompt" && o.Seed == 7 ? throw new SkTuningException("seed 7 refused") : MethodDefaults.For(method, o);

        var rows = Comparison.RunSeeds(setup, ["linear", "prompt"], options, [3, 7], target: 0.0, For);

        Assert.Equal(["linear", "prompt"], rows.Select(r => r.Method));
        var linear = rows[0];
        Assert.All(linear.Runs, r => Assert.Null(r.Error));
        foreach (int seed in new[] { 3, 7 })
            Assert.True(File.Exists(Path.Combine(dir.Path, "cmp", $"seed-{seed}", "linear", RunFolder.MetricsFileName)), $"seed {seed}'s run folder");
        // Different seeds are different trainings (head init, batch order), and the summary is their mean and sample sd.
        var (a, b) = (linear.Runs[0], linear.Runs[1]);
        Assert.NotEqual(a.Curve.Select(p => p.Y), b.Curve.Select(p => p.Y));
        Assert.Equal((a.Best + b.Best) / 2, linear.Best.Mean, 12);
        Assert.Equal(Math.Abs(a.Best - b.Best) / Math.Sqrt(2), linear.Best.Sd, 12);
        Assert.Equal((a.Final + b.Final) / 2, linear.Final.Mean, 12);
        Assert.Equal(2, linear.ReachedTarget);
        Assert.Equal(4, linear.MeanStepsToTarget);
        Assert.Equal(a.Curve.Select(p => p.X), linear.MeanCurve.Select(p => p.X));
        Assert.Equal((a.Curve[^1].Y + b.Curve[^1].Y) / 2, linear.MeanCurve[^1].Y, 12);

        var prompt = rows[1];
        Assert.Null(prompt.Error);
        Assert.Equal(1, prompt.Failed);
        Assert.Equal("seed 7 refused", prompt.Runs[1].Error);
        Assert.Equal(1, prompt.Best.Count);
        Assert.Equal(prompt.Runs[0].Best, prompt.Best.Mean);

        var outDir = Path.Combine(dir.Path, "cmp");
        Comparison.Write(outDir, "fixture", "accuracy", 0.0, 8, [3, 7], rows, "sktune compare --seeds 3,7");
        var md = File.ReadAllText(Path.Combine(outDir, "compare.md"));
        Assert.Contains($"| linear | {linear.Best} |", md);
        Assert.Contains("prompt: 1 of 2 seeds failed: seed 7 refused", md);
        Assert.Contains("2/2 (4 /", md);
        using var json = JsonDocument.Parse(File.ReadAllText(Path.Combine(outDir, "compare.json")));
        var methods = json.RootElement.GetProperty("methods");
        Assert.Equal(2, methods[0].GetProperty("runs").GetArrayLength());
        Assert.Equal(linear.Best.Mean, methods[0].GetProperty("best").GetProperty("mean").GetDouble(), 12);
        Assert.True(File.Exists(Path.Combine(outDir, "compare.svg")));
    }

    [Fact]
    public void SpreadOfOneValueHasNoDeviationAndOfNoneIsNaN()
    {
        Assert.Equal(new Spread(0.5, 0, 1), Spread.Of([0.5]));
        Assert.Equal(2.0, Spread.Of([1.0, 2.0, 3.0]).Mean);
        Assert.Equal(1.0, Spread.Of([1.0, 2.0, 3.0]).Sd, 12);
        Assert.True(double.IsNaN(Spread.Of([]).Mean));
    }
}
