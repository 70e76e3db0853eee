using SkTuning.Gpu.Data;
using SkTuning.Gpu.Tests.Cli;
using SkTuning.Gpu.Tests.Data;
using SkTuning.Gpu.Tests.Support;
using SkTuning.Gpu.Tests.Training;

namespace SkTuning.Gpu.Tests.Reliability;

/// <summary>
/// Issue 12, finding 6: every input or usage error exits 2 with one line naming the option or file and the fix; an
/// environment failure (unwritable cache, full disk) exits 3 naming the path and the variable or flag; 1 is left for
/// internal faults.
/// </summary>
public class ExitCodeTests
{
    private static string[] Train(TempDir dir, params string[] extra) =>
        ["train", "--task", "custom", "--train-file", dir.Write("train.tsv", "text\tlabel\ngood movie\t1\nbad movie\t0\n"),
         "--steps", "1", "--out", Path.Combine(dir.Path, "run"), .. extra];

    [Theory]
    [InlineData("--clip", "NaN", "finite")]
    [InlineData("--clip", "0", "positive")]
    [InlineData("--weight-decay", "NaN", "finite")]
    [InlineData("--weight-decay", "-1", "0 or more")]
    [InlineData("--lr", "Infinity", "finite")]
    [InlineData("--dropout", "NaN", "[0, 1)")]
    [InlineData("--warmup", "-1", "0 or more")]
    [InlineData("--patience", "-1", "0 or more")]
    [InlineData("--checkpoint-every", "-1", "0 or more")]
    [InlineData("--batch", "2000000000", "at most 4096")]
    public void MeaninglessTrainingOptionsAreUsageErrors(string option, string value, string fix)
    {
        using var dir = new TempDir();
        var r = CliProcess.Run(Train(dir, option, value));
        CliErrorTests.AssertOneLineError(r, $"{option} {value}", fix);
        Assert.DoesNotContain("lower --lr", r.Stderr);
    }

    [Fact]
    public void AnUnknownExtensionNamesTheExtensionsNotAMissingOption()
    {
        using var dir = new TempDir();
        var train = dir.Write("train.txt", "text\tlabel\ngood\t1\n");
        var r = CliProcess.Run("train", "--task", "custom", "--train-file", train, "--out", Path.Combine(dir.Path, "run"));
        CliErrorTests.AssertOneLineError(r, "train.txt", ".tsv", ".conll");
        Assert.DoesNotContain("--format", r.Stderr);
    }

    [Fact]
    public void AHugeRegressionTargetIsADataError()
    {
        using var dir = new TempDir();
        var train = dir.Write("train.tsv", "text\tlabel\ngood movie\t1.5\nbad movie\t1e39\n");
        var r = CliProcess.Run("train", "--task", "custom", "--kind", "regression", "--train-file", train, "--out", Path.Combine(dir.Path, "run"));
        CliErrorTests.AssertOneLineError(r, "train.tsv:3", "1e39");
        Assert.DoesNotContain("--lr", r.Stderr);
    }

    [Fact]
    public void AnUnwritableCacheThatLacksTheModelIsAnEnvironmentError()
    {
        using var dir = new TempDir();
        string cache = Path.Combine(dir.Write("file", "x"), "cache");
        var r = CliProcess.RunWith(null, new Dictionary<string, string> { ["SKTUNE_CACHE"] = cache }, "inspect", "--model", "minilm");
        Assert.Equal(3, r.ExitCode);
        var line = Assert.Single(CliProcess.ErrorLines(r));
        Assert.Contains(cache, line);
        Assert.Contains("SKTUNE_CACHE", line);
        Assert.DoesNotContain("   at ", r.Stderr);
    }

    [Fact]
    public void AnUnwritableZeroShotCacheIsSkipped()
    {
        using var dir = new TempDir();
        string model = DecoderTrainingTests.ModelFolder(dir, "gpt2");
        string cache = Path.Combine(dir.Write("file", "x"), "cache");
        var r = CliProcess.RunWith(null, new Dictionary<string, string> { ["SKTUNE_CACHE"] = cache }, "encode", "--model", model, "--text", "good or bad");
        Assert.Equal(0, r.ExitCode);
        Assert.Contains("SKTUNE_CACHE", r.Stderr);
    }

    [Fact]
    public void AFailedWriteNamesThePathAndIsAnEnvironmentFault()
    {
        using var dir = new TempDir();
        string path = Path.Combine(dir.Path, "metrics.json");
        var e = Assert.Throws<SkTuningEnvironmentException>(() => AtomicFile.Write(path, _ => throw new IOException("No space left on device")));
        Assert.Contains(path, e.Message);
        Assert.Contains("No space left on device", e.Message);
        Assert.Empty(Directory.GetFiles(dir.Path));
    }

    [Fact]
    public void TargetsBeyondTheRangeTheLossCanHoldAreRefused()
    {
        using var dir = new TempDir();
        var options = new CustomTaskOptions { TrainFile = dir.Write("train.tsv", "text\tlabel\na\t1\nb\t-3e20\n"), Kind = TaskKind.Regression };
        var e = Assert.Throws<SkTuningException>(() => TaskCatalog.Custom(options).Load(dir.Path));
        Assert.Contains("train.tsv:3", e.Message);
    }
}
