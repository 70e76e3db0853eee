using SkTuning.Gpu.Runs;
using SkTuning.Gpu.Tests.Data;
using SkTuning.Gpu.Tests.Support;
using Xunit.Abstractions;

namespace SkTuning.Gpu.Tests.Cli;

/// <summary>One writer per run folder (issue 12, finding 3): a live owner refuses the others, a dead one's lock is taken over.</summary>
public class RunLockTests(ITestOutputHelper output)
{
    [Fact]
    public void OfTwoTrainsStartedTogetherOneRunsAndTheOtherIsRefused()
    {
        using var dir = new TempDir();
        string run = Path.Combine(dir.Path, "run");
        using var a = CliProcess.Start(null, null, CliTrainingRun.Args(dir, run, steps: 8, evalEvery: 4, seed: 1));
        using var b = CliProcess.Start(null, null, CliTrainingRun.Args(dir, run, steps: 8, evalEvery: 4, seed: 2));
        // Meanwhile a reader (eval, predict) sees a committed state or is told plainly that there is none yet.
        int loaded = 0;
        while (!a.HasExited || !b.HasExited)
        {
            try
            {
                using var tuner = SkTuner.Load(run, device: "cpu");
                loaded++;
            }
            catch (SkTuningException e) when (e.Message.Contains("not a run folder") || e.Message.Contains("nothing committed yet")
                || e.Message.Contains("no trained weights yet"))
            {
            }
            Thread.Sleep(50);
        }
        var results = new[] { a.Wait(), b.Wait() };
        var winner = Assert.Single(results, r => r.ExitCode == 0);
        var loser = Assert.Single(results, r => r.ExitCode != 0);
        int winnerPid = results[0] == winner ? a.Id : b.Id;
        CliErrorTests.AssertOneLineError(loser, run, $"pid {winnerPid}");

        // The folder is the winner's alone: the same bytes as the same run made with nobody else around.
        using var alone = new TempDir();
        string solo = Path.Combine(alone.Path, "run");
        int winnerSeed = results[0] == winner ? 1 : 2;
        Assert.Equal(0, CliProcess.Run(CliTrainingRun.Args(dir, solo, steps: 8, evalEvery: 4, seed: winnerSeed)).ExitCode);
        RunFingerprint.Of(run).AssertSameAs(RunFingerprint.Of(solo), "the winner's folder");
        output.WriteLine($"refused: {CliProcess.ErrorLines(loser)[0]}; the reader loaded {loaded} commits while it ran");
    }

    [Fact]
    public void ALiveOwnerIsNamedAndTheFolderLeftAlone()
    {
        using var dir = new TempDir();
        string run = Path.Combine(dir.Path, "run");
        using (RunLock.Acquire(run))
        {
            var r = CliProcess.Run(CliTrainingRun.Args(dir, run, steps: 2, evalEvery: 2));
            CliErrorTests.AssertOneLineError(r, run, $"pid {Environment.ProcessId}", "in use");
            Assert.False(File.Exists(Path.Combine(run, RunFolder.ConfigFileName)));
        }
        Assert.Equal(0, CliProcess.Run(CliTrainingRun.Args(dir, run, steps: 2, evalEvery: 2)).ExitCode);
    }

    [Fact]
    public void TheLockOfADeadProcessIsTakenOverAndLogged()
    {
        using var dir = new TempDir();
        string run = Path.Combine(dir.Path, "run");
        // What a train killed with SIGKILL leaves: the lock file with its owner, no process holding it.
        Directory.CreateDirectory(run);
        File.WriteAllText(Path.Combine(run, RunLock.FileName), $"{{\"pid\": 999999, \"host\": \"{Environment.MachineName}\", \"started\": \"2025-01-01T00:00:00+00:00\"}}\n");
        var r = CliProcess.Run(CliTrainingRun.Args(dir, run, steps: 2, evalEvery: 2));
        Assert.Equal(0, r.ExitCode);
        Assert.Contains("took over the lock of pid 999999", r.Stderr);
    }
}
