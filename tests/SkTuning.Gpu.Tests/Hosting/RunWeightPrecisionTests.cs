using SkTuning.Gpu.Engine;
using SkTuning.Gpu.Tests.Data;
using SkTuning.Gpu.Import;
using SkTuning.Gpu.Onnx;
using SkTuning.Gpu.Runs;
using SkTuning.Gpu.Tests.Training;
using SkTuning.Gpu.Training;

namespace SkTuning.Gpu.Tests.Hosting;

/// <summary>
/// A run trained with bf16 frozen weights records it (<see cref="AdapterConfig.Weights"/>), and loading the run uses bf16
/// by default; an explicit other precision is honoured with a logged note.
/// </summary>
public class RunWeightPrecisionTests
{
    [Fact]
    public void ARunTrainedInBf16LoadsInBf16UnlessToldOtherwise()
    {
        using var dir = new TempDir();
        File.WriteAllLines(Path.Combine(dir.Path, "vocab.txt"),
            new[] { "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", ",", "good", "bad", "movie", "the", "was" });
        FixtureModels.WriteBert(Path.Combine(dir.Path, "model.onnx"),
            new BertFixtureOptions(Layers: 1, Hidden: 16, Heads: 2, FfnSize: 32, VocabSize: 64, MaxPositions: 24, Seed: 2));
        var (task, data, custom) = TrainerTests.SentimentData(dir);
        var model = FrozenModel.Load(dir.Path);
        string run = Path.Combine(dir.Path, "run");
        using (var backend = new CpuBackend(WeightPrecision.Bf16))
            Trainer.Train(new TrainingSetup(model, dir.Path, task, data, backend, run, custom), new TrainOptions
            {
                SemanticText = "good or bad", Steps = 2, BatchSize = 4, WarmupSteps = 1, EvalEvery = 2, Seed = 1,
            }, resume: false);
        Assert.Equal("bf16", RunFolder.Open(run).ReadConfig<AdapterConfig>().Weights);

        var byDefault = new List<string>();
        using (SkTuner.Load(run, dir.Path, "cpu", byDefault.Add)) { }
        Assert.Contains(byDefault, line => line.Contains("in bf16", StringComparison.Ordinal));
        Assert.DoesNotContain(byDefault, line => line.StartsWith("note:", StringComparison.Ordinal));

        var asked = new List<string>();
        using (SkTuner.Load(run, dir.Path, "cpu", asked.Add, weightPrecision: "fp32")) { }
        Assert.DoesNotContain(asked, line => line.Contains("in bf16", StringComparison.Ordinal));
        Assert.Contains(asked, line => line.StartsWith("note: the run was trained with bf16", StringComparison.Ordinal));
    }
}
