using System.Diagnostics;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using SkTuning.Gpu.Engine;
using SkTuning.Gpu.Import;
using SkTuning.Gpu.Kernels;
using SkTuning.Gpu.ZeroShot;

namespace SkTuning.Gpu.Benchmarking;

/// <summary>One row of the benchmark table: a measured median and, where it has one, its baseline in the same run.</summary>
/// <param name="Name">What was timed.</param>
/// <param name="Seconds">Median seconds.</param>
/// <param name="Gflop">Floating-point work of one run, in GFLOP (0 when not meaningful).</param>
/// <param name="Baseline">The row this one is compared with, or null.</param>
public sealed record BenchRow(string Name, double Seconds, double Gflop, string? Baseline = null);

/// <summary>The end-to-end benchmark's results (the JSON of <c>sktune bench --json</c>).</summary>
public sealed record BenchReport(
    string Model, string Device, int Batch, int Seq, int Prefix, int Iterations,
    double OrtForwardS, double EngineForwardS, double TrainStepS,
    double PeakGflops, long PeakMemoryBytes, long PrefixBytes, IReadOnlyList<BenchRow> Rows);

/// <summary>
/// Times the engine against ONNX Runtime on the same model and shape in the same run: forward, an SK-Prefix
/// training step (forward + backward to the shared prefix), and per-kernel fast-vs-naive pairs. Medians after
/// warm-up (tier-0 JIT code is ~10x slower, so warm-up runs are discarded).
/// </summary>
public static class EngineBenchmark
{
    /// <summary>Runs the benchmark.</summary>
    public static BenchReport Run(FrozenModel model, Backend backend, int batch, int seq, int prefix, int iterations, Action<string>? log = null)
    {
        var spec = model.Spec;
        if (seq > spec.MaxPositions) throw new SkTuningException($"--seq {seq} is longer than the model's {spec.MaxPositions} positions");
        var rng = new Random(1234);
        var (tokens, ortInputs) = Inputs(spec, batch, seq);
        int d = spec.Hidden, L = spec.Layers;
        var rows = new List<BenchRow>();

        log?.Invoke("measuring the machine's fp32 FMA peak");
        double peak = MachinePeak.MeasureGflops();

        log?.Invoke($"ONNX Runtime forward, B={batch} T={seq}");
        double ort;
        using (var session = OrtSessions.Create(model.Source.OnnxPath, log: log))
        {
            var inputs = ortInputs.Where(i => session.InputMetadata.ContainsKey(i.Name)).ToList();
            ort = Median(iterations, () => { using var _ = session.Run(inputs, ["last_hidden_state"]); });
        }
        double forwardGflop = ForwardFlops(spec, batch, seq, prefix) / 1e9;
        rows.Add(new BenchRow("onnxruntime forward", ort, forwardGflop));

        log?.Invoke($"engine forward and SK-Prefix step on {backend.Name}, m={prefix}");
        using var engine = new TransformerEngine(backend, spec, model.Weights);
        var prefixHost = new float[2 * L * prefix * d];
        for (int i = 0; i < prefixHost.Length; i++) prefixHost[i] = (float)(rng.NextDouble() - 0.5);
        using var prefixBuf = backend.Allocate(prefixHost.Length);
        backend.Upload(prefixHost, prefixBuf.All);
        using var dPrefix = backend.Allocate(prefixHost.Length);
        using var dHidden = backend.Allocate(batch * seq * d);
        var dh = new float[batch * seq * d];
        for (int i = 0; i < dh.Length; i++) dh[i] = (float)(rng.NextDouble() - 0.5) * 1e-3f;
        backend.Upload(dh, dHidden.All);
        double fwd = Median(iterations, () => { engine.Forward(tokens, default, prefixBuf.All); backend.Synchronize(); });
        rows.Add(new BenchRow("engine forward (shared prefix)", fwd, forwardGflop, "onnxruntime forward"));
        double step = Median(iterations, () =>
        {
            engine.Forward(tokens, default, prefixBuf.All);
            engine.Backward(dHidden.All, default, dPrefix.All);
            backend.Synchronize();
        });
        rows.Add(new BenchRow("SK-Prefix step (forward + backward)", step, forwardGflop + BackwardFlops(spec, batch, seq, prefix) / 1e9, "onnxruntime forward"));

        if (backend is CpuBackend) KernelRows(rows, spec, batch, seq, prefix, iterations, rng, log);

        return new BenchReport(model.Source.Name, backend.Name, batch, seq, prefix, iterations, ort, fwd, step, peak,
            Process.GetCurrentProcess().PeakWorkingSet64, prefixHost.Length * 4L, rows);
    }

    private static void KernelRows(List<BenchRow> rows, ModelSpec spec, int batch, int seq, int prefix, int iterations, Random rng, Action<string>? log)
    {
        int m = batch * seq, d = spec.Hidden, f = spec.FfnSize;
        log?.Invoke($"kernels: GEMM {m}x{f}x{d}, attention B={batch} T={seq} m={prefix}");
        var a = Random(rng, m * d); var w = Random(rng, d * f); var c = new float[m * f];
        double gemmGflop = 2.0 * m * f * d / 1e9;
        rows.Add(new BenchRow($"GEMM NN {m}x{f}x{d}", Median(iterations, () => Gemm.NN(m, f, d, a, w, c)), gemmGflop, $"GEMM naive {m}x{f}x{d}"));
        rows.Add(new BenchRow($"GEMM naive {m}x{f}x{d}", Median(Math.Min(iterations, 3), () => Gemm.NNNaive(m, f, d, a, w, c)), gemmGflop));

        var shape = new AttentionShape(batch, seq, spec.Heads, spec.HeadSize, prefix, spec.KvHeads);
        var qkv = Random(rng, shape.QkvLength); var pk = Random(rng, shape.PrefixElements); var pv = Random(rng, shape.PrefixElements);
        var mask = new float[shape.MaskLength]; Array.Fill(mask, 1f);
        var output = new float[shape.OutputLength]; var probs = new float[shape.ProbsLength];
        double attGflop = 4.0 * batch * spec.Heads * seq * (seq + prefix) * spec.HeadSize / 1e9;
        rows.Add(new BenchRow("attention forward, shared prefix", Median(iterations, () =>
            Attention.Forward(qkv, pk, pv, mask, output, probs, shape, spec.MaskValue, spec.Causal)), attGflop, "attention forward, prefix copied per example"));
        rows.Add(new BenchRow("attention forward, prefix copied per example", Median(iterations, () =>
            Attention.ForwardNaiveConcatenated(qkv, pk, pv, mask, output, probs, shape, spec.MaskValue, spec.Causal)), attGflop));
        var dOut = Random(rng, shape.OutputLength); var dqkv = new float[shape.QkvLength];
        var dpk = new float[shape.PrefixElements]; var dpv = new float[shape.PrefixElements];
        rows.Add(new BenchRow("attention backward, shared prefix", Median(iterations, () =>
            Attention.Backward(dOut, qkv, pk, pv, probs, dqkv, dpk, dpv, shape)), 2 * attGflop));
    }

    /// <summary>Forward FLOPs: the four GEMMs per layer plus attention's two batched products.</summary>
    public static double ForwardFlops(ModelSpec s, int batch, int seq, int prefix)
    {
        double rows = (double)batch * seq, d = s.Hidden, f = s.FfnSize;
        double gemm = 2 * rows * d * (3 * d + d + 2 * f);
        double attention = 4.0 * batch * s.Heads * seq * (seq + prefix) * s.HeadSize;
        return s.Layers * (gemm + attention);
    }

    /// <summary>Backward FLOPs with respect to activations only (no weight gradients): GEMMs once, attention twice.</summary>
    public static double BackwardFlops(ModelSpec s, int batch, int seq, int prefix)
    {
        double rows = (double)batch * seq, d = s.Hidden, f = s.FfnSize;
        double gemm = 2 * rows * d * (3 * d + d + 2 * f);
        double attention = 8.0 * batch * s.Heads * seq * (seq + prefix) * s.HeadSize;
        return s.Layers * (gemm + attention);
    }

    private static float[] Random(Random rng, int n)
    {
        var a = new float[n];
        for (int i = 0; i < n; i++) a[i] = (float)(rng.NextDouble() * 2 - 1);
        return a;
    }

    /// <summary>
    /// A full (unpadded) batch of random token ids, as the engine's <see cref="TokenBatch"/> and as ONNX Runtime's
    /// inputs (input_ids, attention_mask, token_type_ids) — the same tokens for both.
    /// </summary>
    public static (TokenBatch Tokens, List<NamedOnnxValue> OrtInputs) Inputs(ModelSpec spec, int batch, int seq)
    {
        var rng = new Random(1234);
        var ids = new int[batch * seq];
        int first = Math.Min(1000, spec.VocabSize / 2), cls = Math.Min(101, spec.VocabSize - 1);
        for (int i = 0; i < ids.Length; i++) ids[i] = i % seq == 0 ? cls : rng.Next(first, spec.VocabSize);
        var mask = new float[batch * seq];
        Array.Fill(mask, 1f);
        var tokens = new TokenBatch(batch, seq, ids, new int[batch * seq], mask);
        DenseTensor<long> T(Func<int, long> f)
        {
            var data = new long[batch * seq];
            for (int i = 0; i < data.Length; i++) data[i] = f(i);
            return new DenseTensor<long>(data, [batch, seq]);
        }
        var inputs = new List<NamedOnnxValue>
        {
            NamedOnnxValue.CreateFromTensor("input_ids", T(i => ids[i])),
            NamedOnnxValue.CreateFromTensor("attention_mask", T(_ => 1)),
            NamedOnnxValue.CreateFromTensor("token_type_ids", T(_ => 0)),
        };
        return (tokens, inputs);
    }

    /// <summary>Median seconds of <paramref name="iterations"/> runs after two warm-up runs.</summary>
    public static double Median(int iterations, Action run)
    {
        run(); run();
        var times = new double[Math.Max(iterations, 1)];
        for (int i = 0; i < times.Length; i++)
        {
            var sw = Stopwatch.StartNew();
            run();
            times[i] = sw.Elapsed.TotalSeconds;
        }
        Array.Sort(times);
        return times.Length % 2 == 1 ? times[times.Length / 2] : (times[times.Length / 2 - 1] + times[times.Length / 2]) / 2;
    }
}
