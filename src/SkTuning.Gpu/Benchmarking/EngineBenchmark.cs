using System.Diagnostics;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using SkTuning.Gpu.Engine;
using SkTuning.Gpu.Import;
using SkTuning.Gpu.Kernels;
using SkTuning.Gpu.Training;
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
    double PeakGflops, long PeakMemoryBytes, long PrefixBytes, IReadOnlyList<BenchRow> Rows,
    string Weights = "fp32", long FrozenWeightBytes = 0)
{
    /// <summary>Where the engine's memory goes (all zero when not measured).</summary>
    public BenchMemory Memory { get; init; } = new();

    /// <summary>The clock one core ran the peak's FMAs at (<see cref="MachinePeak.MeasureClockGhz"/>), GHz; 0 when not measured.</summary>
    public double PeakClockGhz { get; init; }
}

/// <summary>
/// The engine's memory in <c>sktune bench</c>: its process peak measured before ONNX Runtime is loaded (import, upload,
/// forward and SK-Prefix step), what it is made of, and ONNX Runtime's own peak afterwards (the engine released first).
/// </summary>
/// <param name="EnginePeakBytes">Peak resident memory (VmHWM) of the process up to the end of the engine's step timing.</param>
/// <param name="MatrixBytes">The layers' frozen projection matrices as stored (fp32 or bf16).</param>
/// <param name="EmbeddingBytes">The embedding tables (the word table in bf16 under bf16 weights).</param>
/// <param name="OtherWeightBytes">The other frozen weights: norms, biases.</param>
/// <param name="ActivationBytes">What the forward keeps for the backward plus the backward's scratch (grows with B·T·L).</param>
/// <param name="AdapterBytes">The adapter's trainable values, gradients and AdamW moments (4 floats per parameter).</param>
/// <param name="OrtBaselineBytes">Resident memory when ONNX Runtime's session is created (the engine disposed).</param>
/// <param name="OrtPeakBytes">Peak resident memory while ONNX Runtime loads and runs; its own share is the difference to the baseline.</param>
/// <param name="Recompute">Whether the step recomputed each layer's forward in the backward (<c>--recompute</c>).</param>
/// <param name="LoadedBytes">Resident memory once the engine is loaded, before the first forward.</param>
/// <param name="StepPeakBytes">
/// Peak resident memory while the forward and the step run (the high-water mark reset after loading; 0 where it cannot
/// be): the loaded model plus what the steps add — the number activation recomputation lowers.
/// </param>
public sealed record BenchMemory(
    long EnginePeakBytes = 0, long MatrixBytes = 0, long EmbeddingBytes = 0, long OtherWeightBytes = 0, long ActivationBytes = 0,
    long AdapterBytes = 0, long OrtBaselineBytes = 0, long OrtPeakBytes = 0, bool Recompute = false, long LoadedBytes = 0, long StepPeakBytes = 0);

/// <summary>
/// Times the engine against ONNX Runtime on the same model and shape in the same run: forward, an SK-Prefix
/// training step (per-layer mode: the adapter's forward, the engine's forward and backward to the prefix, the
/// adapter's backward), and on the CPU backend the model's own kernels at its shapes (where the time goes) and
/// fast-vs-naive pairs. Works for every imported family (BERT, GPT-2, LLaMA). Medians after warm-up (tier-0 JIT code is
/// ~10x slower, and ONNX Runtime's first run plans memory, so warm-up runs are discarded).
/// </summary>
public static class EngineBenchmark
{
    /// <summary>
    /// Runs the benchmark on <paramref name="model"/> (its graph at <see cref="ImportedModel.SourcePath"/>); its host weights
    /// are released into the engine (<see cref="ModelWeights.Released"/>). With <paramref name="recompute"/> the step
    /// recomputes activations (<see cref="TransformerEngine.Recompute"/>); with <paramref name="engineOnly"/> only the engine's
    /// forward and step are timed (no ONNX Runtime baseline, no kernel rows: <see cref="BenchReport.OrtForwardS"/> is 0).
    /// </summary>
    public static BenchReport Run(string name, ImportedModel model, Backend backend, int batch, int seq, int prefix, int iterations, Action<string>? log = null,
        bool recompute = false, bool engineOnly = false)
    {
        var spec = model.Spec;
        if (seq > spec.MaxTokens) throw new SkTuningException($"--seq {seq} is longer than the model's {spec.MaxTokens} positions");
        if (prefix < 1) throw new SkTuningException($"--prefix {prefix}: the SK-Prefix step needs at least one prefix key");
        var rng = new Random(1234);
        var (tokens, ortInputs) = Inputs(spec, batch, seq);
        int d = spec.Hidden, L = spec.Layers;
        var rows = new List<BenchRow>();

        log?.Invoke("measuring the machine's fp32 FMA peak");
        double peak = MachinePeak.MeasureGflops(), clock = MachinePeak.MeasureClockGhz();
        double forwardGflop = ForwardFlops(spec, batch, seq, prefix) / 1e9;
        double stepGflop = forwardGflop + (BackwardFlops(spec, batch, seq, prefix) + 3 * AdapterFlops(spec, prefix)) / 1e9;

        // The engine runs first, before ONNX Runtime is loaded, so the process's peak up to here is the engine's own
        // (import, upload, forward, step); the host weights are released as they are uploaded — only the graph's path is
        // needed afterwards.
        log?.Invoke($"engine forward and SK-Prefix step (per-layer adapter, random init) on {backend.Name}, m={prefix}");
        double fwd, step;
        BenchMemory memory;
        bool bf16 = backend.FrozenWeights == WeightPrecision.Bf16;
        var shape = new AdapterShape(AdapterKind.Prefix, AdapterMode.PerLayer, prefix, d, L, spec.KvDim);
        long frozenBytes;
        using (var engine = new TransformerEngine(backend, spec, model.Weights, releaseHostWeights: true) { Recompute = recompute })
        {
            // Per-layer mode maps the semantic text's states entering each layer; random [m, d] stand-ins time the same.
            var sources = Enumerable.Range(0, L).Select(_ => Random(rng, prefix * d)).ToArray();
            using var adapter = new SemanticAdapter(backend, shape, sources, dropout: 0.1f, init: AdapterInit.Random);
            using var parameters = new TrainableParameters(backend, adapter.Tensors());
            adapter.Initialize(parameters, new Random(7));
            using var dPrefix = backend.Allocate(shape.OutputLength);
            using var dHidden = backend.Allocate(batch * seq * d);
            var dh = Random(rng, batch * seq * d);
            for (int i = 0; i < dh.Length; i++) dh[i] *= 1e-3f;
            backend.Upload(dh, dHidden.All);
            var fixedPrefix = adapter.Forward(parameters, training: false, 0);
            // The load's peak so far (import, conversion) is kept; the steps' own peak is measured from here.
            long loadPeak = ProcessMemory.PeakBytes();
            // Aggressive: the released host weights' memory goes back to the system, so that what the steps allocate shows.
            GC.Collect(2, GCCollectionMode.Aggressive, blocking: true, compacting: true);
            long loaded = ProcessMemory.CurrentBytes();
            bool stepPeak = ProcessMemory.ResetPeak();
            fwd = Median(iterations, () => { engine.Forward(tokens, default, fixedPrefix); backend.Synchronize(); });
            ulong seed = 0;
            step = Median(iterations, () =>
            {
                parameters.ZeroGradients();
                var p = adapter.Forward(parameters, training: true, ++seed);
                engine.Forward(tokens, default, p);
                engine.Backward(dHidden.All, default, dPrefix.All);
                adapter.Backward(parameters, dPrefix.All);
                backend.Synchronize();
            });
            frozenBytes = engine.FrozenWeightBytes;
            long afterSteps = ProcessMemory.PeakBytes();
            memory = new BenchMemory(Math.Max(loadPeak, afterSteps), engine.FrozenMatrixBytes, engine.EmbeddingBytes,
                engine.FrozenWeightBytes - engine.FrozenMatrixBytes - engine.EmbeddingBytes, engine.ActivationBytes, 16L * parameters.Count,
                Recompute: recompute, LoadedBytes: loaded, StepPeakBytes: stepPeak ? afterSteps : 0);
        }
        string? baseline = engineOnly ? null : "onnxruntime forward";
        rows.Add(new BenchRow("engine forward (shared prefix)", fwd, forwardGflop, baseline));
        rows.Add(new BenchRow("SK-Prefix step (adapter + forward + backward)", step, stepGflop, baseline));
        if (engineOnly)
            return new BenchReport(name, backend.Name, batch, seq, prefix, iterations, 0, fwd, step, peak, memory.EnginePeakBytes,
                shape.OutputLength * 4L, rows, bf16 ? "bf16" : "fp32", frozenBytes) { Memory = memory, PeakClockGhz = clock };

        if (backend is CpuBackend)
        {
            ModelKernelRows(rows, spec, batch, seq, prefix, iterations, rng, fwd, step, bf16, log);
            KernelRows(rows, spec, batch, seq, prefix, iterations, rng, log);
        }

        log?.Invoke($"ONNX Runtime forward, B={batch} T={seq}");
        GC.Collect();
        long ortBaseline = ProcessMemory.CurrentBytes();
        bool ownPeak = ProcessMemory.ResetPeak();
        double ort;
        using (var session = OrtSessions.Create(model.SourcePath, log: log))
        {
            var inputs = ForSession(session, ortInputs);
            // The final hidden state where the graph outputs it (causal-LM exports output logits: time their first output).
            var output = session.OutputMetadata.ContainsKey(model.HiddenStateNames[^1]) ? model.HiddenStateNames[^1] : session.OutputMetadata.Keys.First();
            ort = Median(iterations, () => { using var _ = session.Run(inputs, [output]); });
        }
        rows.Insert(0, new BenchRow("onnxruntime forward", ort, forwardGflop));
        long processPeak = ProcessMemory.PeakBytes();
        memory = memory with { OrtBaselineBytes = ortBaseline, OrtPeakBytes = ownPeak ? processPeak : 0 };

        return new BenchReport(name, backend.Name, batch, seq, prefix, iterations, ort, fwd, step, peak,
            Math.Max(processPeak, memory.EnginePeakBytes), shape.OutputLength * 4L, rows, bf16 ? "bf16" : "fp32", frozenBytes) { Memory = memory, PeakClockGhz = clock };
    }

    /// <summary>
    /// Where the engine's time goes: the model's own GEMM shapes and attention timed as kernels, times L, against the
    /// measured forward and step; what remains is norms, RoPE, activations, residuals, the embedding and copies. With
    /// <paramref name="bf16"/> the weights are bf16 words, as the engine holds them.
    /// </summary>
    private static void ModelKernelRows(List<BenchRow> rows, ModelSpec spec, int batch, int seq, int prefix, int iterations, Random rng,
        double forward, double step, bool bf16, Action<string>? log)
    {
        int m = batch * seq, d = spec.Hidden, L = spec.Layers, f = spec.FfnSize;
        int qkvw = spec.Heads * spec.HeadSize + 2 * spec.KvDim, fin = spec.Activation == ActivationKind.SwiGlu ? 2 * f : f;
        log?.Invoke($"the model's kernels at its shapes (×{L} layers)");
        // (n, k) of y[m, n] = x[m, k]·W[k, n]: fused QKV, output projection, FFN in (gate|up for SwiGLU), FFN out.
        (int N, int K)[] shapes = [(qkvw, d), (d, d), (fin, d), (d, f)];
        double gemmForward = 0, gemmBackward = 0, gemmGflop = 0;
        foreach (var (n, k) in shapes)
        {
            var a = Random(rng, m * k); var w = Random(rng, k * n); var c = new float[m * n]; var dc = Random(rng, m * n); var da = new float[m * k];
            var w16 = Kernels.PackedBf16Matrix.Pack(w, k, n);
            gemmForward += Median(iterations, () => { if (bf16) Gemm.NNBf16(m, n, k, a, w16, c); else Gemm.NN(m, n, k, a, w, c); });
            // Prefix training needs only the input gradient dx = dy·Wᵀ (frozen weights).
            gemmBackward += Median(iterations, () => { if (bf16) Gemm.NTBf16(m, k, n, dc, w16, da); else Gemm.NT(m, k, n, dc, w, da); });
            gemmGflop += 2.0 * m * n * k / 1e9;
        }
        var shape = new AttentionShape(batch, seq, spec.Heads, spec.HeadSize, prefix, spec.KvHeads);
        var qkv = Random(rng, shape.QkvLength); var pk = Random(rng, shape.PrefixElements); var pv = Random(rng, shape.PrefixElements);
        var mask = new float[shape.MaskLength]; Array.Fill(mask, 1f);
        var output = new float[shape.OutputLength]; var probs = new float[shape.ProbsLength];
        var dOut = Random(rng, shape.OutputLength); var dqkv = new float[shape.QkvLength];
        var dpk = new float[shape.PrefixElements]; var dpv = new float[shape.PrefixElements];
        double attForward = Median(iterations, () => Attention.Forward(qkv, pk, pv, mask, output, probs, shape, spec.MaskValue, spec.Causal));
        double attBackward = Median(iterations, () => Attention.Backward(dOut, qkv, pk, pv, probs, dqkv, dpk, dpv, shape));
        double attGflop = AttentionFlops(spec, batch, seq, prefix) / 1e9;
        string weights = bf16 ? ", bf16 weights" : "";
        rows.Add(new BenchRow($"forward: GEMMs ({L} layers x 4 kernels{weights})", L * gemmForward, L * gemmGflop));
        rows.Add(new BenchRow($"forward: attention ({L} layers)", L * attForward, L * attGflop));
        rows.Add(new BenchRow("forward: rest (norms, RoPE, activations, residuals, embedding)", Math.Max(0, forward - L * (gemmForward + attForward)), 0));
        rows.Add(new BenchRow($"backward: input-gradient GEMMs ({L} layers x 4{weights})", L * gemmBackward, L * gemmGflop));
        rows.Add(new BenchRow($"backward: attention ({L} layers)", L * attBackward, 2 * L * attGflop));
        rows.Add(new BenchRow("backward: rest (step − forward − the above)", Math.Max(0, step - forward - L * (gemmBackward + attBackward)), 0));
    }

    private static void KernelRows(List<BenchRow> rows, ModelSpec spec, int batch, int seq, int prefix, int iterations, Random rng, Action<string>? log)
    {
        int m = batch * seq, d = spec.Hidden, f = spec.FfnSize;
        log?.Invoke($"kernels: GEMM {m}x{f}x{d}, attention B={batch} T={seq} m={prefix}");
        var a = Random(rng, m * d); var w = Random(rng, d * f); var c = new float[m * f];
        double gemmGflop = 2.0 * m * f * d / 1e9;
        string nn = $"GEMM NN {m}x{f}x{d}";
        rows.Add(new BenchRow(nn, Median(iterations, () => Gemm.NN(m, f, d, a, w, c)), gemmGflop, $"GEMM naive {m}x{f}x{d}"));
        var w16 = Kernels.PackedBf16Matrix.Pack(w, d, f);
        if (Gemm.IsBf16DotProductSupported)
            rows.Add(new BenchRow($"{nn}, bf16 weights (vdpbf16ps)", Median(iterations, () =>
                Gemm.NNBf16(m, f, d, a, w16, c, path: Bf16GemmPath.DotProduct)), gemmGflop, nn));
        rows.Add(new BenchRow($"{nn}, bf16 weights widened", Median(iterations, () =>
            Gemm.NNBf16(m, f, d, a, w16, c, path: Bf16GemmPath.Widening)), gemmGflop, nn));
        rows.Add(new BenchRow($"GEMM naive {m}x{f}x{d}", Median(Math.Min(iterations, 3), () => Gemm.NNNaive(m, f, d, a, w, c)), gemmGflop));

        var shape = new AttentionShape(batch, seq, spec.Heads, spec.HeadSize, prefix, spec.KvHeads);
        var qkv = Random(rng, shape.QkvLength); var pk = Random(rng, shape.PrefixElements); var pv = Random(rng, shape.PrefixElements);
        var mask = new float[shape.MaskLength]; Array.Fill(mask, 1f);
        var output = new float[shape.OutputLength]; var probs = new float[shape.ProbsLength];
        double attGflop = AttentionFlops(spec, batch, seq, prefix) / 1e9;
        rows.Add(new BenchRow("attention forward, shared prefix", Median(iterations, () =>
            Attention.Forward(qkv, pk, pv, mask, output, probs, shape, spec.MaskValue, spec.Causal)), attGflop, "attention forward, prefix copied per example"));
        rows.Add(new BenchRow("attention forward, prefix copied per example", Median(iterations, () =>
            Attention.ForwardNaiveConcatenated(qkv, pk, pv, mask, output, probs, shape, spec.MaskValue, spec.Causal)), attGflop));
        if (prefix > 0)
        {
            // Two runs' prefixes stacked, rows alternating between them (serving several runs in one batch).
            var pk2 = Random(rng, 2 * shape.PrefixElements); var pv2 = Random(rng, 2 * shape.PrefixElements);
            var choice = Enumerable.Range(0, batch).Select(b => b % 2).ToArray();
            rows.Add(new BenchRow("attention forward, per-example prefix choice (A = 2)", Median(iterations, () =>
                Attention.Forward(qkv, pk2, pv2, mask, output, probs, shape, spec.MaskValue, spec.Causal, prefixChoice: choice)), attGflop,
                "attention forward, shared prefix"));
        }
        var dOut = Random(rng, shape.OutputLength); var dqkv = new float[shape.QkvLength];
        var dpk = new float[shape.PrefixElements]; var dpv = new float[shape.PrefixElements];
        rows.Add(new BenchRow("attention backward, shared prefix", Median(iterations, () =>
            Attention.Backward(dOut, qkv, pk, pv, probs, dqkv, dpk, dpv, shape)), 2 * attGflop));
    }

    /// <summary>
    /// Forward FLOPs: per layer the projections — q and o d·(H·dh), k and v d·kvDim each (grouped KV heads) — the FFN
    /// (2·d·F, or 3·d·F for SwiGLU's gate, up and down), each 2·rows·in·out; plus attention (<see cref="AttentionFlops"/>).
    /// </summary>
    public static double ForwardFlops(ModelSpec s, int batch, int seq, int prefix) =>
        s.Layers * (GemmFlops(s, batch, seq) + AttentionFlops(s, batch, seq, prefix));

    /// <summary>
    /// Backward FLOPs with respect to activations only (frozen weights, no weight gradients): the GEMMs once more
    /// (dx = dy·Wᵀ), attention twice (dQ, dK, dV, dP).
    /// </summary>
    public static double BackwardFlops(ModelSpec s, int batch, int seq, int prefix) =>
        s.Layers * (GemmFlops(s, batch, seq) + 2 * AttentionFlops(s, batch, seq, prefix));

    /// <summary>One layer's projection and FFN GEMMs: 2·rows·d·(2·H·dh + 2·kvDim + (2 or 3)·F).</summary>
    public static double GemmFlops(ModelSpec s, int batch, int seq)
    {
        double rows = (double)batch * seq, d = s.Hidden, dq = s.Heads * s.HeadSize;
        double ffnMatrices = s.Activation == ActivationKind.SwiGlu ? 3 : 2;
        return 2 * rows * d * (2 * dq + 2 * s.KvDim + ffnMatrices * s.FfnSize);
    }

    /// <summary>
    /// One layer's attention products Q·Kᵀ and P·V over T queries and T + m keys (the prefix included), 2·2·B·H·T·(T+m)·dh —
    /// counted in full for causal models too, as the kernel computes the masked scores.
    /// </summary>
    public static double AttentionFlops(ModelSpec s, int batch, int seq, int prefix) =>
        4.0 * batch * s.Heads * seq * (seq + prefix) * s.HeadSize;

    /// <summary>The per-layer SK-Prefix adapter's forward: m rows through [d, kvDim] maps for K and V of every layer.</summary>
    public static double AdapterFlops(ModelSpec s, int prefix) => 2.0 * 2 * s.Layers * prefix * s.Hidden * s.KvDim;

    private static float[] Random(Random rng, int n)
    {
        var a = new float[n];
        for (int i = 0; i < n; i++) a[i] = (float)(rng.NextDouble() * 2 - 1);
        return a;
    }

    /// <summary>
    /// A full (unpadded) batch of random token ids, as the engine's <see cref="TokenBatch"/> and as ONNX Runtime's
    /// inputs (input_ids, attention_mask, token_type_ids, position_ids 0..T−1; see <see cref="ForSession"/>) — the same tokens for both.
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
            NamedOnnxValue.CreateFromTensor("position_ids", T(i => i % seq)),
        };
        return (tokens, inputs);
    }

    /// <summary>The inputs among <paramref name="inputs"/> that <paramref name="session"/>'s graph takes (encoders have token types, decoders position ids).</summary>
    public static List<NamedOnnxValue> ForSession(InferenceSession session, IEnumerable<NamedOnnxValue> inputs) =>
        inputs.Where(i => session.InputMetadata.ContainsKey(i.Name)).ToList();

    /// <summary>
    /// Median seconds of <paramref name="iterations"/> runs after warm-up: at least two runs and 0.5 s, so that the
    /// tiered JIT has replaced its tier-0 and instrumented code before timing (`perf` over a bench run found tier-0 GELU
    /// and attention code, and the forward ran 5-13 ms faster with tiering off; RESULTS 2026-12-01).
    /// </summary>
    public static double Median(int iterations, Action run)
    {
        var warm = Stopwatch.StartNew();
        for (int i = 0; i < 2 || warm.Elapsed.TotalSeconds < 0.5; i++) run();
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
