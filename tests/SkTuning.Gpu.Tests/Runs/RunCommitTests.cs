using SkTuning.Gpu.Engine;
using SkTuning.Gpu.Runs;
using SkTuning.Gpu.Tests.Data;
using SkTuning.Gpu.Tests.Support;
using SkTuning.Gpu.Tests.Training;
using SkTuning.Gpu.Training;

namespace SkTuning.Gpu.Tests.Runs;

/// <summary>
/// A run folder is one transactional store: whatever instant a run dies at, <c>--resume</c> ends with the adapter and
/// metrics of an uninterrupted run (issue 12, finding 2). The CLI kill test drives the same property through SIGKILL.
/// </summary>
public class RunCommitTests
{
    private static TrainOptions Options => new()
    {
        Method = "sk-prefix", Mode = AdapterMode.PerLayer, SemanticText = "good or bad", Steps = 12, BatchSize = 8, LearningRate = 5e-3f,
        WarmupSteps = 2, EvalEvery = 4, Seed = 3,
    };

    [Fact]
    public void AKillBetweenTheCheckpointSwapAndTheMetricsWriteLosesNothing()
    {
        using var dir = new TempDir();
        var (model, task, data, custom) = TrainerTests.Fixture(dir);
        using var backend = new CpuBackend();
        TrainingSetup Setup(string run) => new(model, dir.Path, task, data, backend, Path.Combine(dir.Path, run), custom);
        Trainer.Train(Setup("whole"), Options, resume: false);

        string parts = Path.Combine(dir.Path, "parts"), metrics = Path.Combine(parts, RunFolder.MetricsFileName);
        Trainer.Train(Setup("parts"), Options, resume: false, stopAfterCheckpoint: step => step == 4);
        var metricsAtStep4 = File.ReadAllBytes(metrics);
        Trainer.Train(Setup("parts"), Options, resume: true, stopAfterCheckpoint: step => step == 8);
        // The state of a kill after step 8's checkpoint is in place but before anything else of that step reached the folder.
        File.WriteAllBytes(metrics, metricsAtStep4);
        Trainer.Train(Setup("parts"), Options, resume: true);

        RunFingerprint.Of(parts).AssertSameAs(RunFingerprint.Of(Path.Combine(dir.Path, "whole")), "resumed after a kill between checkpoint and metrics");
    }

    [Theory]
    [InlineData("missing")]
    [InlineData("empty")]
    [InlineData("half-written config")]
    public void ARunKilledBeforeItsFirstCommitIsResumable(string left)
    {
        using var dir = new TempDir();
        var (model, task, data, custom) = TrainerTests.Fixture(dir);
        using var backend = new CpuBackend();
        TrainingSetup Setup(string run) => new(model, dir.Path, task, data, backend, Path.Combine(dir.Path, run), custom);
        var options = Options with { Steps = 4, EvalEvery = 2 };
        Trainer.Train(Setup("whole"), options, resume: false);

        string run = Path.Combine(dir.Path, "killed");
        if (left != "missing") Directory.CreateDirectory(run);
        if (left == "half-written config") File.WriteAllText(Path.Combine(run, $".{RunFolder.ConfigFileName}.123.abc.tmp"), "{\"meth");
        var result = Trainer.Train(Setup("killed"), options, resume: true);
        Assert.Equal(4, result.Steps);
        RunFingerprint.Of(run).AssertSameAs(RunFingerprint.Of(Path.Combine(dir.Path, "whole")), $"resumed from a {left} folder");
    }
}
