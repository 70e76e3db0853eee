using SkTuning.Gpu.Tests.Data;
using SkTuning.Gpu.Tests.Support;
using SkTuning.Gpu.Tests.Training;

namespace SkTuning.Gpu.Tests.Cli;

/// <summary>
/// Issue 11, item 5: a bare <c>sktune</c> prints the help; an unknown command gets "did you mean" and the help (exit 2); a
/// usage error prints its first error and the command's usage line; a missing cache folder is created.
/// </summary>
public class CliUsageTests
{
    [Fact]
    public void ABareSktunePrintsTheHelp()
    {
        var r = CliProcess.Run();
        Assert.Equal(0, r.ExitCode);
        Assert.Contains("Usage:", r.Stdout);
        Assert.Contains("predict", r.Stdout);
        Assert.DoesNotContain("Required command", r.Stdout + r.Stderr);
    }

    [Theory]
    [InlineData("trian", "'train'")]
    [InlineData("pred", "'predict'")]
    [InlineData("evl", "'eval'")]
    public void AMistypedCommandIsNamedWithItsNearestCommandAndTheHelp(string typo, string suggestion)
    {
        var r = CliProcess.Run(typo, "--steps", "3");
        Assert.Equal(2, r.ExitCode);
        var lines = CliProcess.ErrorLines(r);
        Assert.Equal($"error: unknown command '{typo}'; did you mean {suggestion}?", lines[0]);
        Assert.Contains("Commands:", r.Stderr);
        Assert.DoesNotContain("Required command", r.Stderr);
        Assert.Empty(r.Stdout);
    }

    [Fact]
    public void ACommandFarFromEveryNameGetsNoSuggestion()
    {
        var r = CliProcess.Run("xyzzyplugh");
        Assert.Equal(2, r.ExitCode);
        Assert.Equal("error: unknown command 'xyzzyplugh'", CliProcess.ErrorLines(r)[0]);
    }

    [Fact]
    public void AMistypedOptionGetsTheFirstErrorTheNearestOptionAndTheUsageLine()
    {
        var r = CliProcess.Run("train", "--stpes", "3", "--batch", "x");
        Assert.Equal(2, r.ExitCode);
        var lines = CliProcess.ErrorLines(r);
        Assert.Equal(2, lines.Length);
        Assert.StartsWith("error: ", lines[0]);
        Assert.Contains("'--stpes'", lines[0]);
        Assert.EndsWith("did you mean '--steps'?", lines[0]);
        Assert.Equal("usage: sktune train [options]; sktune train --help lists them", lines[1]);
    }

    [Fact]
    public void AMissingRequiredOptionGetsTheUsageLine()
    {
        var r = CliProcess.Run("predict", "--text", "good");
        Assert.Equal(2, r.ExitCode);
        Assert.Equal(["error: Option '--run' is required", "usage: sktune predict [options]; sktune predict --help lists them"], CliProcess.ErrorLines(r));
    }

    [Fact]
    public void AMissingCacheFolderIsCreated()
    {
        using var dir = new TempDir();
        string model = DecoderTrainingTests.ModelFolder(dir, "gpt2");
        string cache = Path.Combine(dir.Path, "not", "there", "yet");
        var r = CliProcess.RunWith(null, new Dictionary<string, string> { ["SKTUNE_CACHE"] = cache }, "encode", "--model", model, "--text", "good or bad");
        Assert.Equal(0, r.ExitCode);
        Assert.NotEmpty(Directory.GetFiles(Path.Combine(cache, "zeroshot")));
    }
}
