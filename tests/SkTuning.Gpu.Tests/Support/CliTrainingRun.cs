using System.Globalization;
using SkTuning.Gpu.Tests.Data;
using SkTuning.Gpu.Tests.Training;

namespace SkTuning.Gpu.Tests.Support;

/// <summary>A small <c>sktune train</c> on the tiny BERT fixture and the generated sentiment data, for the CLI run-folder tests.</summary>
internal static class CliTrainingRun
{
    /// <summary>Writes the model and data into <paramref name="dir"/>; returns the train arguments for <paramref name="outDir"/>.</summary>
    public static string[] Args(TempDir dir, string outDir, int steps, int evalEvery, int seed = 3)
    {
        if (!File.Exists(Path.Combine(dir.Path, "model.onnx"))) TrainerTests.Fixture(dir);
        var ic = CultureInfo.InvariantCulture;
        return
        [
            "train", "--model", dir.Path, "--device", "cpu", "--task", "custom", "--train-file", Path.Combine(dir.Path, "train.tsv"),
            "--dev-file", Path.Combine(dir.Path, "dev.tsv"), "--text-column", "sentence", "--method", "sk-prefix", "--text", "good or bad",
            "--steps", steps.ToString(ic), "--batch", "8", "--lr", "0.005", "--warmup", "2", "--eval-every", evalEvery.ToString(ic),
            "--seed", seed.ToString(ic), "--out", outDir,
        ];
    }
}
