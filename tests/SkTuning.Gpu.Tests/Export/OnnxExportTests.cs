using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using SkTuning.Gpu.Data;
using SkTuning.Gpu.Engine;
using SkTuning.Gpu.Export;
using SkTuning.Gpu.Import;
using SkTuning.Gpu.Runs;
using SkTuning.Gpu.Tests.Data;
using SkTuning.Gpu.Tests.Support;
using SkTuning.Gpu.Tests.Training;
using SkTuning.Gpu.Training;

namespace SkTuning.Gpu.Tests.Export;

/// <summary>
/// <c>sktune export --format onnx</c>: runs trained for a few steps on the tiny BERT fixture and on the decoder fixtures,
/// exported, then run in ONNX Runtime (CPU) on every dev example, right- and left-padded in mixed-length batches, against
/// the engine on the same batches: max |Δlogit| ≤ 1e-4 on every real row, and the same labels as the run's evaluation.
/// </summary>
public class OnnxExportTests
{
    private const double Tolerance = 1e-4;
    private static readonly string[] Tags = ["O", "B-POS", "I-POS", "B-NEG"];

    /// <summary>A run of <paramref name="method"/> trained for 4 steps on the model in <paramref name="folder"/>.</summary>
    private static string Train(TempDir dir, string folder, string method, TaskKind kind = TaskKind.Classification)
    {
        var model = FrozenModel.Load(folder);
        var (task, data, custom) = kind switch
        {
            TaskKind.Regression => Custom(dir, RegressionRows(dir), TaskKind.Regression),
            TaskKind.TokenClassification => Custom(dir, TaggedRows(dir), TaskKind.TokenClassification),
            _ => TrainerTests.SentimentData(dir),
        };
        var options = MethodDefaults.For(method, new TrainOptions
        {
            Method = method, SemanticText = "good or bad", Steps = 4, BatchSize = 8, WarmupSteps = 1, EvalEvery = 2, Seed = 3,
        });
        string run = Path.Combine(dir.Path, $"run-{method}-{kind}");
        using var backend = new CpuBackend();
        Trainer.Train(new TrainingSetup(model, folder, task, data, backend, run, custom), options, resume: false);
        return run;
    }

    private static (TaskSpec, TaskData, CustomTaskOptions) Custom(TempDir dir, (string Train, string Dev) files, TaskKind kind)
    {
        var options = new CustomTaskOptions { TrainFile = files.Train, DevFile = files.Dev, TextColumn = "sentence", Kind = kind };
        var task = TaskCatalog.Custom(options);
        return (task, task.Load(dir.Path), options);
    }

    private static readonly string[] Words = ["good", "great", "bad", "awful", "the", "movie", "was", "very", "plot"];

    private static (string, string) RegressionRows(TempDir dir)
    {
        var rng = new Random(4);
        string Row() => $"{string.Join(' ', Enumerable.Range(0, rng.Next(2, 8)).Select(_ => Words[rng.Next(Words.Length)]))}\t{rng.NextDouble() * 5:F2}";
        string train = Path.Combine(dir.Path, "reg-train.tsv"), dev = Path.Combine(dir.Path, "reg-dev.tsv");
        File.WriteAllLines(train, new[] { "sentence\tlabel" }.Concat(Enumerable.Range(0, 48).Select(_ => Row())));
        File.WriteAllLines(dev, new[] { "sentence\tlabel" }.Concat(Enumerable.Range(0, 20).Select(_ => Row())));
        return (train, dev);
    }

    private static (string, string) TaggedRows(TempDir dir)
    {
        var rng = new Random(5);
        IEnumerable<string> Sentence()
        {
            foreach (var _ in Enumerable.Range(0, rng.Next(2, 7)))
            {
                var word = Words[rng.Next(Words.Length)];
                yield return $"{word}\t{(word is "good" or "great" ? "B-POS" : word is "bad" or "awful" ? "B-NEG" : "O")}";
            }
            yield return "";
        }
        string train = Path.Combine(dir.Path, "tags-train.conll"), dev = Path.Combine(dir.Path, "tags-dev.conll");
        File.WriteAllLines(train, Enumerable.Range(0, 48).SelectMany(_ => Sentence()));
        File.WriteAllLines(dev, Enumerable.Range(0, 20).SelectMany(_ => Sentence()));
        return (train, dev);
    }

    private static string BertFolder(TempDir dir)
    {
        TrainerTests.Fixture(dir);
        return dir.Path;
    }

    /// <summary>The engine's and ONNX Runtime's outputs agree on the run's dev set; returns the largest |Δ| seen.</summary>
    private static double AssertParity(string run, string onnxPath)
    {
        var folder = RunFolder.Open(run);
        var config = folder.ReadConfig<AdapterConfig>();
        var frozen = FrozenModel.Load(config.Model);
        var task = config.CustomTask is { } custom ? TaskCatalog.Custom(custom) : TaskCatalog.Get(config.Task);
        var dev = task.Load(Path.GetDirectoryName(run)!).Dev;
        var encoded = ExampleEncoder.Encode(frozen.Tokenizer, dev, config.TaskKind, config.MaxTokens, requireTargets: false);
        using var backend = new CpuBackend();
        using var tuned = TunedModelBuilder.Build(frozen, config, backend, log: null);
        var saved = folder.ReadAdapter();
        tuned.Parameters.Import(tuned.Parameters.Values, saved.Tensors, saved.Source);
        tuned.FixInjection();
        var evaluation = Evaluator.Predict(tuned, encoded, dev, 16, frozen.Tokenizer.PadId);

        using var session = new InferenceSession(onnxPath);
        bool types = session.InputMetadata.ContainsKey("token_type_ids");
        Assert.Equal(frozen.Spec.TypeVocabSize > 1, types);
        int C = tuned.Head.Classes, skip = tuned.SkipRows;
        double worst = 0;
        foreach (bool left in new[] { false, true })
            for (int start = 0; start < encoded.Count; start += 8)
            {
                var indices = Enumerable.Range(start, Math.Min(8, encoded.Count - start)).ToArray();
                var batch = Batch(encoded.Examples, indices, frozen.Tokenizer.PadId, left);
                var engine = tuned.Predict(batch);
                var ort = Run(session, batch, types, config.TaskKind == TaskKind.Regression ? "value" : "logits");
                int B = batch.Batch, T = batch.SeqLen;
                // Encoders number positions 0..T−1 whatever the padding: left-padded, they read differently from the evaluation.
                bool sameAsEvaluation = !left || frozen.Spec.Causal;
                for (int b = 0; b < B; b++)
                {
                    if (config.TaskKind == TaskKind.TokenClassification)
                    {
                        for (int t = 0; t < T; t++)
                        {
                            if (batch.Mask[b * T + t] == 0) continue;
                            for (int c = 0; c < C; c++)
                                worst = Math.Max(worst, Math.Abs(engine[(b * (skip + T) + skip + t) * C + c] - ort[(b * T + t) * C + c]));
                        }
                        if (!sameAsEvaluation) continue;
                        var e = encoded.Examples[indices[b]];
                        int offset = left ? T - e.Length : 0;
                        var words = evaluation.WordLabels![indices[b]];
                        for (int w = 0; w < e.WordStarts!.Length && w < words.Length; w++)
                            Assert.Equal(words[w], ArgMax(ort.AsSpan((b * T + offset + e.WordStarts[w]) * C, C)));
                        continue;
                    }
                    for (int c = 0; c < C; c++) worst = Math.Max(worst, Math.Abs(engine[b * C + c] - ort[b * C + c]));
                    if (!sameAsEvaluation) continue;
                    if (config.TaskKind == TaskKind.Regression)
                        Assert.True(Math.Abs(evaluation.Values![indices[b]] - ort[b]) <= Tolerance, $"value {ort[b]} vs {evaluation.Values[indices[b]]}");
                    else Assert.Equal(evaluation.Classes![indices[b]], ArgMax(ort.AsSpan(b * C, C)));
                }
            }
        Assert.True(worst <= Tolerance, $"max |Δlogit| {worst:E2} > {Tolerance:E0}");
        return worst;
    }

    /// <summary>The examples padded to the longest, on the right or on the left.</summary>
    private static TokenBatch Batch(IReadOnlyList<EncodedExample> examples, int[] indices, int padId, bool left)
    {
        int B = indices.Length, T = indices.Max(i => examples[i].Length);
        var ids = new int[B * T];
        var types = new int[B * T];
        var mask = new float[B * T];
        Array.Fill(ids, padId);
        for (int b = 0; b < B; b++)
        {
            var e = examples[indices[b]];
            int offset = b * T + (left ? T - e.Length : 0);
            e.Ids.CopyTo(ids, offset);
            e.TypeIds.CopyTo(types, offset);
            mask.AsSpan(offset, e.Length).Fill(1f);
        }
        return new TokenBatch(B, T, ids, types, mask);
    }

    private static float[] Run(InferenceSession session, TokenBatch batch, bool types, string output)
    {
        int[] dims = [batch.Batch, batch.SeqLen];
        var inputs = new List<NamedOnnxValue>
        {
            NamedOnnxValue.CreateFromTensor("input_ids", new DenseTensor<long>(batch.Ids.Select(i => (long)i).ToArray(), dims)),
            NamedOnnxValue.CreateFromTensor("attention_mask", new DenseTensor<long>(batch.Mask.Select(m => (long)m).ToArray(), dims)),
        };
        if (types) inputs.Add(NamedOnnxValue.CreateFromTensor("token_type_ids", new DenseTensor<long>(batch.Types.Select(i => (long)i).ToArray(), dims)));
        using var results = session.Run(inputs);
        return results.First(r => r.Name == output).AsTensor<float>().ToArray();
    }

    private static int ArgMax(ReadOnlySpan<float> row)
    {
        int best = 0;
        for (int c = 1; c < row.Length; c++) if (row[c] > row[best]) best = c;
        return best;
    }

    private static string Export(TempDir dir, string run)
    {
        var path = Path.Combine(dir.Path, "export", Path.GetFileName(run) + ".onnx");
        var export = OnnxExporter.Export(run, path);
        Assert.Null(export.ExternalDataPath);
        return path;
    }

    [Theory]
    [InlineData("sk-prefix")]
    [InlineData("sk-prompt")]
    [InlineData("lora")]
    [InlineData("full")]
    [InlineData("prompt")]
    [InlineData("ptuning-v2")]
    [InlineData("linear")]
    public void BertRunsMatchTheEngine(string method)
    {
        using var dir = new TempDir();
        var run = Train(dir, BertFolder(dir), method);
        AssertParity(run, Export(dir, run));
    }

    [Theory]
    [InlineData("roberta_opset14", "sk-prefix")]
    [InlineData("roberta_opset17_no_token_types", "sk-prompt")]
    public void RobertaRunsMatchTheEngine(string fixture, string method)
    {
        using var dir = new TempDir();
        var folder = Path.Combine(dir.Path, "roberta");
        Directory.CreateDirectory(folder);
        foreach (var f in Directory.GetFiles(EncoderFixtures.Folder(fixture)).Where(f => !Path.GetFileName(f).StartsWith("reference")))
            File.Copy(f, Path.Combine(folder, Path.GetFileName(f)));
        Assert.NotNull(FrozenModel.Load(folder).Spec.PositionPaddingId);
        var run = Train(dir, folder, method);
        AssertParity(run, Export(dir, run));
    }

    [Theory]
    [InlineData("gpt2", "sk-prefix")]
    [InlineData("gpt2", "sk-prompt")]
    [InlineData("gpt2", "lora")]
    [InlineData("gpt2", "full")]
    [InlineData("llama", "sk-prefix")]
    [InlineData("llama", "sk-prompt")]
    [InlineData("llama", "lora")]
    [InlineData("llama", "full")]
    [InlineData("bloom", "sk-prefix")]
    [InlineData("bloom", "sk-prompt")]
    [InlineData("bloom", "lora")]
    [InlineData("bloom", "full")]
    [InlineData("phi", "sk-prefix")]
    [InlineData("phi", "sk-prompt")]
    [InlineData("falcon", "lora")]
    [InlineData("falcon", "full")]
    public void DecoderRunsMatchTheEngine(string family, string method)
    {
        using var dir = new TempDir();
        var run = Train(dir, DecoderTrainingTests.ModelFolder(dir, family), method);
        AssertParity(run, Export(dir, run));
    }

    [Theory]
    [InlineData(TaskKind.TokenClassification, "sk-prefix")]
    [InlineData(TaskKind.Regression, "sk-prompt")]
    public void TokenAndRegressionHeadsMatchTheEngine(TaskKind kind, string method)
    {
        using var dir = new TempDir();
        var run = Train(dir, BertFolder(dir), method, kind);
        var path = Export(dir, run);
        using (var session = new InferenceSession(path))
            Assert.Equal(kind == TaskKind.Regression ? ["value"] : ["logits", "probabilities"], session.OutputMetadata.Keys.ToArray());
        AssertParity(run, path);
    }

    [Fact]
    public void ExternalDataGoesBesideTheGraph()
    {
        using var dir = new TempDir();
        var run = Train(dir, BertFolder(dir), "sk-prefix");
        var path = Path.Combine(dir.Path, "external", "model.onnx");
        var export = OnnxExporter.Export(run, path, externalData: true);
        Assert.Equal(path + ".data", export.ExternalDataPath);
        Assert.True(new FileInfo(path).Length < new FileInfo(path + ".data").Length);
        AssertParity(run, path);
    }
}
