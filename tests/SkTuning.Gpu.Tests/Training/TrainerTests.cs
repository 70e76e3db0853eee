using SkTuning.Gpu.Data;
using SkTuning.Gpu.Engine;
using SkTuning.Gpu.Import;
using SkTuning.Gpu.Onnx;
using SkTuning.Gpu.Runs;
using SkTuning.Gpu.Tests.Data;
using SkTuning.Gpu.Training;

namespace SkTuning.Gpu.Tests.Training;

/// <summary>The training loop on a tiny fixture model and a small generated dataset: resume, eval and predict agree.</summary>
public class TrainerTests
{
    private static readonly string[] Words = ["good", "great", "fine", "nice", "bad", "awful", "poor", "sad", "the", "movie", "was", "very", "not", "plot", "acting"];

    /// <summary>A fixture model folder (model.onnx + vocab.txt) and a custom sentiment-like dataset.</summary>
    internal static (FrozenModel Model, TaskSpec Task, TaskData Data, CustomTaskOptions Options) Fixture(TempDir dir)
    {
        var vocab = new[] { "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", "," }.Concat(Words).ToArray();
        File.WriteAllLines(Path.Combine(dir.Path, "vocab.txt"), vocab);
        FixtureModels.WriteBert(Path.Combine(dir.Path, "model.onnx"),
            new BertFixtureOptions(Layers: 2, Hidden: 16, Heads: 2, FfnSize: 32, VocabSize: vocab.Length, MaxPositions: 24, Seed: 5));
        var (task, data, options) = SentimentData(dir);
        return (FrozenModel.Load(dir.Path), task, data, options);
    }

    /// <summary>A small generated sentiment dataset (train.tsv 96 rows, dev.tsv 30) in <paramref name="dir"/>, loaded as a custom task.</summary>
    internal static (TaskSpec Task, TaskData Data, CustomTaskOptions Options) SentimentData(TempDir dir)
    {
        var rng = new Random(8);
        string Row(int label)
        {
            var pool = label == 1 ? Words[..4] : Words[4..8];
            var words = Enumerable.Range(0, rng.Next(3, 8)).Select(i => i % 2 == 0 ? pool[rng.Next(pool.Length)] : Words[rng.Next(8, Words.Length)]);
            return $"{string.Join(' ', words)}\t{label}";
        }
        File.WriteAllLines(Path.Combine(dir.Path, "train.tsv"), new[] { "sentence\tlabel" }.Concat(Enumerable.Range(0, 96).Select(i => Row(i % 2))));
        File.WriteAllLines(Path.Combine(dir.Path, "dev.tsv"), new[] { "sentence\tlabel" }.Concat(Enumerable.Range(0, 30).Select(i => Row(i % 2))));
        var options = new CustomTaskOptions { TrainFile = Path.Combine(dir.Path, "train.tsv"), DevFile = Path.Combine(dir.Path, "dev.tsv"), TextColumn = "sentence" };
        var task = TaskCatalog.Custom(options);
        return (task, task.Load(dir.Path), options);
    }

    private static TrainOptions Options(AdapterKind kind) => new()
    {
        Method = kind == AdapterKind.Prompt ? "sk-prompt" : "sk-prefix", Mode = kind == AdapterKind.Prompt ? AdapterMode.Token : AdapterMode.PerLayer, SemanticText = "good or bad", Steps = 12, BatchSize = 8, LearningRate = 5e-3f, WarmupSteps = 2, EvalEvery = 4, Seed = 3,
    };

    private static Dictionary<string, float[]> FinalWeights(string run) =>
        RunFolder.Open(run).ReadCheckpoint<TrainerState>()!.Parameters.ToDictionary(kv => kv.Key, kv => kv.Value.Data);

    [Theory]
    [InlineData(AdapterKind.Prefix)]
    [InlineData(AdapterKind.Prompt)]
    public void AStoppedRunResumesToTheSameWeightsAsAnUninterruptedOne(AdapterKind kind)
    {
        using var dir = new TempDir();
        var (model, task, data, custom) = Fixture(dir);
        using var backend = new CpuBackend();
        string whole = Path.Combine(dir.Path, "whole"), parts = Path.Combine(dir.Path, "parts");
        var full = Trainer.Train(new TrainingSetup(model, dir.Path, task, data, backend, whole, custom), Options(kind), resume: false);
        Assert.False(full.Stopped);
        Assert.Equal(12, full.Steps);

        var first = Trainer.Train(new TrainingSetup(model, dir.Path, task, data, backend, parts, custom), Options(kind), resume: false,
            stopAfterCheckpoint: step => step == 4);
        Assert.True(first.Stopped);
        Assert.Equal(4, first.Steps);
        var second = Trainer.Train(new TrainingSetup(model, dir.Path, task, data, backend, parts, custom), Options(kind), resume: true);
        Assert.Equal(12, second.Steps);

        var a = FinalWeights(whole);
        var b = FinalWeights(parts);
        Assert.Equal(a.Keys.Order(), b.Keys.Order());
        foreach (var name in a.Keys) Assert.Equal(a[name], b[name]);
        Assert.Equal(full.Best, second.Best);
        Assert.Equal(RunFolder.Open(whole).ReadHistory().Points.Select(p => p.Step), RunFolder.Open(parts).ReadHistory().Points.Select(p => p.Step));
    }

    [Fact]
    public void TheSavedRunReproducesItsBestDevMetricsAndPredictAgreesWithEval()
    {
        using var dir = new TempDir();
        var (model, task, data, custom) = Fixture(dir);
        string run = Path.Combine(dir.Path, "run");
        TrainResult result;
        using (var backend = new CpuBackend())
            result = Trainer.Train(new TrainingSetup(model, dir.Path, task, data, backend, run, custom), Options(AdapterKind.Prefix), resume: false);
        Assert.True(File.Exists(Path.Combine(run, "report.md")));
        Assert.True(File.Exists(Path.Combine(run, "learning_curve.svg")));
        Assert.Contains(result.Config.TrainableParameters.ToString("N0", System.Globalization.CultureInfo.InvariantCulture),
            File.ReadAllText(Path.Combine(run, "report.md")));

        using var tuner = SkTuner.Load(run, device: "cpu");
        var metrics = tuner.Evaluate(task, data, data.Dev, out var predictions);
        foreach (var (name, value) in result.Best) Assert.Equal(value, metrics[name]);
        var predicted = tuner.PredictBatch(data.Dev.Select(e => (e.Text, e.TextPair)).ToList());
        Assert.Equal(predictions.Classes, predicted.Select(p => p.ClassId!.Value).ToArray());
        Assert.All(predicted, p => Assert.Equal(1f, p.Probabilities!.Sum(), 3));
        // The same tuner answers from several threads at once.
        Parallel.For(0, 4, _ => Assert.Equal(predicted[0].Label, tuner.Predict(data.Dev[0].Text).Label));
    }

    [Theory]
    [InlineData("sk-prefix")]
    [InlineData("sk-prompt")]
    [InlineData("prompt")]
    [InlineData("prefix")]
    [InlineData("ptuning-v2")]
    [InlineData("lora")]
    [InlineData("linear")]
    [InlineData("full")]
    public void EveryMethodTrainsAndItsParameterCountMatchesItsTensors(string method)
    {
        using var dir = new TempDir();
        var (model, task, data, custom) = Fixture(dir);
        using var backend = new CpuBackend();
        var options = MethodDefaults.For(method, Options(AdapterKind.Prefix) with { Steps = 24, EvalEvery = 12 });
        string run = Path.Combine(dir.Path, method);
        var result = Trainer.Train(new TrainingSetup(model, dir.Path, task, data, backend, run, custom), options, resume: false);
        Assert.Equal(24, result.Steps);
        var history = RunFolder.Open(run).ReadHistory().Points;
        Assert.All(history, p => Assert.True(double.IsFinite(p.TrainLoss), $"{method}: loss {p.TrainLoss} at step {p.Step}"));
        var saved = RunFolder.Open(run).ReadAdapter().Tensors;
        Assert.Equal(result.Config.TrainableParameters, saved.Values.Sum(t => t.ElementCount));
        // Training moved the weights away from their initial values (learning itself is shown on real data by `sktune compare`).
        using var fresh = TunedModelBuilder.Build(model, result.Config, backend, null);
        fresh.Initialize(options.Seed);
        var initial = fresh.Parameters.Export(fresh.Parameters.Values);
        Assert.Contains(saved, kv => !kv.Value.Data.SequenceEqual(initial[kv.Key]));
    }

    [Fact]
    public void EarlyStoppingEndsTheRunAfterPatienceEvaluationsWithoutImprovement()
    {
        using var dir = new TempDir();
        var (model, task, data, custom) = Fixture(dir);
        using var backend = new CpuBackend();
        // With a zero learning rate nothing improves after the first evaluation.
        var result = Trainer.Train(new TrainingSetup(model, dir.Path, task, data, backend, Path.Combine(dir.Path, "run"), custom),
            Options(AdapterKind.Prefix) with { LearningRate = 0f, Steps = 40, EvalEvery = 4, Patience = 2 }, resume: false);
        Assert.Equal(12, result.Steps);
        Assert.Equal(4, result.BestStep);
    }

    [Fact]
    public void ADivergingRunStopsWithTheStepNamed()
    {
        using var dir = new TempDir();
        var (model, task, data, custom) = Fixture(dir);
        using var backend = new CpuBackend();
        var e = Assert.Throws<SkTuningException>(() => Trainer.Train(new TrainingSetup(model, dir.Path, task, data, backend, Path.Combine(dir.Path, "run"), custom),
            Options(AdapterKind.Prefix) with { LearningRate = 1e30f, WarmupSteps = 0, MaxGradNorm = 1e30f }, resume: false));
        Assert.Matches(@"^step \d+: the training loss is (NaN|∞|-∞|Infinity)", e.Message);
    }

    [Fact]
    public void AnAdapterTrainedOnAnotherModelIsRejected()
    {
        using var dir = new TempDir();
        var (model, task, data, custom) = Fixture(dir);
        string run = Path.Combine(dir.Path, "run");
        using (var backend = new CpuBackend())
            Trainer.Train(new TrainingSetup(model, dir.Path, task, data, backend, run, custom), Options(AdapterKind.Prefix) with { Steps = 2, EvalEvery = 2 }, resume: false);
        using var other = new TempDir();
        File.Copy(Path.Combine(dir.Path, "vocab.txt"), Path.Combine(other.Path, "vocab.txt"));
        FixtureModels.WriteBert(Path.Combine(other.Path, "model.onnx"),
            new BertFixtureOptions(Layers: 2, Hidden: 16, Heads: 2, FfnSize: 32, VocabSize: File.ReadAllLines(Path.Combine(dir.Path, "vocab.txt")).Length, MaxPositions: 24, Seed: 6));
        var e = Assert.Throws<SkTuningException>(() => SkTuner.Load(run, other.Path, "cpu"));
        Assert.Contains("adapter.safetensors", e.Message);
        Assert.Contains("trained on model", e.Message);
    }
}
