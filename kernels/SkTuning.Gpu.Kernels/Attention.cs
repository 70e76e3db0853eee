using System.Buffers;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace SkTuning.Gpu.Kernels;

/// <summary>
/// Sizes of one SK-Prefix multi-head attention call.
/// </summary>
/// <param name="Batch">B, examples in the batch.</param>
/// <param name="Tokens">T, token positions per example (queries, and token keys).</param>
/// <param name="Heads">H, attention heads.</param>
/// <param name="HeadDim">dh, columns per head; the model width is d = H·dh.</param>
/// <param name="PrefixLength">m, shared prefix keys/values per layer (0 = plain attention).</param>
public readonly record struct AttentionShape(int Batch, int Tokens, int Heads, int HeadDim, int PrefixLength)
{
    /// <summary>d = H·dh.</summary>
    public int Model => Heads * HeadDim;

    /// <summary>S = m + T, keys seen by every query.</summary>
    public int Keys => PrefixLength + Tokens;

    /// <summary>Elements of the fused qkv buffer [B, T, 3d] (and of its gradient).</summary>
    public int QkvLength => Batch * Tokens * 3 * Model;

    /// <summary>Elements of the output [B, T, d] (and of its gradient).</summary>
    public int OutputLength => Batch * Tokens * Model;

    /// <summary>Elements of one prefix buffer [m, d] (keys or values, and their gradients).</summary>
    public int PrefixElements => PrefixLength * Model;

    /// <summary>Elements of the key mask [B, T].</summary>
    public int MaskLength => Batch * Tokens;

    /// <summary>Elements of the saved softmax probabilities P [B, H, T, m+T].</summary>
    public int ProbsLength => Batch * Heads * Tokens * Keys;

    /// <summary>The score scale 1/sqrt(dh).</summary>
    public float Scale => 1f / MathF.Sqrt(HeadDim);
}

/// <summary>
/// Multi-head scaled dot-product attention over a fused qkv buffer with a per-layer key/value prefix
/// shared by the whole batch (SK-Prefix). Keys are [Kp ; K_x], values [Vp ; V_x].
/// </summary>
/// <remarks>
/// <para>Layouts (row-major): qkv [B, T, 3d] with Q = columns 0..d−1, K = d..2d−1, V = 2d..3d−1 and head
/// h = columns h·dh..(h+1)·dh−1 within each; prefixK, prefixV [m, d] (one buffer, read by every example);
/// key mask [B, T] (1 = real token, 0 = padding); out [B, T, d]; P [B, H, T, m+T] with keys ordered
/// prefix first, then tokens.</para>
/// <para>Score of query i and key j: s = (q_i·k_j)/sqrt(dh), plus (1 − mask[b, j])·maskValue for token keys
/// (the BERT additive-mask formula); the prefix is never masked. With <c>causal</c>, query i sees the
/// prefix and token keys j ≤ i only (the others get probability exactly 0).</para>
/// <para>Backward needs only P (saved by the forward, B·H·T·(m+T) floats), not the output: it uses
/// D_i = Σ_j P_ij·dP_ij, which equals rowsum(dO∘O). The prefix gradient is the sum over the batch:
/// on the CPU every (b, h) writes its share into its own slice of a [B, m, d] partial buffer and the
/// partials are added in order b = 0..B−1, so results are deterministic.</para>
/// <para>Precision: the CPU path stores fp32 but computes in fp64 (fp32 inputs widened once per (b, h) into
/// contiguous tiles; scores, softmax, P·V and the gradient products as register-blocked fp64 FMA tiles), which keeps it
/// within 1e-4 of the fp64 reference at T = 64, m = 12. Pure fp32 accumulation was measured at 0.6–1.3e-4 there:
/// fp32 scores/softmax perturb P by ~1e-7 relative, and the P-weighted sums over 64–76 terms round at the level of the
/// 1e-3·max floor of the check. The GPU path accumulates in fp32.</para>
/// </remarks>
public static class Attention
{
    // ---------------------------------------------------------------------------------------------
    // fp64 reference
    // ---------------------------------------------------------------------------------------------

    /// <summary>fp64 reference forward: writes <paramref name="output"/> [B,T,d] and <paramref name="probs"/> [B,H,T,m+T].</summary>
    public static void ForwardReference(double[] qkv, double[] prefixK, double[] prefixV, double[] mask,
        double[] output, double[] probs, AttentionShape shape, double maskValue, bool causal)
    {
        Validate("ForwardReference", shape, qkv.Length, prefixK.Length, prefixV.Length, mask.Length, output.Length, probs.Length);
        int B = shape.Batch, T = shape.Tokens, H = shape.Heads, dh = shape.HeadDim, m = shape.PrefixLength;
        int d = shape.Model, S = shape.Keys;
        double scale = 1.0 / Math.Sqrt(dh);
        var score = new double[S];
        for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++)
        for (int i = 0; i < T; i++)
        {
            int allowed = causal ? m + i + 1 : S;
            double max = double.NegativeInfinity;
            for (int j = 0; j < allowed; j++)
            {
                double dot = 0;
                for (int k = 0; k < dh; k++)
                    dot += qkv[(b * T + i) * 3 * d + h * dh + k] * KeyRef(qkv, prefixK, b, j, h, k, shape);
                score[j] = dot * scale + (j < m ? 0.0 : (1.0 - mask[b * T + j - m]) * maskValue);
                max = Math.Max(max, score[j]);
            }
            double sum = 0;
            for (int j = 0; j < allowed; j++) { score[j] = Math.Exp(score[j] - max); sum += score[j]; }
            for (int j = 0; j < S; j++)
                probs[((b * H + h) * T + i) * S + j] = j < allowed ? score[j] / sum : 0.0;
            for (int k = 0; k < dh; k++)
            {
                double acc = 0;
                for (int j = 0; j < allowed; j++)
                    acc += probs[((b * H + h) * T + i) * S + j] * ValueRef(qkv, prefixV, b, j, h, k, shape);
                output[(b * T + i) * d + h * dh + k] = acc;
            }
        }
    }

    /// <summary>
    /// fp64 reference backward from the saved <paramref name="probs"/>: accumulates (+=) into
    /// <paramref name="dQkv"/> [B,T,3d], <paramref name="dPrefixK"/> and <paramref name="dPrefixV"/> [m,d] (summed over the batch).
    /// </summary>
    public static void BackwardReference(double[] dOut, double[] qkv, double[] prefixK, double[] prefixV, double[] probs,
        double[] dQkv, double[] dPrefixK, double[] dPrefixV, AttentionShape shape)
    {
        ValidateBackward("BackwardReference", shape, dOut.Length, qkv.Length, prefixK.Length, prefixV.Length, probs.Length,
            dQkv.Length, dPrefixK.Length, dPrefixV.Length);
        int B = shape.Batch, T = shape.Tokens, H = shape.Heads, dh = shape.HeadDim, m = shape.PrefixLength;
        int d = shape.Model, S = shape.Keys;
        double scale = 1.0 / Math.Sqrt(dh);
        var dP = new double[S];
        for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++)
        for (int i = 0; i < T; i++)
        {
            int row = ((b * H + h) * T + i) * S;
            double D = 0;
            for (int j = 0; j < S; j++)
            {
                double dp = 0;
                for (int k = 0; k < dh; k++)
                    dp += dOut[(b * T + i) * d + h * dh + k] * ValueRef(qkv, prefixV, b, j, h, k, shape);
                dP[j] = dp;
                D += probs[row + j] * dp;
            }
            for (int j = 0; j < S; j++)
            {
                double p = probs[row + j], dS = p * (dP[j] - D);
                for (int k = 0; k < dh; k++)
                {
                    double q = qkv[(b * T + i) * 3 * d + h * dh + k];
                    double dO = dOut[(b * T + i) * d + h * dh + k];
                    dQkv[(b * T + i) * 3 * d + h * dh + k] += scale * dS * KeyRef(qkv, prefixK, b, j, h, k, shape);
                    if (j < m)
                    {
                        dPrefixK[j * d + h * dh + k] += scale * dS * q;
                        dPrefixV[j * d + h * dh + k] += p * dO;
                    }
                    else
                    {
                        dQkv[(b * T + j - m) * 3 * d + d + h * dh + k] += scale * dS * q;
                        dQkv[(b * T + j - m) * 3 * d + 2 * d + h * dh + k] += p * dO;
                    }
                }
            }
        }
    }

    private static double KeyRef(double[] qkv, double[] prefixK, int b, int j, int h, int k, AttentionShape s) =>
        j < s.PrefixLength
            ? prefixK[j * s.Model + h * s.HeadDim + k]
            : qkv[(b * s.Tokens + j - s.PrefixLength) * 3 * s.Model + s.Model + h * s.HeadDim + k];

    private static double ValueRef(double[] qkv, double[] prefixV, int b, int j, int h, int k, AttentionShape s) =>
        j < s.PrefixLength
            ? prefixV[j * s.Model + h * s.HeadDim + k]
            : qkv[(b * s.Tokens + j - s.PrefixLength) * 3 * s.Model + 2 * s.Model + h * s.HeadDim + k];

    // ---------------------------------------------------------------------------------------------
    // CPU (SIMD + Parallel.For over (b, h))
    // ---------------------------------------------------------------------------------------------

    /// <summary>
    /// CPU forward: overwrites <paramref name="output"/> [B,T,d] and <paramref name="probs"/> [B,H,T,m+T]
    /// (saved for <see cref="Backward"/>). The prefix buffers are read in place by every example.
    /// </summary>
    /// <param name="qkv">Fused projections [B, T, 3d].</param>
    /// <param name="prefixK">Shared prefix keys [m, d] (empty when m = 0).</param>
    /// <param name="prefixV">Shared prefix values [m, d] (empty when m = 0).</param>
    /// <param name="mask">Key mask [B, T]: 1 = real token, 0 = padding.</param>
    /// <param name="output">Attention output [B, T, d].</param>
    /// <param name="probs">Softmax probabilities [B, H, T, m+T], prefix keys first.</param>
    /// <param name="shape">Sizes.</param>
    /// <param name="maskValue">Additive mask value: token key scores get + (1 − mask)·maskValue (e.g. −10000).</param>
    /// <param name="causal">When true query i sees the prefix and token keys j ≤ i only.</param>
    public static unsafe void Forward(ReadOnlySpan<float> qkv, ReadOnlySpan<float> prefixK, ReadOnlySpan<float> prefixV,
        ReadOnlySpan<float> mask, Span<float> output, Span<float> probs, AttentionShape shape, float maskValue, bool causal)
    {
        Validate("Forward", shape, qkv.Length, prefixK.Length, prefixV.Length, mask.Length, output.Length, probs.Length);
        int d = shape.Model, T = shape.Tokens;
        fixed (float* pQkv = qkv, pK = prefixK, pV = prefixV, pMask = mask, pOut = output, pProbs = probs)
        {
            var a = new Sources
            {
                Q = pQkv, QRow = 3 * d, QExample = T * 3 * d,
                PreK = pK, PreV = pV, PreExample = 0,
                TokK = pQkv + d, TokV = pQkv + 2 * d, TokRow = 3 * d, TokExample = T * 3 * d,
            };
            RunForward(a, pMask, pOut, pProbs, shape, maskValue, causal);
        }
    }

    /// <summary>
    /// Baseline for benchmarks only: what the reference PyTorch code does. Copies the prefix B times into
    /// concatenated [B, m+T, d] key and value buffers (allocated per call, 2·B·(m+T)·d floats), then runs
    /// plain attention over them. Same results as <see cref="Forward"/>; slower and bigger.
    /// </summary>
    /// <inheritdoc cref="Forward" path="/param"/>
    public static unsafe void ForwardNaiveConcatenated(ReadOnlySpan<float> qkv, ReadOnlySpan<float> prefixK,
        ReadOnlySpan<float> prefixV, ReadOnlySpan<float> mask, Span<float> output, Span<float> probs, AttentionShape shape,
        float maskValue, bool causal)
    {
        Validate("ForwardNaiveConcatenated", shape, qkv.Length, prefixK.Length, prefixV.Length, mask.Length, output.Length, probs.Length);
        int B = shape.Batch, T = shape.Tokens, m = shape.PrefixLength, d = shape.Model, S = shape.Keys;
        var catK = new float[B * S * d];
        var catV = new float[B * S * d];
        for (int b = 0; b < B; b++)
        {
            prefixK.CopyTo(catK.AsSpan(b * S * d, m * d));
            prefixV.CopyTo(catV.AsSpan(b * S * d, m * d));
            for (int t = 0; t < T; t++)
            {
                qkv.Slice((b * T + t) * 3 * d + d, d).CopyTo(catK.AsSpan((b * S + m + t) * d, d));
                qkv.Slice((b * T + t) * 3 * d + 2 * d, d).CopyTo(catV.AsSpan((b * S + m + t) * d, d));
            }
        }
        fixed (float* pQkv = qkv, pK = catK, pV = catV, pMask = mask, pOut = output, pProbs = probs)
        {
            var a = new Sources
            {
                Q = pQkv, QRow = 3 * d, QExample = T * 3 * d,
                PreK = pK, PreV = pV, PreExample = S * d,
                TokK = pK + m * d, TokV = pV + m * d, TokRow = d, TokExample = S * d,
            };
            RunForward(a, pMask, pOut, pProbs, shape, maskValue, causal);
        }
    }

    /// <summary>
    /// CPU backward from the saved <paramref name="probs"/>: accumulates (+=) into <paramref name="dQkv"/> [B,T,3d],
    /// and into <paramref name="dPrefixK"/>, <paramref name="dPrefixV"/> [m,d] their gradient summed over the batch
    /// (deterministic: per-example partials added in order b = 0..B−1, no atomics).
    /// </summary>
    /// <param name="dOut">Gradient of the output [B, T, d].</param>
    /// <param name="qkv">Fused projections [B, T, 3d] (as given to the forward).</param>
    /// <param name="prefixK">Shared prefix keys [m, d].</param>
    /// <param name="prefixV">Shared prefix values [m, d].</param>
    /// <param name="probs">P [B, H, T, m+T] saved by the forward (encodes mask and causality).</param>
    /// <param name="dQkv">Gradient of qkv [B, T, 3d], accumulated.</param>
    /// <param name="dPrefixK">Gradient of the prefix keys [m, d], accumulated.</param>
    /// <param name="dPrefixV">Gradient of the prefix values [m, d], accumulated.</param>
    /// <param name="shape">Sizes.</param>
    public static unsafe void Backward(ReadOnlySpan<float> dOut, ReadOnlySpan<float> qkv, ReadOnlySpan<float> prefixK,
        ReadOnlySpan<float> prefixV, ReadOnlySpan<float> probs, Span<float> dQkv, Span<float> dPrefixK, Span<float> dPrefixV,
        AttentionShape shape)
    {
        ValidateBackward("Backward", shape, dOut.Length, qkv.Length, prefixK.Length, prefixV.Length, probs.Length,
            dQkv.Length, dPrefixK.Length, dPrefixV.Length);
        int B = shape.Batch, m = shape.PrefixLength, d = shape.Model;
        int partialLength = B * m * d;
        double[]? partials = partialLength > 0 ? ArrayPool<double>.Shared.Rent(2 * partialLength) : null;
        try
        {
            fixed (float* pdO = dOut, pQkv = qkv, pK = prefixK, pV = prefixV, pProbs = probs, pdQkv = dQkv)
            fixed (double* pPart = partials)
            {
                var g = new GradArgs
                {
                    DOut = pdO, Qkv = pQkv, PreK = pK, PreV = pV, Probs = pProbs, DQkv = pdQkv,
                    PartK = pPart, PartV = pPart + partialLength,
                };
                if (Vector512.IsHardwareAccelerated) RunBackward<Simd512, Vector512<double>>(g, shape);
                else if (Vector256.IsHardwareAccelerated) RunBackward<Simd256, Vector256<double>>(g, shape);
                else RunBackward<Simd128, Vector128<double>>(g, shape);
            }
            if (partials is not null)
            {
                // Fixed order b = 0..B-1: the batch sum of the prefix gradient is deterministic.
                for (int e = 0; e < m * d; e++)
                {
                    double sumK = 0, sumV = 0;
                    for (int b = 0; b < B; b++)
                    {
                        sumK += partials[b * m * d + e];
                        sumV += partials[partialLength + b * m * d + e];
                    }
                    dPrefixK[e] = (float)(dPrefixK[e] + sumK);
                    dPrefixV[e] = (float)(dPrefixV[e] + sumV);
                }
            }
        }
        finally
        {
            if (partials is not null) ArrayPool<double>.Shared.Return(partials);
        }
    }

    /// <summary>Where one forward call reads queries, prefix keys/values and token keys/values (row and example strides).</summary>
    private unsafe struct Sources
    {
        public float* Q; public int QRow, QExample;
        public float* PreK, PreV; public int PreExample;
        public float* TokK, TokV; public int TokRow, TokExample;
    }

    /// <summary>Pointers of one backward call.</summary>
    private unsafe struct GradArgs
    {
        public float* DOut, Qkv, PreK, PreV, Probs, DQkv;
        public double* PartK, PartV;
    }

    /// <summary>n rounded up to a multiple of 16 (the padded row length of scratch tiles: whole vectors, 64-byte rows).</summary>
    private static int Pad16(int n) => (n + 15) & ~15;

    /// <summary>Per-thread scratch arena (pinned, reused across calls): one (b, h) item's tiles, 64-byte aligned.</summary>
    [ThreadStatic] private static double[]? t_arena;

    private static unsafe double* Arena(int doubles)
    {
        var arena = t_arena;
        if (arena is null || arena.Length < doubles + 8)
        {
            arena = GC.AllocateArray<double>(doubles + 8, pinned: true);
            t_arena = arena;
        }
        nint p = (nint)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(arena));
        return (double*)((p + 63) & ~(nint)63);
    }

    private static unsafe void RunForward(Sources a, float* mask, float* output, float* probs, AttentionShape shape,
        float maskValue, bool causal)
    {
        if (Vector512.IsHardwareAccelerated) RunForward<Simd512, Vector512<double>>(a, mask, output, probs, shape, maskValue, causal);
        else if (Vector256.IsHardwareAccelerated) RunForward<Simd256, Vector256<double>>(a, mask, output, probs, shape, maskValue, causal);
        else RunForward<Simd128, Vector128<double>>(a, mask, output, probs, shape, maskValue, causal);
    }

    private static unsafe void RunForward<TOps, TD>(Sources a, float* mask, float* output, float* probs, AttentionShape shape,
        float maskValue, bool causal) where TOps : ISimd<TD> where TD : unmanaged
    {
        nint nMask = (nint)mask, nOut = (nint)output, nProbs = (nint)probs;
        int H = shape.Heads;
        Parallel.For(0, shape.Batch * H, bh =>
            ForwardHead<TOps, TD>(bh / H, bh % H, a, (float*)nMask, (float*)nOut, (float*)nProbs, shape, maskValue, causal));
    }

    private static unsafe void RunBackward<TOps, TD>(GradArgs g, AttentionShape shape) where TOps : ISimd<TD> where TD : unmanaged
    {
        int H = shape.Heads;
        Parallel.For(0, shape.Batch * H, bh => BackwardHead<TOps, TD>(bh / H, bh % H, g, shape));
    }

    /// <summary>
    /// One (b, h): gathers Kᵀ [dh, Sp] and V [S, dhp] (prefix rows first; Sp, dhp = S, dh padded to 16 with zeros),
    /// scores = Q·Kᵀ, row softmax with the max shift, O = P·V; all in fp64 register-blocked tiles.
    /// </summary>
    private static unsafe void ForwardHead<TOps, TD>(int b, int h, in Sources a, float* mask, float* output, float* probs,
        AttentionShape shape, float maskValue, bool causal) where TOps : ISimd<TD> where TD : unmanaged
    {
        int T = shape.Tokens, H = shape.Heads, dh = shape.HeadDim, m = shape.PrefixLength, d = shape.Model, S = shape.Keys;
        int Sp = Pad16(S), dhp = Pad16(dh), w = TOps.Count;
        int col = h * dh;
        double* kt = Arena(dh * Sp + S * dhp + T * Sp + T * dhp + 2 * Sp);
        double* v = kt + dh * Sp, sc = v + S * dhp, o = sc + T * Sp, bias = o + T * dhp, maxBias = bias + Sp;

        // Gather this head's keys (transposed) and values, prefix first; the additive key bias and its running max.
        for (int j = 0; j < S; j++)
        {
            float* kr, vr;
            if (j < m)
            {
                kr = a.PreK + b * a.PreExample + j * d + col;
                vr = a.PreV + b * a.PreExample + j * d + col;
                bias[j] = 0;
            }
            else
            {
                kr = a.TokK + b * a.TokExample + (j - m) * a.TokRow + col;
                vr = a.TokV + b * a.TokExample + (j - m) * a.TokRow + col;
                bias[j] = (1f - mask[b * T + j - m]) * maskValue;
            }
            for (int k = 0; k < dh; k++) kt[k * Sp + j] = kr[k];
            WidenPadded(vr, v + j * dhp, dh, dhp);
            maxBias[j] = j == 0 ? bias[0] : Math.Max(maxBias[j - 1], bias[j]);
        }
        for (int j = S; j < Sp; j++) bias[j] = 0;
        if (Sp > S)
            for (int k = 0; k < dh; k++) new Span<double>(kt + k * Sp + S, Sp - S).Clear();

        // Raw scores [T, Sp] = Q·Kᵀ (queries read in place).
        Gemm<TOps, TD, float>(a.Q + b * a.QExample + col, a.QRow, 1, kt, Sp, sc, Sp, T, Sp, dh);

        // t = score·scale + (bias − max bias over the visible keys), −∞ past the visible keys; then t − max t.
        // Shifting by the bias max first keeps the large additive mask terms from swamping real scores (a fully
        // padded row still gets a proper softmax).
        var vScale = TOps.Splat(1.0 / Math.Sqrt(dh));
        for (int i = 0; i < T; i++)
        {
            int allowed = causal ? m + i + 1 : S;
            var vShift = TOps.Splat(maxBias[allowed - 1]);
            double* row = sc + i * Sp;
            var vMax = TOps.Splat(double.NegativeInfinity);
            for (int j = 0; j < Sp; j += w)
            {
                var t = TOps.Fma(TOps.Load(row + j), vScale, TOps.Sub(TOps.Load(bias + j), vShift));
                t = TOps.KeepBelow(t, j, allowed, double.NegativeInfinity);
                TOps.Store(row + j, t);
                vMax = TOps.Max(vMax, t);
            }
            var vC = TOps.Splat(TOps.MaxAcross(vMax));
            var vSum = TOps.Zero;
            for (int j = 0; j < Sp; j += w)
            {
                var e = TOps.ExpNonPositive(TOps.Sub(TOps.Load(row + j), vC));
                TOps.Store(row + j, e);
                vSum = TOps.Add(vSum, e);
            }
            var vInv = TOps.Splat(1.0 / TOps.Sum(vSum));
            for (int j = 0; j < Sp; j += w) TOps.Store(row + j, TOps.Mul(TOps.Load(row + j), vInv));
            NarrowStore(row, probs + (long)((b * H + h) * T + i) * S, S);
        }

        // O [T, dhp] = P·V with the fp64 P.
        Gemm<TOps, TD, double>(sc, Sp, 1, v, dhp, o, dhp, T, dhp, S);
        for (int i = 0; i < T; i++) NarrowStore(o + i * dhp, output + (b * T + i) * d + col, dh);
    }

    /// <summary>
    /// One (b, h): dP = dO·Vᵀ, D_i = Σ_j P_ij·dP_ij, dS = scale·P∘(dP − D), dQ = dS·K, dK = dSᵀ·Q, dV = Pᵀ·dO, all in
    /// fp64 register-blocked tiles. Token rows are added into dQkv; prefix rows go to this item's partial slice.
    /// </summary>
    private static unsafe void BackwardHead<TOps, TD>(int b, int h, in GradArgs g, AttentionShape shape)
        where TOps : ISimd<TD> where TD : unmanaged
    {
        int T = shape.Tokens, H = shape.Heads, dh = shape.HeadDim, m = shape.PrefixLength, d = shape.Model, S = shape.Keys;
        int Sp = Pad16(S), dhp = Pad16(dh), w = TOps.Count;
        int col = h * dh;
        double* vt = Arena(dh * Sp + 2 * T * Sp + 3 * S * dhp + 3 * T * dhp);
        double* pp = vt + dh * Sp, ds = pp + T * Sp, kr = ds + T * Sp, qr = kr + S * dhp, dor = qr + T * dhp,
            dq = dor + T * dhp, dk = dq + T * dhp, dv = dk + S * dhp;

        // Gather: Vᵀ [dh, Sp], K [S, dhp], Q and dO [T, dhp], P [T, Sp] (zero padding).
        for (int j = 0; j < S; j++)
        {
            float* ks = j < m ? g.PreK + j * d + col : g.Qkv + (b * T + j - m) * 3 * d + d + col;
            float* vs = j < m ? g.PreV + j * d + col : g.Qkv + (b * T + j - m) * 3 * d + 2 * d + col;
            WidenPadded(ks, kr + j * dhp, dh, dhp);
            for (int k = 0; k < dh; k++) vt[k * Sp + j] = vs[k];
        }
        if (Sp > S)
            for (int k = 0; k < dh; k++) new Span<double>(vt + k * Sp + S, Sp - S).Clear();
        for (int t = 0; t < T; t++)
        {
            WidenPadded(g.Qkv + (b * T + t) * 3 * d + col, qr + t * dhp, dh, dhp);
            WidenPadded(g.DOut + (b * T + t) * d + col, dor + t * dhp, dh, dhp);
            WidenPadded(g.Probs + (long)((b * H + h) * T + t) * S, pp + t * Sp, S, Sp);
        }

        // dP [T, Sp] = dO·Vᵀ.
        Gemm<TOps, TD, double>(dor, dhp, 1, vt, Sp, ds, Sp, T, Sp, dh);
        // dS = scale·P∘(dP − D) in place (P = 0 in the padding, so it contributes nothing to D).
        var vScale = TOps.Splat(1.0 / Math.Sqrt(dh));
        for (int i = 0; i < T; i++)
        {
            double* p = pp + i * Sp, row = ds + i * Sp;
            var vD = TOps.Zero;
            for (int j = 0; j < Sp; j += w) vD = TOps.Fma(TOps.Load(p + j), TOps.Load(row + j), vD);
            vD = TOps.Splat(TOps.Sum(vD));
            for (int j = 0; j < Sp; j += w)
                TOps.Store(row + j, TOps.Mul(TOps.Mul(TOps.Load(p + j), vScale), TOps.Sub(TOps.Load(row + j), vD)));
        }

        // dQ [T, dhp] = dS·K; dK [S, dhp] = dSᵀ·Q; dV [S, dhp] = Pᵀ·dO (transposed A operands read with strides).
        Gemm<TOps, TD, double>(ds, Sp, 1, kr, dhp, dq, dhp, T, dhp, S);
        Gemm<TOps, TD, double>(ds, 1, Sp, qr, dhp, dk, dhp, S, dhp, T);
        Gemm<TOps, TD, double>(pp, 1, Sp, dor, dhp, dv, dhp, S, dhp, T);

        for (int t = 0; t < T; t++)
        {
            float* r = g.DQkv + (b * T + t) * 3 * d + col;
            AddInto(dq + t * dhp, r, dh);
            AddInto(dk + (m + t) * dhp, r + d, dh);
            AddInto(dv + (m + t) * dhp, r + 2 * d, dh);
        }
        // This (b, h) owns columns col..col+dh of rows j of partial slice b: plain writes, no races.
        for (int j = 0; j < m; j++)
        {
            new ReadOnlySpan<double>(dk + j * dhp, dh).CopyTo(new Span<double>(g.PartK + (b * m + j) * d + col, dh));
            new ReadOnlySpan<double>(dv + j * dhp, dh).CopyTo(new Span<double>(g.PartV + (b * m + j) * d + col, dh));
        }
    }

    /// <summary>dst[0..n) = src widened to fp64, dst[n..padded) = 0.</summary>
    private static unsafe void WidenPadded(float* src, double* dst, int n, int padded)
    {
        int k = 0;
        if (Vector512.IsHardwareAccelerated)
            for (; k + 16 <= n; k += 16)
            {
                var (lo, hi) = Vector512.Widen(Vector512.Load(src + k));
                lo.Store(dst + k);
                hi.Store(dst + k + 8);
            }
        for (; k < n; k++) dst[k] = src[k];
        for (; k < padded; k++) dst[k] = 0;
    }

    /// <summary>dst[0..n) = src rounded to fp32.</summary>
    private static unsafe void NarrowStore(double* src, float* dst, int n)
    {
        int k = 0;
        if (Vector512.IsHardwareAccelerated)
            for (; k + 16 <= n; k += 16)
                Vector512.Narrow(Vector512.Load(src + k), Vector512.Load(src + k + 8)).Store(dst + k);
        for (; k < n; k++) dst[k] = (float)src[k];
    }

    /// <summary>y += x, added in fp64 and rounded once.</summary>
    private static unsafe void AddInto(double* x, float* y, int n)
    {
        int k = 0;
        if (Vector512.IsHardwareAccelerated)
            for (; k + 16 <= n; k += 16)
            {
                var (lo, hi) = Vector512.Widen(Vector512.Load(y + k));
                Vector512.Narrow(lo + Vector512.Load(x + k), hi + Vector512.Load(x + k + 8)).Store(y + k);
            }
        for (; k < n; k++) y[k] = (float)(y[k] + x[k]);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe double Element<TA>(TA* p) where TA : unmanaged =>
        typeof(TA) == typeof(float) ? *(float*)p : *(double*)p;

    /// <summary>
    /// C [M, N] = A [M, K] · B [K, N] in fp64 (FMA), overwriting C. A (fp32 or fp64) is read at a + r·ars + k·aks, so a
    /// transposed or strided operand needs no copy; B and C are row-major fp64 with row strides ldb, ldc. N must be a
    /// multiple of 16. Tiles of 4 rows × 4 (or 2) vectors keep 16 (8) accumulators in registers and load each B row
    /// once per 4 rows of A. Summation order is fixed (k = 0..K−1 per element), so results are deterministic.
    /// </summary>
    private static unsafe void Gemm<TOps, TD, TA>(TA* a, nint ars, nint aks, double* b, nint ldb, double* c, nint ldc,
        int M, int N, int K) where TOps : ISimd<TD> where TD : unmanaged where TA : unmanaged
    {
        int w = TOps.Count, j = 0;
        for (; j + 4 * w <= N; j += 4 * w)
        {
            int i = 0;
            for (; i + 4 <= M; i += 4)
            {
                TA* pa = a + i * ars;
                double* pb = b + j;
                TD c00 = TOps.Zero, c01 = TOps.Zero, c02 = TOps.Zero, c03 = TOps.Zero;
                TD c10 = TOps.Zero, c11 = TOps.Zero, c12 = TOps.Zero, c13 = TOps.Zero;
                TD c20 = TOps.Zero, c21 = TOps.Zero, c22 = TOps.Zero, c23 = TOps.Zero;
                TD c30 = TOps.Zero, c31 = TOps.Zero, c32 = TOps.Zero, c33 = TOps.Zero;
                for (int k = 0; k < K; k++)
                {
                    TD b0 = TOps.Load(pb), b1 = TOps.Load(pb + w), b2 = TOps.Load(pb + 2 * w), b3 = TOps.Load(pb + 3 * w);
                    TD x = TOps.Splat(Element(pa));
                    c00 = TOps.Fma(x, b0, c00); c01 = TOps.Fma(x, b1, c01); c02 = TOps.Fma(x, b2, c02); c03 = TOps.Fma(x, b3, c03);
                    x = TOps.Splat(Element(pa + ars));
                    c10 = TOps.Fma(x, b0, c10); c11 = TOps.Fma(x, b1, c11); c12 = TOps.Fma(x, b2, c12); c13 = TOps.Fma(x, b3, c13);
                    x = TOps.Splat(Element(pa + 2 * ars));
                    c20 = TOps.Fma(x, b0, c20); c21 = TOps.Fma(x, b1, c21); c22 = TOps.Fma(x, b2, c22); c23 = TOps.Fma(x, b3, c23);
                    x = TOps.Splat(Element(pa + 3 * ars));
                    c30 = TOps.Fma(x, b0, c30); c31 = TOps.Fma(x, b1, c31); c32 = TOps.Fma(x, b2, c32); c33 = TOps.Fma(x, b3, c33);
                    pa += aks; pb += ldb;
                }
                double* pc = c + i * ldc + j;
                TOps.Store(pc, c00); TOps.Store(pc + w, c01); TOps.Store(pc + 2 * w, c02); TOps.Store(pc + 3 * w, c03); pc += ldc;
                TOps.Store(pc, c10); TOps.Store(pc + w, c11); TOps.Store(pc + 2 * w, c12); TOps.Store(pc + 3 * w, c13); pc += ldc;
                TOps.Store(pc, c20); TOps.Store(pc + w, c21); TOps.Store(pc + 2 * w, c22); TOps.Store(pc + 3 * w, c23); pc += ldc;
                TOps.Store(pc, c30); TOps.Store(pc + w, c31); TOps.Store(pc + 2 * w, c32); TOps.Store(pc + 3 * w, c33);
            }
            for (; i < M; i++)
            {
                TA* pa = a + i * ars;
                double* pb = b + j;
                TD c0 = TOps.Zero, c1 = TOps.Zero, c2 = TOps.Zero, c3 = TOps.Zero;
                for (int k = 0; k < K; k++)
                {
                    TD x = TOps.Splat(Element(pa));
                    c0 = TOps.Fma(x, TOps.Load(pb), c0); c1 = TOps.Fma(x, TOps.Load(pb + w), c1);
                    c2 = TOps.Fma(x, TOps.Load(pb + 2 * w), c2); c3 = TOps.Fma(x, TOps.Load(pb + 3 * w), c3);
                    pa += aks; pb += ldb;
                }
                double* pc = c + i * ldc + j;
                TOps.Store(pc, c0); TOps.Store(pc + w, c1); TOps.Store(pc + 2 * w, c2); TOps.Store(pc + 3 * w, c3);
            }
        }
        for (; j < N; j += 2 * w)
        {
            int i = 0;
            for (; i + 4 <= M; i += 4)
            {
                TA* pa = a + i * ars;
                double* pb = b + j;
                TD c00 = TOps.Zero, c01 = TOps.Zero, c10 = TOps.Zero, c11 = TOps.Zero;
                TD c20 = TOps.Zero, c21 = TOps.Zero, c30 = TOps.Zero, c31 = TOps.Zero;
                for (int k = 0; k < K; k++)
                {
                    TD b0 = TOps.Load(pb), b1 = TOps.Load(pb + w);
                    TD x = TOps.Splat(Element(pa));
                    c00 = TOps.Fma(x, b0, c00); c01 = TOps.Fma(x, b1, c01);
                    x = TOps.Splat(Element(pa + ars));
                    c10 = TOps.Fma(x, b0, c10); c11 = TOps.Fma(x, b1, c11);
                    x = TOps.Splat(Element(pa + 2 * ars));
                    c20 = TOps.Fma(x, b0, c20); c21 = TOps.Fma(x, b1, c21);
                    x = TOps.Splat(Element(pa + 3 * ars));
                    c30 = TOps.Fma(x, b0, c30); c31 = TOps.Fma(x, b1, c31);
                    pa += aks; pb += ldb;
                }
                double* pc = c + i * ldc + j;
                TOps.Store(pc, c00); TOps.Store(pc + w, c01); pc += ldc;
                TOps.Store(pc, c10); TOps.Store(pc + w, c11); pc += ldc;
                TOps.Store(pc, c20); TOps.Store(pc + w, c21); pc += ldc;
                TOps.Store(pc, c30); TOps.Store(pc + w, c31);
            }
            for (; i < M; i++)
            {
                TA* pa = a + i * ars;
                double* pb = b + j;
                TD c0 = TOps.Zero, c1 = TOps.Zero;
                for (int k = 0; k < K; k++)
                {
                    TD x = TOps.Splat(Element(pa));
                    c0 = TOps.Fma(x, TOps.Load(pb), c0); c1 = TOps.Fma(x, TOps.Load(pb + w), c1);
                    pa += aks; pb += ldb;
                }
                TOps.Store(c + i * ldc + j, c0); TOps.Store(c + i * ldc + j + w, c1);
            }
        }
    }

    // e^x = 2^n·e^r, n = round(x·log2 e), r = x − n·ln 2 (Cody–Waite split, |r| ≤ ln2/2), e^r by its degree-12 Taylor
    // polynomial (truncation error < 2e-16 relative). TensorPrimitives.Exp(double) is several times slower here, most of
    // all on the masked −10000 / −∞ scores, which take its scalar fix-up path.
    private const double ExpLog2E = 1.4426950408889634, ExpLn2Hi = 6.93147180369123816490e-01, ExpLn2Lo = 1.90821492927058770002e-10;
    private const double ExpC3 = 1.0 / 6, ExpC4 = 1.0 / 24, ExpC5 = 1.0 / 120, ExpC6 = 1.0 / 720, ExpC7 = 1.0 / 5040,
        ExpC8 = 1.0 / 40320, ExpC9 = 1.0 / 362880, ExpC10 = 1.0 / 3628800, ExpC11 = 1.0 / 39916800, ExpC12 = 1.0 / 479001600;

    /// <summary>The few fp64 vector operations the CPU tiles need, for one vector width (JIT-specialized per struct).</summary>
    private unsafe interface ISimd<TD> where TD : unmanaged
    {
        /// <summary>Lanes; 16 must be a multiple of 2·Count.</summary>
        static abstract int Count { get; }
        static abstract TD Zero { get; }
        static abstract TD Load(double* p);
        static abstract void Store(double* p, TD v);
        static abstract TD Splat(double x);
        /// <summary>a·b + c, one rounding.</summary>
        static abstract TD Fma(TD a, TD b, TD c);
        static abstract TD Add(TD a, TD b);
        static abstract TD Sub(TD a, TD b);
        static abstract TD Mul(TD a, TD b);
        static abstract TD Max(TD a, TD b);
        /// <summary>Lanes whose index first + lane is below limit keep v, the others become fill.</summary>
        static abstract TD KeepBelow(TD v, int first, int limit, double fill);
        static abstract double Sum(TD v);
        static abstract double MaxAcross(TD v);
        /// <summary>e^x for x ≤ 0 (−∞ allowed), ~1 ulp; results below e^−708 are flushed to 0.</summary>
        static abstract TD ExpNonPositive(TD x);
    }

    private readonly unsafe struct Simd512 : ISimd<Vector512<double>>
    {
        public static int Count => Vector512<double>.Count;
        public static Vector512<double> Zero => Vector512<double>.Zero;
        [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<double> Load(double* p) => Vector512.Load(p);
        [MethodImpl(MethodImplOptions.AggressiveInlining)] public static void Store(double* p, Vector512<double> v) => v.Store(p);
        [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<double> Splat(double x) => Vector512.Create(x);
        [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<double> Fma(Vector512<double> a, Vector512<double> b, Vector512<double> c) => Vector512.FusedMultiplyAdd(a, b, c);
        [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<double> Add(Vector512<double> a, Vector512<double> b) => a + b;
        [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<double> Sub(Vector512<double> a, Vector512<double> b) => a - b;
        [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<double> Mul(Vector512<double> a, Vector512<double> b) => a * b;
        [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<double> Max(Vector512<double> a, Vector512<double> b) => Vector512.Max(a, b);
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector512<double> KeepBelow(Vector512<double> v, int first, int limit, double fill) =>
            Vector512.ConditionalSelect(Vector512.LessThan(Vector512<long>.Indices + Vector512.Create((long)first), Vector512.Create((long)limit)).AsDouble(),
                v, Vector512.Create(fill));
        [MethodImpl(MethodImplOptions.AggressiveInlining)] public static double Sum(Vector512<double> v) => Vector512.Sum(v);
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector512<double> ExpNonPositive(Vector512<double> x)
        {
            x = Vector512.Max(x, Vector512.Create(-745.0));
            var n = Vector512.Round(x * Vector512.Create(ExpLog2E));
            var r = Vector512.FusedMultiplyAdd(n, Vector512.Create(-ExpLn2Hi), x);
            r = Vector512.FusedMultiplyAdd(n, Vector512.Create(-ExpLn2Lo), r);
            var p = Vector512.Create(ExpC12);
            p = Vector512.FusedMultiplyAdd(p, r, Vector512.Create(ExpC11));
            p = Vector512.FusedMultiplyAdd(p, r, Vector512.Create(ExpC10));
            p = Vector512.FusedMultiplyAdd(p, r, Vector512.Create(ExpC9));
            p = Vector512.FusedMultiplyAdd(p, r, Vector512.Create(ExpC8));
            p = Vector512.FusedMultiplyAdd(p, r, Vector512.Create(ExpC7));
            p = Vector512.FusedMultiplyAdd(p, r, Vector512.Create(ExpC6));
            p = Vector512.FusedMultiplyAdd(p, r, Vector512.Create(ExpC5));
            p = Vector512.FusedMultiplyAdd(p, r, Vector512.Create(ExpC4));
            p = Vector512.FusedMultiplyAdd(p, r, Vector512.Create(ExpC3));
            p = Vector512.FusedMultiplyAdd(p, r, Vector512.Create(0.5));
            p = Vector512.FusedMultiplyAdd(p, r, Vector512.Create(1.0));
            p = Vector512.FusedMultiplyAdd(p, r, Vector512.Create(1.0));
            var scale = Vector512.ShiftLeft(Vector512.ConvertToInt64(n) + Vector512.Create(1023L), 52).AsDouble();
            return Vector512.ConditionalSelect(Vector512.LessThan(x, Vector512.Create(-708.0)), Vector512<double>.Zero, p * scale);
        }
        [MethodImpl(MethodImplOptions.AggressiveInlining)] public static double MaxAcross(Vector512<double> v) => Simd256.MaxAcross(Vector256.Max(v.GetLower(), v.GetUpper()));
    }

    private readonly unsafe struct Simd256 : ISimd<Vector256<double>>
    {
        public static int Count => Vector256<double>.Count;
        public static Vector256<double> Zero => Vector256<double>.Zero;
        [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<double> Load(double* p) => Vector256.Load(p);
        [MethodImpl(MethodImplOptions.AggressiveInlining)] public static void Store(double* p, Vector256<double> v) => v.Store(p);
        [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<double> Splat(double x) => Vector256.Create(x);
        [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<double> Fma(Vector256<double> a, Vector256<double> b, Vector256<double> c) => Vector256.FusedMultiplyAdd(a, b, c);
        [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<double> Add(Vector256<double> a, Vector256<double> b) => a + b;
        [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<double> Sub(Vector256<double> a, Vector256<double> b) => a - b;
        [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<double> Mul(Vector256<double> a, Vector256<double> b) => a * b;
        [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<double> Max(Vector256<double> a, Vector256<double> b) => Vector256.Max(a, b);
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<double> KeepBelow(Vector256<double> v, int first, int limit, double fill) =>
            Vector256.ConditionalSelect(Vector256.LessThan(Vector256<long>.Indices + Vector256.Create((long)first), Vector256.Create((long)limit)).AsDouble(),
                v, Vector256.Create(fill));
        [MethodImpl(MethodImplOptions.AggressiveInlining)] public static double Sum(Vector256<double> v) => Vector256.Sum(v);
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<double> ExpNonPositive(Vector256<double> x)
        {
            x = Vector256.Max(x, Vector256.Create(-745.0));
            var n = Vector256.Round(x * Vector256.Create(ExpLog2E));
            var r = Vector256.FusedMultiplyAdd(n, Vector256.Create(-ExpLn2Hi), x);
            r = Vector256.FusedMultiplyAdd(n, Vector256.Create(-ExpLn2Lo), r);
            var p = Vector256.Create(ExpC12);
            p = Vector256.FusedMultiplyAdd(p, r, Vector256.Create(ExpC11));
            p = Vector256.FusedMultiplyAdd(p, r, Vector256.Create(ExpC10));
            p = Vector256.FusedMultiplyAdd(p, r, Vector256.Create(ExpC9));
            p = Vector256.FusedMultiplyAdd(p, r, Vector256.Create(ExpC8));
            p = Vector256.FusedMultiplyAdd(p, r, Vector256.Create(ExpC7));
            p = Vector256.FusedMultiplyAdd(p, r, Vector256.Create(ExpC6));
            p = Vector256.FusedMultiplyAdd(p, r, Vector256.Create(ExpC5));
            p = Vector256.FusedMultiplyAdd(p, r, Vector256.Create(ExpC4));
            p = Vector256.FusedMultiplyAdd(p, r, Vector256.Create(ExpC3));
            p = Vector256.FusedMultiplyAdd(p, r, Vector256.Create(0.5));
            p = Vector256.FusedMultiplyAdd(p, r, Vector256.Create(1.0));
            p = Vector256.FusedMultiplyAdd(p, r, Vector256.Create(1.0));
            var scale = Vector256.ShiftLeft(Vector256.ConvertToInt64(n) + Vector256.Create(1023L), 52).AsDouble();
            return Vector256.ConditionalSelect(Vector256.LessThan(x, Vector256.Create(-708.0)), Vector256<double>.Zero, p * scale);
        }
        [MethodImpl(MethodImplOptions.AggressiveInlining)] public static double MaxAcross(Vector256<double> v) => Simd128.MaxAcross(Vector128.Max(v.GetLower(), v.GetUpper()));
    }

    private readonly unsafe struct Simd128 : ISimd<Vector128<double>>
    {
        public static int Count => Vector128<double>.Count;
        public static Vector128<double> Zero => Vector128<double>.Zero;
        [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector128<double> Load(double* p) => Vector128.Load(p);
        [MethodImpl(MethodImplOptions.AggressiveInlining)] public static void Store(double* p, Vector128<double> v) => v.Store(p);
        [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector128<double> Splat(double x) => Vector128.Create(x);
        [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector128<double> Fma(Vector128<double> a, Vector128<double> b, Vector128<double> c) => Vector128.FusedMultiplyAdd(a, b, c);
        [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector128<double> Add(Vector128<double> a, Vector128<double> b) => a + b;
        [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector128<double> Sub(Vector128<double> a, Vector128<double> b) => a - b;
        [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector128<double> Mul(Vector128<double> a, Vector128<double> b) => a * b;
        [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector128<double> Max(Vector128<double> a, Vector128<double> b) => Vector128.Max(a, b);
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector128<double> KeepBelow(Vector128<double> v, int first, int limit, double fill) =>
            Vector128.ConditionalSelect(Vector128.LessThan(Vector128<long>.Indices + Vector128.Create((long)first), Vector128.Create((long)limit)).AsDouble(),
                v, Vector128.Create(fill));
        [MethodImpl(MethodImplOptions.AggressiveInlining)] public static double Sum(Vector128<double> v) => Vector128.Sum(v);
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector128<double> ExpNonPositive(Vector128<double> x)
        {
            x = Vector128.Max(x, Vector128.Create(-745.0));
            var n = Vector128.Round(x * Vector128.Create(ExpLog2E));
            var r = Vector128.FusedMultiplyAdd(n, Vector128.Create(-ExpLn2Hi), x);
            r = Vector128.FusedMultiplyAdd(n, Vector128.Create(-ExpLn2Lo), r);
            var p = Vector128.Create(ExpC12);
            p = Vector128.FusedMultiplyAdd(p, r, Vector128.Create(ExpC11));
            p = Vector128.FusedMultiplyAdd(p, r, Vector128.Create(ExpC10));
            p = Vector128.FusedMultiplyAdd(p, r, Vector128.Create(ExpC9));
            p = Vector128.FusedMultiplyAdd(p, r, Vector128.Create(ExpC8));
            p = Vector128.FusedMultiplyAdd(p, r, Vector128.Create(ExpC7));
            p = Vector128.FusedMultiplyAdd(p, r, Vector128.Create(ExpC6));
            p = Vector128.FusedMultiplyAdd(p, r, Vector128.Create(ExpC5));
            p = Vector128.FusedMultiplyAdd(p, r, Vector128.Create(ExpC4));
            p = Vector128.FusedMultiplyAdd(p, r, Vector128.Create(ExpC3));
            p = Vector128.FusedMultiplyAdd(p, r, Vector128.Create(0.5));
            p = Vector128.FusedMultiplyAdd(p, r, Vector128.Create(1.0));
            p = Vector128.FusedMultiplyAdd(p, r, Vector128.Create(1.0));
            var scale = Vector128.ShiftLeft(Vector128.ConvertToInt64(n) + Vector128.Create(1023L), 52).AsDouble();
            return Vector128.ConditionalSelect(Vector128.LessThan(x, Vector128.Create(-708.0)), Vector128<double>.Zero, p * scale);
        }
        [MethodImpl(MethodImplOptions.AggressiveInlining)] public static double MaxAcross(Vector128<double> v) => Math.Max(v.GetElement(0), v.GetElement(1));
    }

    // ---------------------------------------------------------------------------------------------
    // Size validation
    // ---------------------------------------------------------------------------------------------

    internal static void ValidateShape(string method, AttentionShape s)
    {
        if (s.Batch < 1 || s.Tokens < 1 || s.Heads < 1 || s.HeadDim < 1 || s.PrefixLength < 0)
            throw new ArgumentException(
                $"{method}: bad shape B={s.Batch}, T={s.Tokens}, H={s.Heads}, dh={s.HeadDim}, m={s.PrefixLength} " +
                "(B, T, H, dh must be ≥ 1 and m ≥ 0)");
        long qkv = (long)s.Batch * s.Tokens * 3 * s.Heads * s.HeadDim;
        long probs = (long)s.Batch * s.Heads * s.Tokens * ((long)s.PrefixLength + s.Tokens);
        if (qkv > int.MaxValue || probs > int.MaxValue)
            throw new ArgumentException($"{method}: shape B={s.Batch}, T={s.Tokens}, H={s.Heads}, dh={s.HeadDim}, m={s.PrefixLength} " +
                $"needs {Math.Max(qkv, probs)} elements in one buffer, more than int.MaxValue");
    }

    internal static void CheckLength(string method, string name, int actual, int expected, string formula)
    {
        if (actual != expected)
            throw new ArgumentException($"{method}: {name} has {actual} elements, expected {formula} = {expected}");
    }

    private static void Validate(string method, AttentionShape s, int qkv, int prefixK, int prefixV, int mask, int output, int probs)
    {
        method = "Attention." + method;
        ValidateShape(method, s);
        CheckLength(method, "qkv", qkv, s.QkvLength, "B*T*3d");
        CheckLength(method, "prefixK", prefixK, s.PrefixElements, "m*d");
        CheckLength(method, "prefixV", prefixV, s.PrefixElements, "m*d");
        CheckLength(method, "mask", mask, s.MaskLength, "B*T");
        CheckLength(method, "output", output, s.OutputLength, "B*T*d");
        CheckLength(method, "probs", probs, s.ProbsLength, "B*H*T*(m+T)");
    }

    private static void ValidateBackward(string method, AttentionShape s, int dOut, int qkv, int prefixK, int prefixV, int probs,
        int dQkv, int dPrefixK, int dPrefixV)
    {
        method = "Attention." + method;
        ValidateShape(method, s);
        CheckLength(method, "dOut", dOut, s.OutputLength, "B*T*d");
        CheckLength(method, "qkv", qkv, s.QkvLength, "B*T*3d");
        CheckLength(method, "prefixK", prefixK, s.PrefixElements, "m*d");
        CheckLength(method, "prefixV", prefixV, s.PrefixElements, "m*d");
        CheckLength(method, "probs", probs, s.ProbsLength, "B*H*T*(m+T)");
        CheckLength(method, "dQkv", dQkv, s.QkvLength, "B*T*3d");
        CheckLength(method, "dPrefixK", dPrefixK, s.PrefixElements, "m*d");
        CheckLength(method, "dPrefixV", dPrefixV, s.PrefixElements, "m*d");
    }
}
