using SkTuning.Gpu.Data;
using SkTuning.Gpu.Engine;
using SkTuning.Gpu.Export;
using SkTuning.Gpu.Hosting;
using SkTuning.Gpu.Import;
using SkTuning.Gpu.Runs;
using SkTuning.Gpu.Training;

namespace SkTuning.Gpu.Benchmarks;

/// <summary>
/// The ONNX export of a real run against the engine on the task's whole dev set: exports the run, runs every dev example
/// through the engine and through ONNX Runtime in the same length-sorted batches, and prints how many labels agree and
/// the largest |Δlogit|. Usage: <c>export-parity RUN_DIR DATA_ROOT [ONNX_FILE]</c>.
/// </summary>
internal static class ExportParity
{
    public static void Run(string[] args)
    {
        string run = args[0], dataRoot = args[1];
        string onnx = args.Length > 2 ? args[2] : Path.Combine(run, "model.onnx");
        var started = System.Diagnostics.Stopwatch.StartNew();
        var export = OnnxExporter.Export(run, onnx, log: Console.WriteLine);
        Console.WriteLine($"export: {started.Elapsed.TotalSeconds:F1} s, {export.Bytes / 1e6:F1} MB");

        var folder = RunFolder.Open(run);
        var config = folder.ReadConfig<AdapterConfig>();
        var frozen = FrozenModel.Load(config.Model);
        var task = config.CustomTask is { } custom ? TaskCatalog.Custom(custom) : TaskCatalog.Get(config.Task);
        var dev = task.Load(dataRoot).Dev;
        var encoded = ExampleEncoder.Encode(frozen.Tokenizer, dev, config.TaskKind, config.MaxTokens, requireTargets: false);
        using var backend = new CpuBackend();
        using var engine = TunedModelBuilder.Build(frozen, config, backend, log: null);
        var saved = folder.ReadAdapter(expectedModelHash: frozen.Hash);
        engine.Parameters.Import(engine.Parameters.Values, saved.Tensors, saved.Source);
        engine.FixInjection();
        using var ort = OrtTunedModel.Load(onnx, config);

        int C = engine.Head.Classes, same = 0, n = 0;
        double worst = 0;
        foreach (var indices in BatchSampler.EvalBatches(encoded.Lengths(), Trainer.EvalBatchSize))
        {
            var batch = BatchBuilder.Build(encoded.Examples, indices, frozen.Tokenizer.PadId).Tokens;
            float[] a = engine.Predict(batch), b = ort.Predict(batch);
            for (int i = 0; i < indices.Length; i++, n++)
            {
                for (int c = 0; c < C; c++) worst = Math.Max(worst, Math.Abs(a[i * C + c] - b[i * C + c]));
                if (ArgMax(a.AsSpan(i * C, C)) == ArgMax(b.AsSpan(i * C, C))) same++;
            }
        }
        Console.WriteLine($"{n} dev examples: labels equal {same}/{n}, max |Δlogit| {worst:E2}");
    }

    private static int ArgMax(ReadOnlySpan<float> row)
    {
        int best = 0;
        for (int c = 1; c < row.Length; c++) if (row[c] > row[best]) best = c;
        return best;
    }
}
