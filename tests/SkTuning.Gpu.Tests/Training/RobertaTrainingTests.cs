using SkTuning.Gpu.Engine;
using SkTuning.Gpu.Import;
using SkTuning.Gpu.Runs;
using SkTuning.Gpu.Tests.Data;
using SkTuning.Gpu.Tests.Support;
using SkTuning.Gpu.Training;

namespace SkTuning.Gpu.Tests.Training;

/// <summary>
/// SK-Prefix and SK-Prompt train on a RoBERTa-style export (its folder holds the RoBERTa tokenizer; or XLM-R's
/// SentencePiece one) and the saved run reloads: eval reproduces the best dev metrics and predict agrees with eval.
/// </summary>
public class RobertaTrainingTests
{
    /// <summary>A model folder: roberta_opset17_no_token_types with XLM-R's SentencePiece tokenizer instead of RoBERTa's BPE.</summary>
    private static string XlmrFolder(TempDir dir)
    {
        string folder = Path.Combine(dir.Path, "xlmr");
        Directory.CreateDirectory(folder);
        File.Copy(EncoderFixtures.OnnxPath("roberta_opset17_no_token_types"), Path.Combine(folder, "model.onnx"));
        File.Copy(Path.Combine(AppContext.BaseDirectory, "Fixtures", "tokenizers", "xlmr-unigram", "sentencepiece.bpe.model"),
            Path.Combine(folder, "sentencepiece.bpe.model"));
        return folder;
    }

    [Theory]
    [InlineData("sk-prefix", "roberta")]
    [InlineData("sk-prompt", "roberta")]
    [InlineData("sk-prefix", "xlmr")]
    public void SkMethodsTrainOnRobertaAndTheRunReloads(string method, string tokenizer)
    {
        using var dir = new TempDir();
        string folder = tokenizer == "xlmr" ? XlmrFolder(dir) : EncoderFixtures.Folder("roberta_opset14");
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
        var predicted = tuner.PredictBatch(data.Dev.Select(e => (e.Text, e.TextPair)).ToList());
        Assert.Equal(predictions.Classes, predicted.Select(p => p.ClassId!.Value).ToArray());
    }
}
