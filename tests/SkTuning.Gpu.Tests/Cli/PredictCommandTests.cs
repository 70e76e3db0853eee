using System.Text.Json;
using System.Text.Json.Nodes;
using SkTuning.Gpu.Runs;
using SkTuning.Gpu.Tests.Data;
using SkTuning.Gpu.Tests.Support;
using SkTuning.Gpu.Tests.Training;

namespace SkTuning.Gpu.Tests.Cli;

/// <summary>
/// <c>sktune predict</c> through the real CLI on a tiny SST-2 run (the fixture model, the generated sentiment rows in
/// SST-2's layout): labels by name, inputs refused before the model loads, runs written before names were kept.
/// </summary>
public class PredictCommandTests
{
    /// <summary>Trains a 2-step SK-Prefix run on SST-2-shaped data in <paramref name="dir"/>; returns the run folder.</summary>
    internal static string Sst2Run(TempDir dir, params string[] extra)
    {
        TrainerTests.Fixture(dir);
        string glue = Path.Combine(dir.Path, "data", "glue", "SST-2");
        Directory.CreateDirectory(glue);
        foreach (var split in new[] { "train.tsv", "dev.tsv" }) File.Copy(Path.Combine(dir.Path, split), Path.Combine(glue, split));
        string run = Path.Combine(dir.Path, "run");
        var r = CliProcess.Run([
            "train", "--model", dir.Path, "--device", "cpu", "--task", "sst2", "--data", Path.Combine(dir.Path, "data"), "--text", "good or bad",
            "--steps", "2", "--batch", "8", "--eval-every", "2", "--out", run, .. extra]);
        Assert.True(r.ExitCode == 0, r.Stderr);
        return run;
    }

    private static JsonNode Prediction(CliProcess.Result r)
    {
        Assert.True(r.ExitCode == 0, r.Stderr);
        return JsonNode.Parse(Assert.Single(r.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries)))!["prediction"]!;
    }

    [Fact]
    public void LabelsAreShownByNameAndOldRunsShowTheirIds()
    {
        using var dir = new TempDir();
        string run = Sst2Run(dir);
        var config = JsonNode.Parse(File.ReadAllText(Path.Combine(run, RunFolder.ConfigFileName)))!.AsObject();
        Assert.Equal(["0", "1"], config["labels"]!.AsArray().Select(n => n!.GetValue<string>()));
        Assert.Equal(["negative", "positive"], config["label_names"]!.AsArray().Select(n => n!.GetValue<string>()));
        Assert.False(config["text_pairs"]!.GetValue<bool>());

        foreach (var text in new[] { "good great nice", "bad awful sad" })
        {
            var p = Prediction(CliProcess.Run("predict", "--run", run, "--device", "cpu", "--text", text));
            int id = p["class_id"]!.GetValue<int>();
            Assert.Equal(id == 1 ? "positive" : "negative", p["label"]!.GetValue<string>());
            Assert.Equal(2, p["probabilities"]!.AsArray().Count);
        }
        using (var tuner = SkTuner.Load(run, device: "cpu"))
        {
            Assert.Equal(["negative", "positive"], tuner.LabelNames);
            var p = tuner.Predict("good great nice");
            Assert.Equal(tuner.LabelNames![p.ClassId!.Value], p.Label);
        }

        // A run written before names were kept: the label is the class id as the data spells it, and pairs go unchecked.
        config.Remove("label_names");
        config.Remove("text_pairs");
        File.WriteAllText(Path.Combine(run, RunFolder.ConfigFileName), config.ToJsonString());
        var old = Prediction(CliProcess.Run("predict", "--run", run, "--device", "cpu", "--text", "good great nice"));
        Assert.Equal(old["class_id"]!.GetValue<int>().ToString(System.Globalization.CultureInfo.InvariantCulture), old["label"]!.GetValue<string>());
    }

    [Fact]
    public void InputsTheRunCannotReadAreRefusedBeforeTheModelLoads()
    {
        using var dir = new TempDir();
        // Empty texts are refused before the run folder is even opened (this one does not exist).
        string nowhere = Path.Combine(dir.Path, "nowhere");
        CliErrorTests.AssertOneLineError(CliProcess.Run("predict", "--run", nowhere, "--text", ""), "--text is empty");
        CliErrorTests.AssertOneLineError(CliProcess.Run("predict", "--run", nowhere, "--text", "  "), "--text is empty");
        CliErrorTests.AssertOneLineError(CliProcess.Run("predict", "--run", nowhere, "--text", "good", "--pair", " "), "--pair is empty");
        CliErrorTests.AssertOneLineError(CliProcess.Run("predict", "--run", nowhere, "--pair", "good"), "--pair needs --text");

        string run = Sst2Run(dir);
        // The model file is gone: only the configuration is read before these errors.
        File.Delete(Path.Combine(dir.Path, "model.onnx"));
        CliErrorTests.AssertOneLineError(CliProcess.Run("predict", "--run", run, "--text", "good", "--pair", "fine"), "--pair", "sst2 reads single texts");
        string file = dir.Write("inputs.txt", "good movie\nbad\tmovie\n");
        CliErrorTests.AssertOneLineError(CliProcess.Run("predict", "--run", run, "--file", file), "inputs.txt:2", "single texts");

        var config = JsonNode.Parse(File.ReadAllText(Path.Combine(run, RunFolder.ConfigFileName)))!.AsObject();
        config["text_pairs"] = true;
        File.WriteAllText(Path.Combine(run, RunFolder.ConfigFileName), config.ToJsonString());
        CliErrorTests.AssertOneLineError(CliProcess.Run("predict", "--run", run, "--text", "good"), "--text", "reads sentence pairs", "--pair");
    }
}
