using SkTuning.Gpu.Onnx;
using SkTuning.Gpu.Tests.Data;
using SkTuning.Gpu.Tests.Support;

namespace SkTuning.Gpu.Tests.Cli;

/// <summary>Bad input reaches the user as one line naming the file and the problem, exit code 2, no stack trace.</summary>
public class CliErrorTests
{
    internal static void AssertOneLineError(CliProcess.Result r, params string[] fragments)
    {
        Assert.Equal(2, r.ExitCode);
        var lines = CliProcess.ErrorLines(r);
        Assert.Single(lines);
        Assert.StartsWith("error: ", lines[0]);
        foreach (var f in fragments) Assert.Contains(f, lines[0]);
        Assert.DoesNotContain("   at ", r.Stderr);
    }

    private static string MiniLmVocab() => Path.Combine(SkTuning.Gpu.Import.ModelCatalog.Resolve("minilm").TokenizerDirectory, "vocab.txt");

    [Fact]
    public void TruncatedOnnx()
    {
        using var dir = new TempDir();
        var path = Path.Combine(dir.Path, "model.onnx");
        File.WriteAllBytes(path, FixtureModels.BertBytes(new BertFixtureOptions())[..1000]);
        File.Copy(MiniLmVocab(), Path.Combine(dir.Path, "vocab.txt"));
        AssertOneLineError(CliProcess.Run("inspect", "--model", path), "model.onnx", "truncated");
    }

    [Fact]
    public void FileThatIsNotOnnx()
    {
        using var dir = new TempDir();
        var path = Path.Combine(dir.Path, "model.onnx");
        File.WriteAllText(path, "this is a text file, not a protobuf model\n");
        AssertOneLineError(CliProcess.Run("inspect", "--model", path), "model.onnx", "not an ONNX");
    }

    [Fact]
    public void MissingVocabulary()
    {
        using var dir = new TempDir();
        FixtureModels.WriteBert(Path.Combine(dir.Path, "model.onnx"), new BertFixtureOptions());
        AssertOneLineError(CliProcess.Run("inspect", "--model", dir.Path), dir.Path, "no tokenizer file");
    }

    [Fact]
    public void UnsupportedGraph()
    {
        using var dir = new TempDir();
        FixtureModels.WriteLoneMatMul(Path.Combine(dir.Path, "model.onnx"));
        File.Copy(MiniLmVocab(), Path.Combine(dir.Path, "vocab.txt"));
        AssertOneLineError(CliProcess.Run("inspect", "--model", dir.Path), "model.onnx", "unsupported graph");
    }

    [Fact]
    public void EmptyText() => AssertOneLineError(CliProcess.Run("encode", "--model", "minilm", "--text", "  "), "empty text");

    [Fact]
    public void TextLongerThanThePositions()
    {
        var text = string.Join(' ', Enumerable.Repeat("guitar", 600));
        AssertOneLineError(CliProcess.Run("encode", "--model", "minilm", "--text", text), "602 tokens", "512 positions");
    }

    [Fact]
    public void UnknownOptionIsAUsageError()
    {
        var r = CliProcess.Run("inspect", "--no-such-option");
        Assert.Equal(2, r.ExitCode);
        Assert.Contains("--no-such-option", r.Stderr);
    }

    [Fact]
    public void InspectPrintsTheMiniLmDescription()
    {
        var r = CliProcess.Run("inspect", "--model", "minilm");
        Assert.Equal(0, r.ExitCode);
        foreach (var line in new[] { "family      bert", "layers      6", "hidden (d)  384", "heads       12 × 32", "FFN         1536", "epsilon 1E-12", "vocabulary  30,522", "(22.7M)" })
            Assert.Contains(line, r.Stdout);
    }
}

/// <summary>Bad training/eval input through the CLI: one line with file (and line), exit code 2.</summary>
public class CliTrainErrorTests
{
    private static void AssertOneLineError(CliProcess.Result r, params string[] fragments) => CliErrorTests.AssertOneLineError(r, fragments);

    [Fact]
    public void ARowWithAMissingColumn()
    {
        using var dir = new TempDir();
        var train = dir.Write("train.tsv", "text\tlabel\ngood movie\t1\nbad movie\n");
        AssertOneLineError(CliProcess.Run("train", "--task", "custom", "--train-file", train, "--steps", "1", "--out", Path.Combine(dir.Path, "run")),
            "train.tsv:3", "column");
    }

    [Fact]
    public void ADevLabelNotSeenInTraining()
    {
        using var dir = new TempDir();
        var train = dir.Write("train.tsv", "text\tlabel\ngood movie\tpos\nbad movie\tneg\n");
        var dev = dir.Write("dev.tsv", "text\tlabel\nfine movie\tneutral\n");
        AssertOneLineError(CliProcess.Run("train", "--task", "custom", "--train-file", train, "--dev-file", dev, "--steps", "1", "--out", Path.Combine(dir.Path, "run")),
            "dev.tsv:2", "neutral");
    }

    [Fact]
    public void InvalidUtf8()
    {
        using var dir = new TempDir();
        var train = dir.WriteBytes("train.tsv", [.. "text\tlabel\ngood\t1\n"u8, 0xC3, 0x28, .. "\t0\n"u8]);
        AssertOneLineError(CliProcess.Run("train", "--task", "custom", "--train-file", train, "--steps", "1", "--out", Path.Combine(dir.Path, "run")),
            "train.tsv:3", "UTF-8");
    }

    [Fact]
    public void AnEmptyFile()
    {
        using var dir = new TempDir();
        var train = dir.Write("train.tsv", "");
        AssertOneLineError(CliProcess.Run("train", "--task", "custom", "--train-file", train, "--steps", "1", "--out", Path.Combine(dir.Path, "run")),
            "train.tsv", "no examples");
    }

    [Fact]
    public void AnUnreadableRunFolder()
    {
        using var dir = new TempDir();
        AssertOneLineError(CliProcess.Run("eval", "--run", dir.Path), dir.Path, "not a run folder");
        File.WriteAllText(Path.Combine(dir.Path, "adapter_config.json"), "{ not json");
        AssertOneLineError(CliProcess.Run("predict", "--run", dir.Path, "--text", "hello"), "adapter_config.json");
    }

    [Fact]
    public void CompareWithABadSeedList()
    {
        using var dir = new TempDir();
        AssertOneLineError(CliProcess.Run("compare", "--task", "sst2", "--seeds", "1,x", "--out", Path.Combine(dir.Path, "cmp")), "--seeds", "'x'");
        AssertOneLineError(CliProcess.Run("compare", "--task", "sst2", "--seeds", "3,3", "--out", Path.Combine(dir.Path, "cmp")), "--seeds", "twice");
    }
}
