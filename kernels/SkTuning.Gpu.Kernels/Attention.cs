using System.Buffers;
using System.Numerics.Tensors;
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
/// <para>Precision: the CPU path stores fp32 but accumulates in fp64 (widened SIMD: scores, softmax, P·V and the
/// gradient sums), which keeps it within 1e-4 of the fp64 reference at T = 64, m = 12 where fp32 sums over ~76
/// keys / 128 batch·query terms with cancellation do not; the GPU path accumulates in fp32.</para>
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
        int B = shape.Batch, H = shape.Heads, m = shape.PrefixLength, d = shape.Model;
        int partialLength = B * m * d;
        double[]? partials = partialLength > 0 ? ArrayPool<double>.Shared.Rent(2 * partialLength) : null;
        try
        {
            fixed (float* pdO = dOut, pQkv = qkv, pK = prefixK, pV = prefixV, pProbs = probs, pdQkv = dQkv)
            fixed (double* pPart = partials)
            {
                nint ndO = (nint)pdO, nQkv = (nint)pQkv, nK = (nint)pK, nV = (nint)pV, nProbs = (nint)pProbs,
                    ndQkv = (nint)pdQkv, nPart = (nint)pPart;
                Parallel.For(0, B * H, () => new Scratch(shape), (bh, _, s) =>
                {
                    BackwardHead(bh / H, bh % H, (float*)ndO, (float*)nQkv, (float*)nK, (float*)nV, (float*)nProbs,
                        (float*)ndQkv, (double*)nPart, (double*)nPart + partialLength, shape, s);
                    return s;
                }, _ => { });
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

    /// <summary>Per-thread buffers: one head's keys/values/queries gathered contiguously.</summary>
    private sealed class Scratch(AttentionShape s)
    {
        public readonly float[] K = new float[s.Keys * s.HeadDim];
        public readonly float[] V = new float[s.Keys * s.HeadDim];
        public readonly float[] Q = new float[s.Tokens * s.HeadDim];
        public readonly float[] DO = new float[s.Tokens * s.HeadDim];
        public readonly double[] DQ = new double[s.Tokens * s.HeadDim];
        public readonly double[] DK = new double[s.Keys * s.HeadDim];
        public readonly double[] DV = new double[s.Keys * s.HeadDim];
        public readonly double[] Acc = new double[s.HeadDim];
        public readonly float[] Bias = new float[s.Keys];
        public readonly double[] Score = new double[s.Keys];
    }

    private static unsafe void RunForward(Sources a, float* mask, float* output, float* probs, AttentionShape shape,
        float maskValue, bool causal)
    {
        nint nMask = (nint)mask, nOut = (nint)output, nProbs = (nint)probs;
        int H = shape.Heads;
        Parallel.For(0, shape.Batch * H, () => new Scratch(shape), (bh, _, s) =>
        {
            ForwardHead(bh / H, bh % H, a, (float*)nMask, (float*)nOut, (float*)nProbs, shape, maskValue, causal, s);
            return s;
        }, _ => { });
    }

    private static unsafe void ForwardHead(int b, int h, in Sources a, float* mask, float* output, float* probs,
        AttentionShape shape, float maskValue, bool causal, Scratch s)
    {
        int T = shape.Tokens, H = shape.Heads, dh = shape.HeadDim, m = shape.PrefixLength, d = shape.Model, S = shape.Keys;
        double scale = 1.0 / Math.Sqrt(dh);
        int col = h * dh;
        // Gather this head's keys and values (prefix first) contiguously: [S, dh].
        for (int j = 0; j < m; j++)
        {
            new ReadOnlySpan<float>(a.PreK + b * a.PreExample + j * d + col, dh).CopyTo(s.K.AsSpan(j * dh, dh));
            new ReadOnlySpan<float>(a.PreV + b * a.PreExample + j * d + col, dh).CopyTo(s.V.AsSpan(j * dh, dh));
            s.Bias[j] = 0f;
        }
        for (int t = 0; t < T; t++)
        {
            new ReadOnlySpan<float>(a.TokK + b * a.TokExample + t * a.TokRow + col, dh).CopyTo(s.K.AsSpan((m + t) * dh, dh));
            new ReadOnlySpan<float>(a.TokV + b * a.TokExample + t * a.TokRow + col, dh).CopyTo(s.V.AsSpan((m + t) * dh, dh));
            s.Bias[m + t] = (1f - mask[b * T + t]) * maskValue;
        }
        for (int i = 0; i < T; i++)
        {
            var q = new ReadOnlySpan<float>(a.Q + b * a.QExample + i * a.QRow + col, dh);
            var p = new Span<float>(probs + (long)((b * H + h) * T + i) * S, S);
            int allowed = causal ? m + i + 1 : S;
            // Scores and softmax in fp64 (widened SIMD dots), P stored in fp32: fp32 scores alone would limit P to
            // ~3e-7 relative error. Shift by max(bias) + max(score + bias − max(bias)) so the large additive mask
            // terms never swamp real scores (a fully padded row still gets a proper softmax).
            var row = s.Score.AsSpan(0, allowed);
            var bias = s.Bias.AsSpan(0, allowed);
            double maxBias = TensorPrimitives.Max(bias), c = double.NegativeInfinity;
            for (int j = 0; j < allowed; j++)
            {
                row[j] = DotWide(q, s.K.AsSpan(j * dh, dh)) * scale;
                c = Math.Max(c, row[j] + (bias[j] - maxBias));
            }
            for (int j = 0; j < allowed; j++) row[j] = row[j] - c + (bias[j] - maxBias);
            TensorPrimitives.Exp(row, row);
            double inv = 1.0 / TensorPrimitives.Sum<double>(row);
            for (int j = 0; j < allowed; j++) p[j] = (float)(row[j] * inv);
            p[allowed..].Clear();
            var acc = s.Acc.AsSpan();
            acc.Clear();
            for (int j = 0; j < allowed; j++) AxpyWide(row[j] * inv, s.V.AsSpan(j * dh, dh), acc);
            var o = new Span<float>(output + (b * T + i) * d + col, dh);
            for (int k = 0; k < dh; k++) o[k] = (float)acc[k];
        }
    }

    private static unsafe void BackwardHead(int b, int h, float* dOut, float* qkv, float* prefixK, float* prefixV, float* probs,
        float* dQkv, double* partialK, double* partialV, AttentionShape shape, Scratch s)
    {
        int T = shape.Tokens, H = shape.Heads, dh = shape.HeadDim, m = shape.PrefixLength, d = shape.Model, S = shape.Keys;
        double scale = 1.0 / Math.Sqrt(dh);
        int col = h * dh;
        for (int j = 0; j < m; j++)
        {
            new ReadOnlySpan<float>(prefixK + j * d + col, dh).CopyTo(s.K.AsSpan(j * dh, dh));
            new ReadOnlySpan<float>(prefixV + j * d + col, dh).CopyTo(s.V.AsSpan(j * dh, dh));
        }
        for (int t = 0; t < T; t++)
        {
            float* r = qkv + (b * T + t) * 3 * d + col;
            new ReadOnlySpan<float>(r, dh).CopyTo(s.Q.AsSpan(t * dh, dh));
            new ReadOnlySpan<float>(r + d, dh).CopyTo(s.K.AsSpan((m + t) * dh, dh));
            new ReadOnlySpan<float>(r + 2 * d, dh).CopyTo(s.V.AsSpan((m + t) * dh, dh));
            new ReadOnlySpan<float>(dOut + (b * T + t) * d + col, dh).CopyTo(s.DO.AsSpan(t * dh, dh));
        }
        s.DQ.AsSpan().Clear();
        s.DK.AsSpan().Clear();
        s.DV.AsSpan().Clear();
        var dP = s.Score.AsSpan(0, S);
        for (int i = 0; i < T; i++)
        {
            var p = new ReadOnlySpan<float>(probs + (long)((b * H + h) * T + i) * S, S);
            var dO = s.DO.AsSpan(i * dh, dh);
            var q = s.Q.AsSpan(i * dh, dh);
            double D = 0;
            for (int j = 0; j < S; j++)
            {
                // P = 0 exactly (causal cut, fully masked key): dS = 0 and no dV contribution.
                double dp = p[j] == 0f ? 0 : DotWide(dO, s.V.AsSpan(j * dh, dh));
                dP[j] = dp;
                D += p[j] * dp;
            }
            var dq = s.DQ.AsSpan(i * dh, dh);
            for (int j = 0; j < S; j++)
            {
                float pj = p[j];
                if (pj == 0f) continue;
                double dS = scale * pj * (dP[j] - D);
                AxpyWide(dS, s.K.AsSpan(j * dh, dh), dq);
                AxpyWide(dS, q, s.DK.AsSpan(j * dh, dh));
                AxpyWide(pj, dO, s.DV.AsSpan(j * dh, dh));
            }
        }
        for (int t = 0; t < T; t++)
        {
            float* r = dQkv + (b * T + t) * 3 * d + col;
            AddInto(s.DQ.AsSpan(t * dh, dh), new Span<float>(r, dh));
            AddInto(s.DK.AsSpan((m + t) * dh, dh), new Span<float>(r + d, dh));
            AddInto(s.DV.AsSpan((m + t) * dh, dh), new Span<float>(r + 2 * d, dh));
        }
        // This (b, h) owns columns col..col+dh of rows j of partial slice b: plain writes, no races.
        for (int j = 0; j < m; j++)
        {
            s.DK.AsSpan(j * dh, dh).CopyTo(new Span<double>(partialK + (b * m + j) * d + col, dh));
            s.DV.AsSpan(j * dh, dh).CopyTo(new Span<double>(partialV + (b * m + j) * d + col, dh));
        }
    }

    /// <summary>Σ x·y accumulated in fp64 (fp32 inputs widened, Vector512 / Vector256 lanes, scalar tail).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static double DotWide(ReadOnlySpan<float> x, ReadOnlySpan<float> y)
    {
        int n = x.Length, k = 0;
        ref float rx = ref MemoryMarshal.GetReference(x);
        ref float ry = ref MemoryMarshal.GetReference(y);
        double sum = 0;
        if (Vector512.IsHardwareAccelerated && n >= 16)
        {
            var acc = Vector512<double>.Zero;
            for (; k <= n - 16; k += 16)
            {
                var (xl, xu) = Vector512.Widen(Vector512.LoadUnsafe(ref rx, (nuint)k));
                var (yl, yu) = Vector512.Widen(Vector512.LoadUnsafe(ref ry, (nuint)k));
                acc = Vector512.FusedMultiplyAdd(xl, yl, acc);
                acc = Vector512.FusedMultiplyAdd(xu, yu, acc);
            }
            sum = Vector512.Sum(acc);
        }
        else if (Vector256.IsHardwareAccelerated && n >= 8)
        {
            var acc = Vector256<double>.Zero;
            for (; k <= n - 8; k += 8)
            {
                var (xl, xu) = Vector256.Widen(Vector256.LoadUnsafe(ref rx, (nuint)k));
                var (yl, yu) = Vector256.Widen(Vector256.LoadUnsafe(ref ry, (nuint)k));
                acc = Vector256.FusedMultiplyAdd(xl, yl, acc);
                acc = Vector256.FusedMultiplyAdd(xu, yu, acc);
            }
            sum = Vector256.Sum(acc);
        }
        for (; k < n; k++) sum += (double)Unsafe.Add(ref rx, k) * Unsafe.Add(ref ry, k);
        return sum;
    }

    /// <summary>y += a·x in fp64 (x widened from fp32; Vector512 / Vector256 FMA lanes, scalar tail).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void AxpyWide(double a, ReadOnlySpan<float> x, Span<double> y)
    {
        int n = x.Length, k = 0;
        ref float rx = ref MemoryMarshal.GetReference(x);
        ref double ry = ref MemoryMarshal.GetReference(y);
        if (Vector512.IsHardwareAccelerated)
        {
            var va = Vector512.Create(a);
            for (; k <= n - 16; k += 16)
            {
                var (xl, xu) = Vector512.Widen(Vector512.LoadUnsafe(ref rx, (nuint)k));
                Vector512.FusedMultiplyAdd(va, xl, Vector512.LoadUnsafe(ref ry, (nuint)k)).StoreUnsafe(ref ry, (nuint)k);
                Vector512.FusedMultiplyAdd(va, xu, Vector512.LoadUnsafe(ref ry, (nuint)(k + 8))).StoreUnsafe(ref ry, (nuint)(k + 8));
            }
        }
        if (Vector256.IsHardwareAccelerated)
        {
            var va = Vector256.Create(a);
            for (; k <= n - 8; k += 8)
            {
                var (xl, xu) = Vector256.Widen(Vector256.LoadUnsafe(ref rx, (nuint)k));
                Vector256.FusedMultiplyAdd(va, xl, Vector256.LoadUnsafe(ref ry, (nuint)k)).StoreUnsafe(ref ry, (nuint)k);
                Vector256.FusedMultiplyAdd(va, xu, Vector256.LoadUnsafe(ref ry, (nuint)(k + 4))).StoreUnsafe(ref ry, (nuint)(k + 4));
            }
        }
        for (; k < n; k++) Unsafe.Add(ref ry, k) += a * Unsafe.Add(ref rx, k);
    }

    private static void AddInto(ReadOnlySpan<double> x, Span<float> y)
    {
        for (int k = 0; k < y.Length; k++) y[k] = (float)(y[k] + x[k]);
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
