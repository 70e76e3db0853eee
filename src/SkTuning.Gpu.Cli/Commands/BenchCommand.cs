using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using SkTuning.Gpu.Benchmarking;
using SkTuning.Gpu.Engine;
using SkTuning.Gpu.Import;
using SkTuning.Gpu.Onnx;
using SkTuning.Gpu.Training;

namespace SkTuning.Gpu.Cli;

/// <summary><c>sktune bench</c>: the engine against ONNX Runtime at one shape, as a table or one JSON object.</summary>
internal static class BenchCommand
{
    public static Command Create()
    {
        var model = CommonOptions.Model();
        var device = CommonOptions.Device();
        var weights = CommonOptions.Weights();
        var batch = new Option<int>("--batch") { Description = "batch size B", DefaultValueFactory = _ => 32 };
        var seq = new Option<int>("--seq") { Description = "sequence length T", DefaultValueFactory = _ => 64 };
        var prefix = new Option<int>("--prefix") { Description = "SK-Prefix length m", DefaultValueFactory = _ => 12 };
        var iterations = new Option<int>("--iterations") { Description = "timed runs per row (median)", DefaultValueFactory = _ => 7 };
        var json = new Option<bool>("--json") { Description = "print one JSON object instead of the table" };
        var recompute = new Option<bool>("--recompute") { Description = "the SK-Prefix step with activation recomputation (each layer's forward rerun in the backward)" };
        var engineOnly = new Option<bool>("--engine-only") { Description = "time only the engine's forward and step (no ONNX Runtime baseline, no kernel rows): for large models" };
        var methods = new Option<string?>("--methods") { Description = "instead: time one training step per method (comma-separated, or 'all')" };
        var writeModel = new Option<string?>("--write-model")
        {
            Description = $"instead: write a random-weight decoder of a known shape to --out and exit ({string.Join(", ", DecoderFixtureOptions.Presets.Keys)}); "
                          + "tensor data goes to <out>.data beside it when over 512 MiB",
        };
        var output = new Option<string?>("--out") { Description = "the .onnx file --write-model writes" };
        var command = new Command("bench",
            "time the engine against ONNX Runtime's forward at the same shape, for any model family (--model minilm, or an .onnx file or folder: "
            + "BERT, GPT-2, LLaMA); e.g. sktune bench --write-model llama:smollm2-135m --out /tmp/smol/model.onnx, then "
            + "sktune bench --model /tmp/smol --batch 8 --seq 128 --prefix 16 --json")
            { model, device, weights, batch, seq, prefix, iterations, json, recompute, engineOnly, methods, writeModel, output };
        command.SetAction(CliRunner.Guard(parse =>
        {
            if (parse.GetValue(writeModel) is { } shapeName)
            {
                var path = parse.GetValue(output) ?? throw new SkTuningException("--write-model needs --out <file.onnx>");
                var options = DecoderFixtureOptions.Named(shapeName);
                Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
                var written = DecoderFixtures.Write(path, options);
                Console.WriteLine($"{path}: {written.Spec.Describe()}");
                return 0;
            }
            int b = parse.GetValue(batch), t = parse.GetValue(seq), m = parse.GetValue(prefix), n = parse.GetValue(iterations);
            if (b <= 0 || t <= 0 || m < 0 || n <= 0) throw new SkTuningException($"--batch {b} --seq {t} --prefix {m} --iterations {n}: sizes must be positive");
            using var backend = BackendFactory.Create(parse.GetValue(device)!, CliRunner.Log, parse.GetValue(weights)!);
            if (parse.GetValue(methods) is { } list)
            {
                var frozen = FrozenModel.Load(parse.GetValue(model)!);
                var names = list == "all" ? MethodDefaults.Methods.ToArray() : list.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
                var steps = MethodBenchmark.Run(frozen, backend, names, b, t, n, CliRunner.Log);
                PrintMethods(steps, frozen, backend.Name, b, t, n, parse.GetValue(json));
                return 0;
            }
            // Only the graph is needed (no tokenizer: the inputs are random ids), so random-weight models time too.
            var source = ModelCatalog.Resolve(parse.GetValue(model)!);
            var imported = ModelImporter.Import(OnnxModel.Load(source.OnnxPath));
            var report = EngineBenchmark.Run(source.Name, imported, backend, b, t, m, n, CliRunner.Log, parse.GetValue(recompute), parse.GetValue(engineOnly));
            if (parse.GetValue(json))
            {
                var options = new JsonSerializerOptions { PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower, WriteIndented = false };
                Console.WriteLine(JsonSerializer.Serialize(report, options));
            }
            else Print(report);
            return 0;
        }));
        return command;
    }

    private static void PrintMethods(IReadOnlyList<MethodStep> steps, FrozenModel model, string device, int b, int t, int n, bool json)
    {
        if (json)
        {
            var options = new JsonSerializerOptions { PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower, NumberHandling = System.Text.Json.Serialization.JsonNumberHandling.AllowNamedFloatingPointLiterals };
            Console.WriteLine(JsonSerializer.Serialize(new { model = model.Source.Name, device, batch = b, seq = t, iterations = n, methods = steps }, options));
            return;
        }
        var ic = CultureInfo.InvariantCulture;
        var full = steps.FirstOrDefault(s => s.Method == "full" && s.Error is null);
        Console.WriteLine($"{model.Source.Name} on {device}: one training step per method, B={b} T={t}, median of {n}");
        Console.WriteLine($"{"method",-12} {"step",10} {"trainable",12} {"peak mem",10}  vs full fine-tuning");
        foreach (var s in steps)
        {
            if (s.Error is not null) { Console.WriteLine($"{s.Method,-12} failed: {s.Error}"); continue; }
            string ratio = full is null ? "" : string.Create(ic, $"{full.Seconds / s.Seconds:F2}x faster");
            Console.WriteLine(string.Create(ic, $"{s.Method,-12} {s.Seconds * 1e3,8:F0}ms {s.TrainableParameters,12:N0} {s.PeakBytes / 1048576.0,7:F0} MiB  {ratio}"));
        }
    }

    /// <summary>The peak per core and cycle, which says what kind of core the VM ran on (32: one 512-bit FMA per cycle, 64: two).</summary>
    private static string PerCycle(BenchReport r) => r.PeakClockGhz <= 0 ? "" : string.Create(CultureInfo.InvariantCulture,
        $" ({r.PeakGflops / Environment.ProcessorCount / r.PeakClockGhz:F0} flop/cycle/core at {r.PeakClockGhz:F2} GHz)");

    private static void Print(BenchReport r)
    {
        var ic = CultureInfo.InvariantCulture;
        Console.WriteLine(string.Create(ic, $"{r.Model} on {r.Device}: B={r.Batch} T={r.Seq} prefix m={r.Prefix}, median of {r.Iterations}; measured fp32 peak {r.PeakGflops:F0} GFLOP/s{PerCycle(r)}"));
        Console.WriteLine($"{"what",-46} {"time",10} {"GFLOP/s",8} {"% peak",7}  vs baseline");
        foreach (var row in r.Rows)
        {
            double rate = row.Gflop > 0 ? row.Gflop / row.Seconds : 0;
            var baseline = row.Baseline is null ? "" : r.Rows.First(x => x.Name == row.Baseline) is var b
                ? string.Create(ic, $"{row.Seconds / b.Seconds:F2}x {b.Name}") : "";
            Console.WriteLine(string.Create(ic, $"{row.Name,-46} {row.Seconds * 1e3,8:F1}ms {rate,8:F1} {100 * rate / r.PeakGflops,6:F1}%  {baseline}"));
        }
        var m = r.Memory;
        static string MiB(long bytes) => string.Create(CultureInfo.InvariantCulture, $"{bytes / 1048576.0:F0} MiB");
        long parts = m.MatrixBytes + m.EmbeddingBytes + m.OtherWeightBytes + m.ActivationBytes + m.AdapterBytes;
        Console.WriteLine($"engine peak memory {MiB(m.EnginePeakBytes)} (resident, before ONNX Runtime is loaded{(m.Recompute ? "; --recompute" : "")}): "
            + $"frozen matrices ({r.Weights}) {MiB(m.MatrixBytes)}, embeddings {MiB(m.EmbeddingBytes)}, other weights {MiB(m.OtherWeightBytes)}, "
            + $"activations {MiB(m.ActivationBytes)} (B·T·L-dependent), adapter + optimizer {MiB(m.AdapterBytes)}, runtime and the rest {MiB(m.EnginePeakBytes - parts)}");
        if (m.StepPeakBytes > 0)
            Console.WriteLine($"while the forward and step ran: peak {MiB(m.StepPeakBytes)}, {MiB(m.StepPeakBytes - m.LoadedBytes)} above the {MiB(m.LoadedBytes)} resident once loaded");
        if (r.OrtForwardS > 0) Console.WriteLine(m.OrtPeakBytes > 0
            ? $"ONNX Runtime afterwards (engine released): peak {MiB(m.OrtPeakBytes)}, {MiB(m.OrtPeakBytes - m.OrtBaselineBytes)} above the {MiB(m.OrtBaselineBytes)} it started from"
            : $"process peak {MiB(r.PeakMemoryBytes)} (ONNX Runtime included)");
        Console.WriteLine(string.Create(ic, $"shared prefix {r.PrefixBytes / 1024.0:F0} KiB (independent of B)"));
    }
}
