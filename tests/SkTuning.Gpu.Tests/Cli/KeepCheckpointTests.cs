using SkTuning.Gpu.Runs;
using SkTuning.Gpu.Tests.Data;
using SkTuning.Gpu.Tests.Support;

namespace SkTuning.Gpu.Tests.Cli;

/// <summary>
/// <c>train --keep-checkpoint</c>: by default a finished run keeps its resume state; with <c>false</c> the last commit is
/// committed again without it, so eval and predict still read the best adapter and metrics, and <c>--resume</c> says
/// plainly that the run finished and has nothing to resume.
/// </summary>
public class KeepCheckpointTests
{
    private static string Committed(string run, string name) => Path.Combine(run, RunFolder.CheckpointDirName, name);

    [Fact]
    public void AFinishedRunCanDropItsResumeStateAndKeepItsAdapter()
    {
        using var dir = new TempDir();
        string kept = Path.Combine(dir.Path, "kept"), dropped = Path.Combine(dir.Path, "dropped");
        Assert.Equal(0, CliProcess.Run(CliTrainingRun.Args(dir, kept, steps: 4, evalEvery: 2)).ExitCode);
        Assert.True(File.Exists(Committed(kept, RunFolder.StateFileName)));

        var r = CliProcess.Run([.. CliTrainingRun.Args(dir, dropped, steps: 4, evalEvery: 2), "--keep-checkpoint", "false"]);
        Assert.True(r.ExitCode == 0, r.Stderr);
        Assert.Contains("dropped the resume state", r.Stderr);
        Assert.False(File.Exists(Committed(dropped, RunFolder.StateFileName)));
        Assert.False(RunFolder.Open(dropped).HasResumeState);
        // The same run (the seed fixes it): the same best adapter, committed and published; metrics and trainer state stay.
        Assert.Equal(File.ReadAllBytes(Committed(kept, RunFolder.AdapterFileName)), File.ReadAllBytes(Committed(dropped, RunFolder.AdapterFileName)));
        Assert.Equal(File.ReadAllBytes(Path.Combine(kept, RunFolder.AdapterFileName)), File.ReadAllBytes(Path.Combine(dropped, RunFolder.AdapterFileName)));
        Assert.True(File.Exists(Committed(dropped, RunFolder.MetricsFileName)));
        Assert.True(File.Exists(Committed(dropped, RunFolder.TrainerFileName)));
        Assert.Empty(Directory.GetDirectories(dropped, RunFolder.TempCheckpointPrefix + "*"));

        var evalKept = CliProcess.Run("eval", "--run", kept, "--device", "cpu");
        var evalDropped = CliProcess.Run("eval", "--run", dropped, "--device", "cpu");
        Assert.Equal(0, evalDropped.ExitCode);
        Assert.Equal(evalKept.Stdout, evalDropped.Stdout);
        Assert.Equal(0, CliProcess.Run("predict", "--run", dropped, "--device", "cpu", "--text", "good movie").ExitCode);

        var resumed = CliProcess.Run([.. CliTrainingRun.Args(dir, dropped, steps: 4, evalEvery: 2), "--resume"]);
        CliErrorTests.AssertOneLineError(resumed, dropped, "finished", "nothing to resume");
    }
}
