using System.Text.Json.Nodes;
using Microsoft.ML.OnnxRuntime;
using SkTuning.Gpu.Runs;
using SkTuning.Gpu.Tests.Data;
using SkTuning.Gpu.Tests.Support;

namespace SkTuning.Gpu.Tests.Cli;

/// <summary><c>sktune export --format onnx</c> through the real CLI: the file it writes, and bad runs refused in one line with exit 2.</summary>
public class ExportCommandTests
{
    [Fact]
    public void OnnxExportWritesAGraphOrtLoadsAndRefusesBadRunsInOneLine()
    {
        using var dir = new TempDir();
        string run = PredictCommandTests.Sst2Run(dir);
        string outDir = Path.Combine(dir.Path, "exported");
        var r = CliProcess.Run("export", "--run", run, "--format", "onnx", "--out", outDir);
        Assert.True(r.ExitCode == 0, r.Stderr);
        Assert.Contains("inputs input_ids, attention_mask, token_type_ids; outputs logits, probabilities", r.Stdout);
        using (var session = new InferenceSession(Path.Combine(outDir, "model.onnx")))
            Assert.Equal(["input_ids", "attention_mask", "token_type_ids"], session.InputMetadata.Keys.ToArray());

        // An unknown method in the run's configuration.
        var configPath = Path.Combine(run, RunFolder.ConfigFileName);
        var config = JsonNode.Parse(File.ReadAllText(configPath))!.AsObject();
        config["method"] = "bogus";
        File.WriteAllText(configPath, config.ToJsonString());
        AssertOneLineError(CliProcess.Run("export", "--run", run, "--format", "onnx", "--out", outDir), "bogus");

        // A run folder without trained weights.
        var empty = Path.Combine(dir.Path, "empty-run");
        Directory.CreateDirectory(empty);
        AssertOneLineError(CliProcess.Run("export", "--run", empty, "--format", "onnx", "--out", outDir), "empty-run");
    }

    private static void AssertOneLineError(CliProcess.Result r, string names) => CliErrorTests.AssertOneLineError(r, names);
}
