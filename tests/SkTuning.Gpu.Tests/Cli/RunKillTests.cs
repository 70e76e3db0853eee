using System.Diagnostics;
using SkTuning.Gpu.Runs;
using SkTuning.Gpu.Tests.Data;
using SkTuning.Gpu.Tests.Support;
using SkTuning.Gpu.Tests.Training;
using Xunit.Abstractions;

namespace SkTuning.Gpu.Tests.Cli;

/// <summary>
/// The kill test (issue 12): the real CLI is killed with SIGKILL before every file operation of a small run (the
/// <c>SKTUNE_KILL_AT_FILE_OP</c> hook makes the points deterministic) and at a few wall-clock instants; after each kill the
/// folder loads (its adapter reproduces its own committed best metrics, or it says plainly that nothing is committed yet)
/// and <c>--resume</c> ends with the adapter and metrics of an uninterrupted run, byte for byte.
/// </summary>
public class RunKillTests(ITestOutputHelper output)
{
    private const int Steps = 4, EvalEvery = 2;

    [Fact]
    public void AKilledRunResumesToTheUninterruptedRun()
    {
        using var dir = new TempDir();
        var (_, task, data, _) = TrainerTests.Fixture(dir);
        string whole = Path.Combine(dir.Path, "whole");
        var clock = Stopwatch.StartNew();
        Assert.Equal(0, CliProcess.Run(CliTrainingRun.Args(dir, whole, Steps, EvalEvery)).ExitCode);
        var reference = RunFingerprint.Of(whole);
        output.WriteLine($"uninterrupted run: {clock.Elapsed.TotalSeconds:F1} s");

        // Two kills at a time (the suite runs on 2 cores), until a run gets past every file operation.
        var kills = new List<string>();
        for (int first = 1; ; first += 2)
        {
            var points = new[] { first, first + 1 }.AsParallel().AsOrdered().Select(n => KillAtFileOperation(dir, task, data, n, reference)).ToArray();
            kills.AddRange(points.OfType<string>());
            if (points.Contains(null)) break;
        }
        output.WriteLine($"{kills.Count} kill points: {string.Join("; ", kills)}");
        // Every write of both commits and the files around them: config, 2 × (state, trainer, adapter, metrics, renames,
        // delete, 2 copies), learning curve, report.
        Assert.True(kills.Count >= 18, $"only {kills.Count} kill points");

        // Kills at instants of the wall clock, not of the hook: early in startup, and as soon as the folder shows a stage
        // (polled, so the kill lands a few milliseconds later, wherever the run is then — often inside a write).
        var stages = new (string Name, Func<string, bool> Reached)[]
        {
            ("200 ms after start", _ => false),
            ("config written", run => File.Exists(Path.Combine(run, RunFolder.ConfigFileName))),
            ("first commit being written", run => Directory.Exists(run) && Directory.EnumerateDirectories(run, RunFolder.TempCheckpointPrefix + "*").Any()),
            ("first commit in place", run => Directory.Exists(Path.Combine(run, RunFolder.CheckpointDirName))),
        };
        var instants = stages.AsParallel().AsOrdered().Select((stage, i) => KillAt(dir, task, data, i, stage.Name, stage.Reached, reference)).ToArray();
        output.WriteLine($"kills by time: {string.Join("; ", instants)}; total {clock.Elapsed.TotalSeconds:F1} s");
    }

    // Kills the run just before its n-th file operation; null when the run has fewer.
    private static string? KillAtFileOperation(TempDir dir, Gpu.Data.TaskSpec task, Gpu.Data.TaskData data, int n, RunFingerprint reference)
    {
        string run = Path.Combine(dir.Path, $"op{n}");
        using var child = CliProcess.Start(null, new Dictionary<string, string> { [KillPointVariable] = n.ToString() },
            CliTrainingRun.Args(dir, run, Steps, EvalEvery));
        var killed = child.Wait();
        if (killed.ExitCode == 0) return null;
        Assert.True(killed.ExitCode == 137, $"kill point {n}: exit {killed.ExitCode}: {killed.Stderr}");
        string point = killed.Stderr.Split('\n').Last(l => l.StartsWith("[kill point", StringComparison.Ordinal));
        // Before the config and before the first commit, `sktune eval` says so in one line.
        if (n <= 2)
            CliErrorTests.AssertOneLineError(CliProcess.Run("eval", "--run", run, "--device", "cpu"), run, n == 1 ? "nothing committed yet" : "no trained weights yet", "--resume");
        CheckAndResume(dir, task, data, run, point, reference);
        return point;
    }

    private static string KillAt(TempDir dir, Gpu.Data.TaskSpec task, Gpu.Data.TaskData data, int i, string stage, Func<string, bool> reached,
        RunFingerprint reference)
    {
        string run = Path.Combine(dir.Path, $"t{i}");
        using var child = CliProcess.Start(null, null, CliTrainingRun.Args(dir, run, Steps, EvalEvery));
        var clock = Stopwatch.StartNew();
        while (!child.HasExited && !reached(run) && clock.ElapsedMilliseconds < (i == 0 ? 200 : 60_000)) Thread.Sleep(1);
        var killed = child.Kill();
        string what = $"{stage}: {(killed.ExitCode == 0 ? "finished first" : Leftover(run))}";
        CheckAndResume(dir, task, data, run, what, reference);
        return what;
    }

    private static string Leftover(string run) => !Directory.Exists(run) ? "no folder"
        : string.Join(",", Directory.EnumerateFileSystemEntries(run).Select(Path.GetFileName).Order());

    private const string KillPointVariable = "SKTUNE_KILL_AT_FILE_OP";

    private static void CheckAndResume(TempDir dir, Gpu.Data.TaskSpec task, Gpu.Data.TaskData data, string run, string point, RunFingerprint reference)
    {
        // The folder loads: its adapter reproduces the best metrics committed with it, or nothing is committed yet.
        try
        {
            using var tuner = SkTuner.Load(run, device: "cpu");
            var best = RunFolder.Open(run).ReadHistory().Best;
            Assert.True(best is not null, $"{point}: an adapter without committed metrics");
            var metrics = tuner.Evaluate(task, data, data.Dev, out _);
            foreach (var (name, value) in best) Assert.Equal(value, metrics[name], Math.Abs(value) * 1e-6);
        }
        catch (SkTuningException e) when (e.Message.Contains("nothing committed yet") || e.Message.Contains("no trained weights yet")
            || e.Message.Contains("not a run folder"))
        {
        }
        var resumed = CliProcess.Run([.. CliTrainingRun.Args(dir, run, Steps, EvalEvery), "--resume"]);
        Assert.True(resumed.ExitCode == 0, $"{point}: resume exit {resumed.ExitCode}: {resumed.Stderr}");
        RunFingerprint.Of(run).AssertSameAs(reference, point);
    }
}
