using Google.Protobuf;
using SkTuning.Gpu.Onnx.Proto;
using SkTuning.Gpu.Tests.Data;
using SkTuning.Gpu.Tests.Support;
using SkTuning.Gpu.Tests.Training;

namespace SkTuning.Gpu.Tests.Cli;

/// <summary><c>sktune verify</c> and the decoder input errors, through the real command line.</summary>
public class VerifyCommandTests
{
    private static string Fixture(string name) => Path.Combine(AppContext.BaseDirectory, "Fixtures", "decoders", name, "model.onnx");

    [Fact]
    public void VerifyPassesOnADecoderExportWithItsTokenizerAndReportsEveryLayer()
    {
        using var dir = new TempDir();
        var r = CliProcess.Run("verify", "--model", DecoderTrainingTests.ModelFolder(dir, "llama"), "--device", "cpu");
        Assert.Equal(0, r.ExitCode);
        Assert.Contains("architecture  llama: 3 layers, d 64, 4 heads (2 KV) × 16", r.Stdout);
        Assert.Contains("texts through the sentencepiece tokenizer", r.Stdout);
        foreach (var what in new[] { "embedding output, right-padded", "layer 2 input, left-padded", "final hidden states, left-padded", "prefix gradient vs finite differences" })
            Assert.Contains(what, r.Stdout);
        Assert.DoesNotContain("FAIL", r.Stdout);
        Assert.Contains("verify: passed", r.Stdout);
    }

    /// <summary>
    /// <c>--weights bf16</c>: every state within the bf16 tolerance of ONNX Runtime's fp32 but visibly above the fp32 one
    /// (the matrices really are rounded), the gradient check unchanged; with <c>--device cuda</c> one line, exit 2.
    /// </summary>
    [Fact]
    public void VerifyWithBf16WeightsReportsTheBf16ErrorAgainstFp32()
    {
        var r = CliProcess.Run("verify", "--model", Fixture("llama_opset14_gqa_theta500k"), "--device", "cpu", "--weights", "bf16");
        Assert.Equal(0, r.ExitCode);
        Assert.Contains("frozen weight matrices in bf16 (vs ONNX Runtime's fp32)", r.Stdout);
        Assert.Contains("(≤ 0.03)  final hidden states, right-padded", r.Stdout);
        var final = r.Stdout.Split('\n').Single(l => l.EndsWith("final hidden states, right-padded", StringComparison.Ordinal));
        double error = double.Parse(final.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], System.Globalization.CultureInfo.InvariantCulture);
        Assert.InRange(error, 1e-4, 3e-2);
        Assert.Contains("verify: passed", r.Stdout);

        var cuda = CliProcess.Run("verify", "--model", Fixture("llama_opset14_gqa_theta500k"), "--device", "cuda", "--weights", "bf16");
        Assert.Equal(2, cuda.ExitCode);
        Assert.Contains("--weights bf16 --device cuda: bf16 weights run on the CPU backend only", cuda.Stderr);
    }

    [Fact]
    public void VerifyPassesOnARobertaExportWithItsTokenizer()
    {
        var r = CliProcess.Run("verify", "--model", EncoderFixtures.Folder("roberta_opset14"), "--device", "cpu");
        Assert.Equal(0, r.ExitCode);
        Assert.Contains("architecture  roberta: 2 layers, d 64, 4 heads × 16", r.Stdout);
        Assert.Contains("(66 from padding id 1, 64 tokens)", r.Stdout);
        Assert.Contains("texts through the bpe tokenizer", r.Stdout);
        Assert.Contains("final hidden states, left-padded", r.Stdout);
        Assert.DoesNotContain("FAIL", r.Stdout);
        Assert.Contains("verify: passed", r.Stdout);
    }

    [Fact]
    public void VerifyRefusesAGraphThatComputesSomethingTheEngineDoesNotModel()
    {
        // An extra 0.5 on layer 0's attention residual branch: importing it would be a silent wrong answer.
        using var dir = new TempDir();
        var proto = DecoderGraphEdits.WithAttentionResidualScale(ModelProto.Parser.ParseFrom(File.ReadAllBytes(Fixture("llama_opset14_gqa_theta500k"))));
        string path = Path.Combine(dir.Path, "scaled.onnx");
        File.WriteAllBytes(path, proto.ToByteArray());
        CliErrorTests.AssertOneLineError(CliProcess.Run("verify", "--model", path, "--device", "cpu"), "scaled.onnx", "extra scale", "scaled_residual");
    }

    [Fact]
    public void ADecoderExportWithoutItsTokenizerIsNamed()
    {
        using var dir = new TempDir();
        File.Copy(Fixture("llama_opset14_gqa_theta500k"), Path.Combine(dir.Path, "model.onnx"));
        var (_, _, custom) = TrainerTests.SentimentData(dir);
        CliErrorTests.AssertOneLineError(CliProcess.Run("train", "--model", dir.Path, "--task", "custom", "--train-file", custom.TrainFile,
            "--dev-file", custom.DevFile!, "--text-column", "sentence", "--steps", "1", "--out", Path.Combine(dir.Path, "run")), dir.Path, "no tokenizer file");
    }

    [Fact]
    public void VerifyWithoutTokenizerUsesRandomIds()
    {
        var r = CliProcess.Run("verify", "--model", Fixture("gpt2_opset17_no_position_ids"), "--device", "cpu");
        Assert.Equal(0, r.ExitCode);
        Assert.Contains("random ids (no tokenizer files beside the model)", r.Stdout);
        // Without a position_ids input the graph numbers positions 0..T−1, so only right padding is comparable.
        Assert.DoesNotContain("left-padded", r.Stdout);
        Assert.Contains("verify: passed", r.Stdout);
    }

    [Fact]
    public void PoolingOnTheLastTokenNeedsTheModelsAttentionMask()
    {
        // A GPT-2 export whose only input is input_ids (tests/fixtures/make_no_mask_fixture.py).
        using var dir = new TempDir();
        File.Copy(Path.Combine(AppContext.BaseDirectory, "Fixtures", "no-mask", "gpt2", "model.onnx"), Path.Combine(dir.Path, "model.onnx"));
        foreach (var f in new[] { "vocab.json", "merges.txt", "special_tokens_map.json" })
            File.Copy(Path.Combine(AppContext.BaseDirectory, "Fixtures", "tokenizers", "gpt2-bpe", f), Path.Combine(dir.Path, f));
        var (_, _, custom) = TrainerTests.SentimentData(dir);
        CliErrorTests.AssertOneLineError(CliProcess.Run("train", "--model", dir.Path, "--task", "custom", "--train-file", custom.TrainFile,
            "--dev-file", custom.DevFile!, "--text-column", "sentence", "--steps", "1", "--pooling", "last", "--out", Path.Combine(dir.Path, "run")),
            "model.onnx", "--pooling last", "attention-mask");
    }
}
