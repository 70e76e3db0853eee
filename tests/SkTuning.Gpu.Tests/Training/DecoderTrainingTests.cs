using SkTuning.Gpu.Engine;
using SkTuning.Gpu.Import;
using SkTuning.Gpu.Runs;
using SkTuning.Gpu.Tests.Data;
using SkTuning.Gpu.Training;

namespace SkTuning.Gpu.Tests.Training;

/// <summary>
/// Every method trains on a causal decoder of each family (committed torch exports with a tokenizer fixture beside them),
/// and the saved run reloads: eval reproduces the best dev metrics and predict agrees with eval.
/// </summary>
public class DecoderTrainingTests
{
    /// <summary>A model folder: a committed decoder export plus a tokenizer fixture whose vocabulary fits its 1024-row table.</summary>
    internal static string ModelFolder(TempDir dir, string family)
    {
        var (export, tokenizer) = family switch
        {
            "gpt2" => ("gpt2_opset14", "gpt2-bpe"),
            "llama" => ("llama_opset14_gqa_theta500k", "sentencepiece"),
            "qwen2" => ("qwen2_opset17_qkv_bias", "llama3-bpe"),
            "falcon" => ("falcon_opset14_mqa", "gpt2-bpe"),
            "phi" => ("phi_opset17_partial_rotary", "gpt2-bpe"),
            "bloom" => ("bloom_opset14", "gpt2-bpe"),
            _ => throw new ArgumentException(family),
        };
        string fixtures = Path.Combine(AppContext.BaseDirectory, "Fixtures");
        string folder = Path.Combine(dir.Path, family);
        Directory.CreateDirectory(folder);
        File.Copy(Path.Combine(fixtures, "decoders", export, "model.onnx"), Path.Combine(folder, "model.onnx"));
        foreach (var f in Directory.GetFiles(Path.Combine(fixtures, "tokenizers", tokenizer)).Where(f => Path.GetFileName(f) != "reference.json"))
            File.Copy(f, Path.Combine(folder, Path.GetFileName(f)));
        return folder;
    }

    public static TheoryData<string, string> Cases()
    {
        var data = new TheoryData<string, string>();
        foreach (var family in new[] { "gpt2", "llama", "qwen2", "bloom", "falcon", "phi" })
            foreach (var method in MethodDefaults.Methods)
                if (family is "gpt2" or "llama" || method.StartsWith("sk-", StringComparison.Ordinal)) data.Add(family, method);
        return data;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void EveryMethodTrainsOnADecoderAndTheRunReloads(string family, string method)
    {
        using var dir = new TempDir();
        string folder = ModelFolder(dir, family);
        var model = FrozenModel.Load(folder);
        Assert.True(model.Spec.Causal);
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
        Assert.Equal(Pooling.Last, result.Config.Pooling);
        Assert.All(RunFolder.Open(run).ReadHistory().Points, p => Assert.True(double.IsFinite(p.TrainLoss), $"loss {p.TrainLoss} at step {p.Step}"));
        foreach (var file in new[] { "adapter.safetensors", "adapter_config.json", "metrics.json", "report.md", "learning_curve.svg" })
            Assert.True(File.Exists(Path.Combine(run, file)), file);

        using var tuner = SkTuner.Load(run, device: "cpu");
        var metrics = tuner.Evaluate(task, data, data.Dev, out var predictions);
        // Exact for the metrics; the mean loss may differ in the last float bits (seen once in ~50 runs: 1.5e-9 relative on
        // LLaMA + P-tuning v2), so it is held to 1e-6 relative. Cause not pinned down — see the closing note.
        foreach (var (name, value) in result.Best)
            if (name == "loss") Assert.Equal(value, metrics[name], Math.Abs(value) * 1e-6);
            else Assert.Equal(value, metrics[name]);
        var predicted = tuner.PredictBatch(data.Dev.Select(e => (e.Text, e.TextPair)).ToList());
        Assert.Equal(predictions.Classes, predicted.Select(p => p.ClassId!.Value).ToArray());
    }
}
