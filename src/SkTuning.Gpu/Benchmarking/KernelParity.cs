using SkTuning.Gpu.Engine;
using SkTuning.Gpu.Kernels;

namespace SkTuning.Gpu.Benchmarking;

/// <summary>
/// The sizes the per-kernel parity runs at: a model's layer shapes (rows = B·T, d, FFN, heads) and the decoder extras
/// (grouped KV heads, rotary dimensions).
/// </summary>
/// <param name="Batch">B.</param>
/// <param name="Tokens">T.</param>
/// <param name="Hidden">d.</param>
/// <param name="Heads">Query heads.</param>
/// <param name="KvHeads">Key/value heads of the grouped-query attention check.</param>
/// <param name="FfnSize">FFN inner size.</param>
/// <param name="PrefixLength">m.</param>
/// <param name="Vocab">Rows of the embedding table.</param>
public sealed record KernelShapes(int Batch, int Tokens, int Hidden, int Heads, int KvHeads, int FfnSize, int PrefixLength, int Vocab)
{
    /// <summary>MiniLM at the device check's batch: B 32, T 64, d 384, 12 heads (4 KV heads for GQA), FFN 1536, m 12.</summary>
    public static KernelShapes MiniLm { get; } = new(32, 64, 384, 12, 4, 1536, 12, 30522);

    /// <summary>Simulator sizes (ILGPU's CPU accelerator is 50-150x slower than the SIMD backend).</summary>
    public static KernelShapes Tiny { get; } = new(2, 5, 16, 4, 2, 32, 3, 40);

    /// <summary>B·T.</summary>
    public int Rows => Batch * Tokens;

    /// <summary>d / heads.</summary>
    public int HeadDim => Hidden / Heads;
}

/// <summary>
/// Every backend operation run on a device backend and on the CPU backend with the same fresh random inputs, compared
/// normwise (max|device − cpu| / max|cpu|), one <see cref="DeviceCheckLine"/> per kernel and direction. Overwritten
/// outputs start as NaN (a kernel that skips an element fails), accumulated ones as the same random values on both
/// sides. A kernel that throws costs its own line, not the rest: a failing GPU run still says which kernel is wrong.
/// </summary>
public static class KernelParity
{
    /// <summary>Tolerance of element-wise kernels (same formula, fp32 both sides; exp/erf/tanh may differ by a few ulps).</summary>
    public const double ElementwiseLimit = 1e-5;

    /// <summary>Tolerance of reductions (GEMM, norms, attention, sums: different summation orders).</summary>
    public const double ReductionLimit = 1e-4;

    /// <summary>Runs every check, calling <paramref name="emit"/> as each line is produced.</summary>
    public static void Run(Backend cpu, Backend device, KernelShapes s, Action<DeviceCheckLine> emit)
    {
        int rows = s.Rows, d = s.Hidden, F = s.FfnSize, n = rows * d;
        float[] x = Random(n, 1), dy = Random(n, 2), acc = Random(n, 3);
        float[] gamma = Random(d, 4), beta = Random(d, 5);
        void Check(string name, double limit, Func<Scope, float[]> run) => emit(Compare(cpu, device, $"kernel {name}", limit, run));

        foreach (var op in new[] { GemmOp.NN, GemmOp.NT, GemmOp.TN })
        {
            // The step's widest shapes: [rows, d]·[d, F] forward, and the transposed forms of the backward.
            var (m, nn, k) = op == GemmOp.TN ? (d, F, rows) : (rows, F, d);
            var a = Random(op == GemmOp.TN ? k * m : m * k, 6);
            var b = Random(op == GemmOp.NT ? nn * k : k * nn, 7);
            var bias = Random(nn, 8);
            Check($"gemm {op} {m}x{nn}x{k} + bias", ReductionLimit, sc => { var c = sc.Poisoned(m * nn); sc.B.Gemm(op, m, nn, k, sc.Up(a), sc.Up(b), c, sc.Up(bias)); return sc.Down(c); });
            var c0 = Random(m * nn, 9);
            Check($"gemm {op} {m}x{nn}x{k} accumulate", ReductionLimit, sc => { var c = sc.Up(c0); sc.B.Gemm(op, m, nn, k, sc.Up(a), sc.Up(b), c, accumulate: true); return sc.Down(c); });
        }

        Check("layernorm forward", ReductionLimit, sc =>
        {
            var (y, mean, rstd) = (sc.Poisoned(n), sc.Poisoned(rows), sc.Poisoned(rows));
            sc.B.LayerNormForward(sc.Up(x), sc.Up(gamma), sc.Up(beta), y, mean, rstd, rows, d, 1e-12f);
            return [.. sc.Down(y), .. sc.Down(mean), .. sc.Down(rstd)];
        });
        Check("layernorm backward", ReductionLimit, sc =>
        {
            var (y, mean, rstd) = (sc.Poisoned(n), sc.Poisoned(rows), sc.Poisoned(rows));
            sc.B.LayerNormForward(sc.Up(x), sc.Up(gamma), sc.Up(beta), y, mean, rstd, rows, d, 1e-12f);
            var (dx, dg, db) = (sc.Up(acc), sc.Up(gamma), sc.Up(beta));
            sc.B.LayerNormBackward(sc.Up(dy), sc.Up(x), sc.Up(gamma), mean, rstd, dx, dg, db, rows, d);
            return [.. sc.Down(dx), .. sc.Down(dg), .. sc.Down(db)];
        });
        Check("rmsnorm forward", ReductionLimit, sc =>
        {
            var (y, rstd) = (sc.Poisoned(n), sc.Poisoned(rows));
            sc.B.RmsNormForward(sc.Up(x), sc.Up(gamma), y, rstd, rows, d, 1e-6f);
            return [.. sc.Down(y), .. sc.Down(rstd)];
        });
        Check("rmsnorm backward", ReductionLimit, sc =>
        {
            var (y, rstd) = (sc.Poisoned(n), sc.Poisoned(rows));
            sc.B.RmsNormForward(sc.Up(x), sc.Up(gamma), y, rstd, rows, d, 1e-6f);
            var (dx, dg) = (sc.Up(acc), sc.Up(gamma));
            sc.B.RmsNormBackward(sc.Up(dy), sc.Up(x), sc.Up(gamma), rstd, dx, dg, rows, d);
            return [.. sc.Down(dx), .. sc.Down(dg)];
        });

        var h = Random(rows * F, 10, 3f);
        var dh = Random(rows * F, 11);
        var hAcc = Random(rows * F, 12);
        Check("gelu forward", ElementwiseLimit, sc => { var y = sc.Poisoned(h.Length); sc.B.GeluForward(sc.Up(h), y); return sc.Down(y); });
        Check("gelu backward", ElementwiseLimit, sc => { var dx = sc.Up(hAcc); sc.B.GeluBackward(sc.Up(dh), sc.Up(h), dx); return sc.Down(dx); });
        Check("gelu-tanh forward", ElementwiseLimit, sc => { var y = sc.Poisoned(h.Length); sc.B.GeluTanhForward(sc.Up(h), y); return sc.Down(y); });
        Check("gelu-tanh backward", ElementwiseLimit, sc => { var dx = sc.Up(hAcc); sc.B.GeluTanhBackward(sc.Up(dh), sc.Up(h), dx); return sc.Down(dx); });
        Check("tanh forward", ElementwiseLimit, sc => { var y = sc.Poisoned(h.Length); sc.B.TanhForward(sc.Up(h), y); return sc.Down(y); });
        Check("tanh backward", ElementwiseLimit, sc => { var dx = sc.Up(hAcc); sc.B.TanhBackward(sc.Up(dh), sc.Up(Random(h.Length, 13, 0.9f)), dx); return sc.Down(dx); });
        var gateUp = Random(rows * 2 * F, 14, 3f);
        Check("swiglu forward", ElementwiseLimit, sc => { var y = sc.Poisoned(rows * F); sc.B.SwiGluForward(sc.Up(gateUp), y, rows, F); return sc.Down(y); });
        Check("swiglu backward", ElementwiseLimit, sc => { var dg = sc.Up(Random(gateUp.Length, 15)); sc.B.SwiGluBackward(sc.Up(dh), sc.Up(gateUp), dg, rows, F); return sc.Down(dg); });
        Check("add", ElementwiseLimit, sc => { var y = sc.Poisoned(n); sc.B.Add(sc.Up(x), sc.Up(dy), y); return sc.Down(y); });
        Check("accumulate", ElementwiseLimit, sc => { var y = sc.Up(acc); sc.B.Accumulate(sc.Up(x), y); return sc.Down(y); });
        Check("dropout forward", ElementwiseLimit, sc => { var y = sc.Poisoned(n); sc.B.DropoutForward(sc.Up(x), y, 0.1f, 42, 7); return sc.Down(y); });
        Check("dropout backward", ElementwiseLimit, sc => { var dx = sc.Up(acc); sc.B.DropoutBackward(sc.Up(dy), dx, 0.1f, 42, 7); return sc.Down(dx); });
        Check("bias backward", ReductionLimit, sc => { var db = sc.Up(gamma); sc.B.BiasBackward(sc.Up(dy), db, rows, d); return sc.Down(db); });
        Check("gradient norm and clip scale", ReductionLimit, sc =>
        {
            var (norm, clip) = (sc.Poisoned(1), sc.Poisoned(1));
            sc.B.GradientClip(sc.Up(x), 1f, norm, clip);   // max norm 1: clipping active
            return [.. sc.Down(norm), .. sc.Down(clip)];
        });
        Check("adamw", ReductionLimit, sc =>
        {
            var (p, m, v) = (sc.Up(x), sc.Up(dy), sc.Up(Random(n, 16, 1f, positive: true)));
            sc.B.AdamW(p, sc.Up(acc), m, v, new AdamWStep(1e-3f, 0.9f, 0.999f, 1e-8f, 0.01f, step: 3), sc.Up([0.5f]));
            return [.. sc.Down(p), .. sc.Down(m), .. sc.Down(v)];
        });

        var ids = Ints(rows, 17, s.Vocab);
        var positions = Ints(rows, 18, s.Tokens);
        var types = Ints(rows, 19, 2);
        var wte = Random(s.Vocab * d, 20);
        var wpe = Random(s.Tokens * d, 21);
        var wtt = Random(2 * d, 22);
        Check("embedding forward", ElementwiseLimit, sc =>
        {
            var y = sc.Poisoned(n);
            sc.B.EmbeddingForward(sc.Up(ids), sc.Up(types), sc.Up(positions), sc.Up(wte), sc.Up(wpe), sc.Up(wtt), y, s.Batch, s.Tokens, d);
            return sc.Down(y);
        });
        Check("embedding backward", ReductionLimit, sc =>
        {
            var (dWte, dWpe, dWtt) = (sc.Up(wte), sc.Up(wpe), sc.Up(wtt));
            sc.B.EmbeddingBackward(sc.Up(ids), sc.Up(types), sc.Up(positions), sc.Up(dy), dWte, dWpe, dWtt, s.Batch, s.Tokens, d);
            return [.. sc.Down(dWte), .. sc.Down(dWpe), .. sc.Down(dWtt)];
        });

        int qkvw = 3 * d, width = d / 2;
        var block = Random(rows * width, 23);
        var matrix = Random(rows * qkvw, 24);
        Check("column block add", ElementwiseLimit, sc => { var mat = sc.Up(matrix); sc.B.AddColumnBlock(sc.Up(block), mat, rows, width, qkvw, d, 0.5f); return sc.Down(mat); });
        Check("column block backward", ElementwiseLimit, sc => { var blk = sc.Up(block); sc.B.ColumnBlockBackward(sc.Up(matrix), blk, rows, width, qkvw, d, 0.5f); return sc.Down(blk); });

        int mp = s.PrefixLength, S = mp + s.Tokens;
        var prompt = Random(mp * d, 25);
        var prepended = Random(s.Batch * S * d, 26);
        Check("prepend forward", ElementwiseLimit, sc => { var y = sc.Poisoned(prepended.Length); sc.B.Prepend(sc.Up(prompt), sc.Up(x), y, s.Batch, mp, s.Tokens, d); return sc.Down(y); });
        Check("prepend backward", ReductionLimit, sc =>
        {
            var (dp, dx) = (sc.Up(prompt), sc.Up(acc));
            sc.B.PrependBackward(sc.Up(prepended), dp, dx, s.Batch, mp, s.Tokens, d);
            return [.. sc.Down(dp), .. sc.Down(dx)];
        });

        var mask = Ints(rows, 27, 2);
        for (int b = 0; b < s.Batch; b++) mask[b * s.Tokens] = 1;   // every example keeps a token
        Check("mean pooling forward", ReductionLimit, sc => { var y = sc.Poisoned(s.Batch * d); sc.B.MeanPoolForward(sc.Up(x), sc.Up(mask), y, s.Batch, s.Tokens, 0, d); return sc.Down(y); });
        Check("mean pooling backward", ElementwiseLimit, sc =>
        {
            var dx = sc.Up(acc);
            sc.B.MeanPoolBackward(sc.Up(Random(s.Batch * d, 28)), sc.Up(mask), dx, s.Batch, s.Tokens, 0, d);
            return sc.Down(dx);
        });
        var logits = Random(rows * 5, 29, 4f);
        var labels = Ints(rows, 30, 5);
        labels[0] = -100;
        Check("softmax cross-entropy", ReductionLimit, sc =>
        {
            var dl = sc.Up(Random(logits.Length, 31));
            var loss = sc.Poisoned(1);
            sc.B.SoftmaxCrossEntropy(sc.Up(logits), sc.Up(labels), rows - 1, dl, rows, 5, loss);
            return [.. sc.Down(loss), .. sc.Down(dl)];
        });
        Check("mean squared error", ReductionLimit, sc =>
        {
            var dp = sc.Up(Random(rows, 32));
            var loss = sc.Poisoned(1);
            sc.B.MeanSquaredError(sc.Up(logits.AsSpan(0, rows).ToArray()), sc.Up(Random(rows, 33)), dp, loss);
            return [.. sc.Down(loss), .. sc.Down(dp)];
        });

        int hd = s.HeadDim, rotary = hd / 2;
        var (cos, sin) = Rope.Tables(s.Tokens + mp, rotary, 10000f);
        var ropePositions = Ints(rows, 34, s.Tokens + mp);
        Check($"rope forward (rotary {rotary} of {hd})", ElementwiseLimit, sc =>
        {
            var q = sc.Up(matrix);
            sc.B.RopeForward(q, sc.Up(ropePositions), sc.Up(cos), sc.Up(sin), rows, qkvw, 2 * s.Heads, hd, rotary);
            return sc.Down(q);
        });
        Check($"rope backward (rotary {rotary} of {hd})", ElementwiseLimit, sc =>
        {
            var q = sc.Up(matrix);
            sc.B.RopeBackward(q, sc.Up(ropePositions), sc.Up(cos), sc.Up(sin), rows, qkvw, 2 * s.Heads, hd, rotary);
            return sc.Down(q);
        });

        foreach (var (kv, causal, maskValue, alibi) in new[] { (s.Heads, false, -10000f, false), (s.KvHeads, true, float.MinValue, false), (s.Heads, true, float.MinValue, true) })
        {
            var shape = new AttentionShape(s.Batch, s.Tokens, s.Heads, hd, mp, kv);
            var qkv = Random(shape.QkvLength, 35);
            var pk = Random(shape.PrefixElements, 36);
            var pv = Random(shape.PrefixElements, 37);
            var keyMask = Array.ConvertAll(mask, v => (float)v);
            var dOut = Random(shape.OutputLength, 38);
            // ALiBi (BLOOM): per-head slopes, token keys at their count of real tokens so far.
            float[] slopes = alibi ? Attention.AlibiSlopes(s.Heads) : [];
            var keyPositions = alibi ? new int[rows] : [];
            for (int b = 0; b < (alibi ? s.Batch : 0); b++)
                for (int t = 0, seen = 0; t < s.Tokens; t++) keyPositions[b * s.Tokens + t] = mp + Math.Max(0, (seen += mask[b * s.Tokens + t]) - 1);
            string label = $"attention {(kv == s.Heads ? "MHA" : $"GQA {s.Heads}/{kv}")}{(causal ? " causal" : "")}{(alibi ? " ALiBi" : "")} m={mp}";
            Check($"{label} forward", ReductionLimit, sc =>
            {
                var (o, p) = (sc.Poisoned(shape.OutputLength), sc.Poisoned(shape.ProbsLength));
                sc.B.AttentionForward(shape, maskValue, causal, sc.Up(qkv), sc.Up(pk), sc.Up(pv), sc.Up(keyMask), sc.Up(slopes), sc.Up(keyPositions), o, p);
                return [.. sc.Down(o), .. sc.Down(p)];
            });
            Check($"{label} backward", ReductionLimit, sc =>
            {
                var (o, p) = (sc.Poisoned(shape.OutputLength), sc.Poisoned(shape.ProbsLength));
                var q = sc.Up(qkv);
                var (k, v) = (sc.Up(pk), sc.Up(pv));
                sc.B.AttentionForward(shape, maskValue, causal, q, k, v, sc.Up(keyMask), sc.Up(slopes), sc.Up(keyPositions), o, p);
                var (dq, dk, dv) = (sc.Up(Random(shape.QkvLength, 39)), sc.Up(Random(pk.Length, 40)), sc.Up(Random(pv.Length, 41)));
                sc.B.AttentionBackward(shape, sc.Up(dOut), q, k, v, p, dq, dk, dv);
                return [.. sc.Down(dq), .. sc.Down(dk), .. sc.Down(dv)];
            });
        }
        if (mp > 0)
        {
            // Several runs' rows in one batch (inference): two prefixes stacked, examples alternating between them.
            var shape = new AttentionShape(s.Batch, s.Tokens, s.Heads, hd, mp, s.KvHeads);
            var (qkv, pk, pv) = (Random(shape.QkvLength, 42), Random(2 * shape.PrefixElements, 43), Random(2 * shape.PrefixElements, 44));
            var keyMask = Array.ConvertAll(mask, v => (float)v);
            var choice = Enumerable.Range(0, s.Batch).Select(b => b % 2).ToArray();
            Check($"attention causal m={mp} forward, per-example prefix choice (A = 2)", ReductionLimit, sc =>
            {
                var (o, p) = (sc.Poisoned(shape.OutputLength), sc.Poisoned(shape.ProbsLength));
                sc.B.AttentionForward(shape, -10000f, true, sc.Up(qkv), sc.Up(pk), sc.Up(pv), sc.Up(keyMask), default, default, o, p, sc.Up(choice));
                return [.. sc.Down(o), .. sc.Down(p)];
            });
        }

        // The gemm lines above use the tier the planner picks; each tier on its own, at the step's GEMM shapes:
        if (device is GpuBackend gpu) GemmTierCheck.Parity(gpu.Device, s, emit);
    }

    /// <summary>Runs <paramref name="run"/> on both backends and compares; an exception becomes a failing line with its message.</summary>
    public static DeviceCheckLine Compare(Backend cpu, Backend device, string name, double limit, Func<Scope, float[]> run)
    {
        try
        {
            float[] expected, actual;
            using (var sc = new Scope(cpu)) expected = run(sc);
            using (var sc = new Scope(device)) actual = run(sc);
            if (actual.Length != expected.Length) return new DeviceCheckLine(name, double.PositiveInfinity, limit, $"{actual.Length} values, expected {expected.Length}");
            return new DeviceCheckLine(name, DeviceCheck.Normwise(actual, expected), limit);
        }
        catch (Exception e)
        {
            return new DeviceCheckLine(name, double.PositiveInfinity, limit, DeviceCheck.Describe(e));
        }
    }

    /// <summary>The device buffers of one check on one backend, freed together.</summary>
    public sealed class Scope(Backend backend) : IDisposable
    {
        private readonly List<IDisposable> _owned = [];

        /// <summary>The backend the check runs on.</summary>
        public Backend B { get; } = backend;

        /// <summary>A device copy of <paramref name="host"/>.</summary>
        public DeviceView<float> Up(float[] host) => Keep(B.UploadNew(host)).Slice(0, host.Length);

        /// <summary>A device copy of <paramref name="host"/>.</summary>
        public DeviceView<int> Up(int[] host)
        {
            var a = Keep(B.AllocateInts(host.Length));
            B.Upload(host, a.Slice(0, host.Length));
            return a.Slice(0, host.Length);
        }

        /// <summary>An output buffer filled with NaN: every element the kernel should write must be written.</summary>
        public DeviceView<float> Poisoned(int length) => Up(Enumerable.Repeat(float.NaN, length).ToArray());

        /// <summary>The view's contents on the host.</summary>
        public float[] Down(DeviceView<float> view) => B.ToHost(view);

        private T Keep<T>(T owned) where T : IDisposable
        {
            _owned.Add(owned);
            return owned;
        }

        /// <inheritdoc />
        public void Dispose()
        {
            foreach (var o in _owned) o.Dispose();
        }
    }

    private static float[] Random(int n, int seed, float scale = 1f, bool positive = false)
    {
        var rng = new Random(seed);
        var a = new float[n];
        for (int i = 0; i < n; i++) a[i] = (float)(positive ? rng.NextDouble() : rng.NextDouble() * 2 - 1) * scale;
        return a;
    }

    private static int[] Ints(int n, int seed, int below)
    {
        var rng = new Random(seed);
        var a = new int[n];
        for (int i = 0; i < n; i++) a[i] = rng.Next(below);
        return a;
    }
}
