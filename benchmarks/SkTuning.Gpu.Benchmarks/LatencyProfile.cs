using System.Diagnostics;
using SkTuning.Gpu.Data;
using SkTuning.Gpu.Hosting;
using SkTuning.Gpu.Kernels;
using SkTuning.Gpu.Training;

namespace SkTuning.Gpu.Benchmarks;

/// <summary>
/// Where one warm single-sentence prediction's time goes (Stopwatch, medians of many repeats): the host API's layers
/// (sequential <see cref="SkTuner.Predict(string, string?)"/>, an awaited <see cref="SkTuner.PredictAsync"/>, the batcher
/// bypassed with <see cref="SkTuner.PredictExamples"/>, tokenizing alone), then each CPU kernel of the forward at the
/// sentence's shapes (MiniLM-L6: d = 384, 12 heads, FFN 1536; T tokens, m prefix keys), each counted as often as one
/// forward runs it, so their sum can be set against the measured forward.
/// Usage: <c>latency-profile RUN_DIR [--threads N] [--repeats N] [--trace-loop]</c>
/// (<c>--trace-loop</c>: only <c>repeats</c> batcher-less predictions, for <c>dotnet-trace collect --format speedscope -- …</c>).
/// </summary>
internal static class LatencyProfile
{
    private const string Sentence = LatencyLoad.Sentence;

    public static void Run(string[] args)
    {
        int threads = CommandArgs.Option(args, "--threads", -1), repeats = CommandArgs.Option(args, "--repeats", 400);
        using var tuner = SkTuner.Load(args[0], new SkTunerOptions { MaxKernelThreads = threads });
        var example = new TextExample { Text = Sentence, Source = "profile" };
        int tokens = ExampleEncoder.Encode(tuner.Frozen.Tokenizer, [example], tuner.Config.TaskKind, tuner.Config.MaxTokens, requireTargets: false)
            .Examples[0].Ids.Length;
        Console.WriteLine($"threads {threads}, {tokens} tokens, {Environment.ProcessorCount} cores");
        if (args.Contains("--trace-loop"))
        {
            // Only single-sentence forwards, for a sampling profiler (dotnet-trace) to attribute.
            for (int i = 0; i < repeats; i++) tuner.PredictExamples([example]);
            return;
        }
        Console.WriteLine("| part | median ms | p90 ms | per forward | ms per forward |");
        Console.WriteLine("|---|---:|---:|---:|---:|");

        Time("Predict (sequential, blocking)", 1, repeats, () => tuner.Predict(Sentence));
        Time("await PredictAsync (one caller)", 1, repeats, () => tuner.PredictAsync(Sentence).GetAwaiter().GetResult());
        Time("PredictAsync from a pool thread, awaited", 1, repeats, () => Task.Run(async () => await tuner.PredictAsync(Sentence)).GetAwaiter().GetResult());
        Time("PredictExamples (no batcher: encode + forward + head)", 1, repeats, () => tuner.PredictExamples([example]));
        Time("tokenize + encode", 1, repeats,
            () => ExampleEncoder.Encode(tuner.Frozen.Tokenizer, [example], tuner.Config.TaskKind, tuner.Config.MaxTokens, requireTargets: false));
        // Again, now that everything above has run many times (the first rows include the JIT's tier-up).
        Time("Predict (sequential, blocking), again", 1, repeats, () => tuner.Predict(Sentence));

        // The forward's kernels at this sentence's shapes (BERT post-norm block, per-layer prefix of m keys).
        int d = 384, heads = 12, ffn = 1536, layers = 6, m = 12, T = tokens;
        var rng = new Random(1);
        float[] R(int n) { var a = new float[n]; for (int i = 0; i < n; i++) a[i] = (float)(rng.NextDouble() * 2 - 1) * 0.1f; return a; }
        var x = R(T * d); var wqkv = R(d * 3 * d); var bqkv = R(3 * d); var qkv = R(T * 3 * d);
        var wo = R(d * d); var bo = R(d); var o = R(T * d);
        var w1 = R(d * ffn); var b1 = R(ffn); var h1 = R(T * ffn); var a1 = R(T * ffn);
        var w2 = R(ffn * d); var b2 = R(d); var o2 = R(T * d);
        var shape = new AttentionShape(1, T, heads, d / heads, m, heads);
        var pk = R(m * d); var pv = R(m * d); var mask = new float[T]; var ctx = R(T * d); var probs = R(shape.ProbsLength);
        var gamma = R(d); var beta = R(d); var sum = R(T * d); var y = R(T * d); var mean = R(T); var rstd = R(T);
        // The engine's GEMMs read weights packed once at load (PackedMatrix); here each is hot in cache, unlike in a forward.
        var (pqkv, po, p1, p2) = (PackedMatrix.Pack(wqkv, d, 3 * d), PackedMatrix.Pack(wo, d, d), PackedMatrix.Pack(w1, d, ffn), PackedMatrix.Pack(w2, ffn, d));
        Time($"GEMM QKV [{T}x{d}]·[{d}x{3 * d}]", layers, repeats, () => Gemm.NNPacked(T, 3 * d, d, x, pqkv, qkv, bqkv));
        Time($"GEMM out [{T}x{d}]·[{d}x{d}]", layers, repeats, () => Gemm.NNPacked(T, d, d, ctx, po, o, bo));
        Time($"GEMM FFN in [{T}x{d}]·[{d}x{ffn}]", layers, repeats, () => Gemm.NNPacked(T, ffn, d, x, p1, h1, b1));
        Time($"GEMM FFN out [{T}x{ffn}]·[{ffn}x{d}]", layers, repeats, () => Gemm.NNPacked(T, d, ffn, a1, p2, o2, b2));
        Time($"attention ({heads} heads, {T} queries, {m}+{T} keys)", layers, repeats,
            () => Attention.Forward(qkv, pk, pv, mask, ctx, probs, shape, -1e4f, false));
        Time($"residual + LayerNorm [{T}x{d}]", 2 * layers, repeats, () => ResidualLayerNorm.Forward(o, x, sum, gamma, beta, y, mean, rstd, T, d, 1e-12f));
        Time($"GELU [{T}x{ffn}]", layers, repeats, () => Gelu.Forward(h1, a1));
    }

    private static void Time(string name, int perForward, int repeats, Action body)
    {
        for (int i = 0; i < 20; i++) body();
        var t = new double[repeats];
        for (int i = 0; i < repeats; i++)
        {
            long s = Stopwatch.GetTimestamp();
            body();
            t[i] = Stopwatch.GetElapsedTime(s).TotalMilliseconds;
        }
        Array.Sort(t);
        double p50 = t[repeats / 2], p90 = t[repeats * 9 / 10];
        Console.WriteLine($"| {name} | {p50:F3} | {p90:F3} | {perForward} | {p50 * perForward:F2} |");
    }
}
