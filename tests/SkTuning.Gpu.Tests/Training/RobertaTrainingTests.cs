using SkTuning.Gpu.Engine;
using SkTuning.Gpu.Import;
using SkTuning.Gpu.Runs;
using SkTuning.Gpu.Tests.Data;
using SkTuning.Gpu.Tests.Support;
using SkTuning.Gpu.Training;

namespace SkTuning.Gpu.Tests.Training;

/// <summary>
/// SK-Prefix and SK-Prompt train on a RoBERTa-style export (its folder holds the RoBERTa tokenizer) and the saved run
/// reloads: eval reproduces the best dev metrics and predict agrees with eval.
/// </summary>
public class RobertaTrainingTests
{
    [Theory]
    [InlineData("sk-prefix")]
    [InlineData("sk-prompt")]
    public void SkMethodsTrainOnRobertaAndTheRunReloads(string method)
    {
        using var dir = new TempDir();
        string folder = EncoderFixtures.Folder("roberta_opset14");
        var model = FrozenModel.Load(folder);
        Assert.Equal(ModelFamily.Roberta, model.Spec.Family);
        Assert.True(model.Tokenizer.IsRoberta);
        var (task, data, custom) = TrainerTests.SentimentData(dir);
        var options = MethodDefaults.For(method, new TrainOptions
        {
            Method = method, SemanticText = "good or bad", Steps = 6, BatchSize = 8, WarmupSteps = 2, EvalEvery = 3, Seed = 3,
        });
        string run = Path.Combine(dir.Path, "run");
        TrainResult result;
        using (var backend = new CpuBackend())
            result = Trainer.Train(new TrainingSetup(model, folder, task, data, backend, run, custom), options, resume: false);
        Assert.Equal(6, result.Steps);
        Assert.Equal(Pooling.Mean, result.Config.Pooling);
        Assert.Equal(model.Spec.MaxTokens, result.Config.MaxTokens);
        Assert.All(RunFolder.Open(run).ReadHistory().Points, p => Assert.True(double.IsFinite(p.TrainLoss), $"loss {p.TrainLoss} at step {p.Step}"));

        using var tuner = SkTuner.Load(run, device: "cpu");
        var metrics = tuner.Evaluate(task, data, data.Dev, out var predictions);
        foreach (var (name, value) in result.Best)
            if (name == "loss") Assert.Equal(value, metrics[name], Math.Abs(value) * 1e-6);
            else Assert.Equal(value, metrics[name]);
        var predicted = tuner.Predict(data.Dev.Select(e => (e.Text, e.TextPair)).ToList());
        Assert.Equal(predictions.Classes, predicted.Select(p => p.ClassId!.Value).ToArray());
    }
}
