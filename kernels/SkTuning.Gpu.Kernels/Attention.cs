using System.Buffers;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace SkTuning.Gpu.Kernels;

/// <summary>
/// Sizes of one SK-Prefix attention call: multi-head (KvHeads = Heads), grouped-query (1 &lt; KvHeads &lt; Heads) or
/// multi-query (KvHeads = 1).
/// </summary>
/// <param name="Batch">B, examples in the batch.</param>
/// <param name="Tokens">T, token positions per example (queries, and token keys).</param>
/// <param name="Heads">H, query heads.</param>
/// <param name="HeadDim">dh, columns per head; the model width is d = H·dh.</param>
/// <param name="PrefixLength">m, shared prefix keys/values per layer (0 = plain attention).</param>
/// <param name="KvHeads">KV, key/value heads (must divide H); query head h reads KV head h / (H / KV), as Hugging Face's
/// repeat_kv does. The key/value width is dkv = KV·dh.</param>
public readonly record struct AttentionShape(int Batch, int Tokens, int Heads, int HeadDim, int PrefixLength, int KvHeads)
{
    /// <summary>d = H·dh, the query and output width.</summary>
    public int Model => Heads * HeadDim;

    /// <summary>dkv = KV·dh, the width of the keys and of the values.</summary>
    public int KvModel => KvHeads * HeadDim;

    /// <summary>G = H / KV, query heads per key/value head.</summary>
    public int HeadsPerKv => Heads / KvHeads;

    /// <summary>Columns of one qkv row: d + 2·dkv (queries, then keys, then values).</summary>
    public int QkvRow => Model + 2 * KvModel;

    /// <summary>S = m + T, keys seen by every query.</summary>
    public int Keys => PrefixLength + Tokens;

    /// <summary>Elements of the fused qkv buffer [B, T, d + 2·dkv] (and of its gradient).</summary>
    public int QkvLength => Batch * Tokens * QkvRow;

    /// <summary>Elements of the output [B, T, d] (and of its gradient).</summary>
    public int OutputLength => Batch * Tokens * Model;

    /// <summary>Elements of one prefix buffer [m, dkv] (keys or values, and their gradients).</summary>
    public int PrefixElements => PrefixLength * KvModel;

    /// <summary>Elements of the key mask [B, T].</summary>
    public int MaskLength => Batch * Tokens;

    /// <summary>Elements of the saved softmax probabilities P [B, H, T, m+T].</summary>
    public int ProbsLength => Batch * Heads * Tokens * Keys;

    /// <summary>The score scale 1/sqrt(dh).</summary>
    public float Scale => 1f / MathF.Sqrt(HeadDim);
}

/// <summary>
/// Multi-head, grouped-query or multi-query scaled dot-product attention over a fused qkv buffer with a per-layer
/// key/value prefix shared by the whole batch (SK-Prefix). Keys are [Kp ; K_x], values [Vp ; V_x]. The forward also takes
/// a per-example prefix choice (several adapters' prefixes in one batch, inference only; see <see cref="Forward"/>).
/// </summary>
/// <remarks>
/// <para>Layouts (row-major): qkv [B, T, d + 2·dkv] with Q = columns 0..d−1, K = d..d+dkv−1, V = d+dkv..d+2·dkv−1 and
/// head h = columns h·dh..(h+1)·dh−1 within each (d = H·dh, dkv = KV·dh); query head h reads key/value head
/// h / (H/KV) (Hugging Face repeat_kv). prefixK, prefixV [m, dkv] (one buffer each, stored once per KV head, read by
/// every example and every query head of the group); key mask [B, T] (1 = real token, 0 = padding); out [B, T, d];
/// P [B, H, T, m+T] with keys ordered prefix first, then tokens.</para>
/// <para>Score of query i and key j: s = (q_i·k_j)/sqrt(dh), plus (1 − mask[b, j])·maskValue for token keys
/// (the BERT / Hugging Face additive-mask formula); the prefix is never masked. With ALiBi (BLOOM) every key also gets
/// slope_h·position_j: per-head slopes (<see cref="AlibiSlopes"/>), prefix key j at position j, token key t at the
/// given key position [B, T] (BLOOM numbers them from the attention mask). The bias has no gradient with respect to the
/// inputs and only changes P, so the backward, which reads the saved P, is the same with or without it. With <c>causal</c>, query i sees the
/// prefix and token keys j ≤ i only (the others get probability exactly 0). All three versions subtract the largest
/// mask term of the visible keys before adding it (softmax ignores a common shift), so maskValue may be
/// float.MinValue without −∞ or NaN, and a row whose every visible key is padded (a left-padded row's pad queries
/// when m = 0) gets the softmax of its raw scores over those keys, whatever the mask value. (PyTorch in fp32 gives such
/// rows a uniform distribution with float.MinValue; their outputs never reach a real token, which masks them as keys.)</para>
/// <para>Backward needs only P (saved by the forward, B·H·T·(m+T) floats), not the output: it uses
/// D_i = Σ_j P_ij·dP_ij, which equals rowsum(dO∘O). Key/value gradients are summed over the query heads of each
/// group, and the prefix gradient over the batch too: on the CPU every (b, KV head) writes its share into its own
/// slice of a [B, m, dkv] partial buffer and the partials are added in order b = 0..B−1, so results are
/// deterministic.</para>
/// <para>Precision: both paths compute in fp32 (the CPU one in register-blocked 16-lane tiles, with its own
/// Cody–Waite exp), within 3e-4 of the fp64 reference at T = 64, m = 12 (measured 1.1–1.5e-4 against the 1e-3·max floor
/// of the check: dS = P∘(dP − D) cancels). An fp64 version of the same tiles was 1.8x slower forward and 1.6x backward
/// (7.1 → 3.6–4.9 ms and 9.8–11 → 6.1–6.4 ms per MiniLM layer at B = 32) for accuracy the fp32 model around it does not keep.</para>
/// </remarks>
public static class Attention
{
    /// <summary>
    /// BLOOM's ALiBi slopes for <paramref name="heads"/> heads, as Hugging Face's build_alibi_tensor computes them in fp32:
    /// with c the largest power of two ≤ heads, b^1..b^c for b = 2^(−8/c), then, when heads is not a power of two,
    /// b'^1, b'^3, b'^5, … for b' = 2^(−4/c) for the remaining heads.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="heads"/> &lt; 1.</exception>
    public static float[] AlibiSlopes(int heads)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(heads, 1);
        int closest = 1 << System.Numerics.BitOperations.Log2((uint)heads);
        var slopes = new float[heads];
        float b = (float)Math.Pow(2, -8.0 / closest);
        for (int i = 0; i < closest; i++) slopes[i] = MathF.Pow(b, i + 1);
        float extra = (float)Math.Pow(2, -4.0 / closest);
        for (int i = closest; i < heads; i++) slopes[i] = MathF.Pow(extra, 2 * (i - closest) + 1);
        return slopes;
    }

    // ---------------------------------------------------------------------------------------------
    // fp64 reference
    // ---------------------------------------------------------------------------------------------

    /// <summary>
    /// fp64 reference forward: writes <paramref name="output"/> [B,T,d] and <paramref name="probs"/> [B,H,T,m+T]; with
    /// <paramref name="alibiSlopes"/> [H] (null: no ALiBi) every key's score gets slope_h·position, token keys at
    /// <paramref name="keyPositions"/> [B, T], prefix key j at j. With <paramref name="prefixChoice"/> [B] the prefixes are
    /// [A, m, dkv] and example b reads prefix <paramref name="prefixChoice"/>[b] (see <see cref="Forward"/>).
    /// </summary>
    public static void ForwardReference(double[] qkv, double[] prefixK, double[] prefixV, double[] mask,
        double[] output, double[] probs, AttentionShape shape, double maskValue, bool causal,
        double[]? alibiSlopes = null, int[]? keyPositions = null, int[]? prefixChoice = null)
    {
        int adapters = ValidatePrefixChoice("Attention.ForwardReference", shape, prefixK.Length, prefixV.Length, prefixChoice);
        Validate("ForwardReference", shape, qkv.Length, prefixK.Length, prefixV.Length, mask.Length, output.Length, probs.Length, adapters);
        ValidateAlibi("Attention.ForwardReference", shape, alibiSlopes?.Length ?? 0, keyPositions?.Length ?? 0);
        int B = shape.Batch, T = shape.Tokens, H = shape.Heads, dh = shape.HeadDim;
        int d = shape.Model, S = shape.Keys, row = shape.QkvRow;
        double scale = 1.0 / Math.Sqrt(dh);
        var score = new double[S];
        for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++)
        for (int i = 0; i < T; i++)
        {
            int adapter = prefixChoice?[b] ?? 0;
            int allowed = causal ? shape.PrefixLength + i + 1 : S;
            // The mask terms enter shifted by their largest visible value: the same softmax in exact arithmetic, but with
            // maskValue = float.MinValue the scores of a fully padded row keep their digits instead of all becoming −3.4e38.
            double maxBias = double.NegativeInfinity;
            for (int j = 0; j < allowed; j++) maxBias = Math.Max(maxBias, BiasRef(mask, alibiSlopes, keyPositions, b, h, j, shape, maskValue));
            double max = double.NegativeInfinity;
            for (int j = 0; j < allowed; j++)
            {
                double dot = 0;
                for (int k = 0; k < dh; k++)
                    dot += qkv[(b * T + i) * row + h * dh + k] * KeyRef(qkv, prefixK, b, j, h, k, shape, adapter);
                score[j] = dot * scale + (BiasRef(mask, alibiSlopes, keyPositions, b, h, j, shape, maskValue) - maxBias);
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
                    acc += probs[((b * H + h) * T + i) * S + j] * ValueRef(qkv, prefixV, b, j, h, k, shape, adapter);
                output[(b * T + i) * d + h * dh + k] = acc;
            }
        }
    }

    /// <summary>
    /// fp64 reference backward from the saved <paramref name="probs"/>: accumulates (+=) into
    /// <paramref name="dQkv"/> [B,T,d+2·dkv], <paramref name="dPrefixK"/> and <paramref name="dPrefixV"/> [m,dkv]
    /// (summed over the batch and over the query heads of each group).
    /// </summary>
    public static void BackwardReference(double[] dOut, double[] qkv, double[] prefixK, double[] prefixV, double[] probs,
        double[] dQkv, double[] dPrefixK, double[] dPrefixV, AttentionShape shape)
    {
        ValidateBackward("BackwardReference", shape, dOut.Length, qkv.Length, prefixK.Length, prefixV.Length, probs.Length,
            dQkv.Length, dPrefixK.Length, dPrefixV.Length);
        int B = shape.Batch, T = shape.Tokens, H = shape.Heads, dh = shape.HeadDim, m = shape.PrefixLength;
        int d = shape.Model, dkv = shape.KvModel, S = shape.Keys, row = shape.QkvRow;
        double scale = 1.0 / Math.Sqrt(dh);
        var dP = new double[S];
        for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++)
        for (int i = 0; i < T; i++)
        {
            int pr = ((b * H + h) * T + i) * S, kvCol = h / shape.HeadsPerKv * dh;
            double D = 0;
            for (int j = 0; j < S; j++)
            {
                double dp = 0;
                for (int k = 0; k < dh; k++)
                    dp += dOut[(b * T + i) * d + h * dh + k] * ValueRef(qkv, prefixV, b, j, h, k, shape);
                dP[j] = dp;
                D += probs[pr + j] * dp;
            }
            for (int j = 0; j < S; j++)
            {
                double p = probs[pr + j], dS = p * (dP[j] - D);
                for (int k = 0; k < dh; k++)
                {
                    double q = qkv[(b * T + i) * row + h * dh + k];
                    double dO = dOut[(b * T + i) * d + h * dh + k];
                    dQkv[(b * T + i) * row + h * dh + k] += scale * dS * KeyRef(qkv, prefixK, b, j, h, k, shape);
                    if (j < m)
                    {
                        dPrefixK[j * dkv + kvCol + k] += scale * dS * q;
                        dPrefixV[j * dkv + kvCol + k] += p * dO;
                    }
                    else
                    {
                        dQkv[(b * T + j - m) * row + d + kvCol + k] += scale * dS * q;
                        dQkv[(b * T + j - m) * row + d + dkv + kvCol + k] += p * dO;
                    }
                }
            }
        }
    }

    private static double BiasRef(double[] mask, double[]? slopes, int[]? keyPositions, int b, int h, int j, AttentionShape s,
        double maskValue)
    {
        int m = s.PrefixLength;
        double padding = j < m ? 0.0 : (1.0 - mask[b * s.Tokens + j - m]) * maskValue;
        return slopes is null ? padding : padding + slopes[h] * (j < m ? j : keyPositions![b * s.Tokens + j - m]);
    }

    private static double KeyRef(double[] qkv, double[] prefixK, int b, int j, int h, int k, AttentionShape s, int adapter = 0)
    {
        int kvCol = h / s.HeadsPerKv * s.HeadDim;
        return j < s.PrefixLength
            ? prefixK[adapter * s.PrefixElements + j * s.KvModel + kvCol + k]
            : qkv[(b * s.Tokens + j - s.PrefixLength) * s.QkvRow + s.Model + kvCol + k];
    }

    private static double ValueRef(double[] qkv, double[] prefixV, int b, int j, int h, int k, AttentionShape s, int adapter = 0)
    {
        int kvCol = h / s.HeadsPerKv * s.HeadDim;
        return j < s.PrefixLength
            ? prefixV[adapter * s.PrefixElements + j * s.KvModel + kvCol + k]
            : qkv[(b * s.Tokens + j - s.PrefixLength) * s.QkvRow + s.Model + s.KvModel + kvCol + k];
    }

    // ---------------------------------------------------------------------------------------------
    // CPU (SIMD + Parallel.For over (b, h) forward, (b, KV head) backward)
    // ---------------------------------------------------------------------------------------------

    /// <summary>
    /// CPU forward: overwrites <paramref name="output"/> [B,T,d] and <paramref name="probs"/> [B,H,T,m+T]
    /// (saved for <see cref="Backward"/>). The prefix buffers are read in place by every example.
    /// </summary>
    /// <param name="qkv">Fused projections [B, T, d + 2·dkv]: queries, keys, values.</param>
    /// <param name="prefixK">Shared prefix keys [m, dkv] (empty when m = 0).</param>
    /// <param name="prefixV">Shared prefix values [m, dkv] (empty when m = 0).</param>
    /// <param name="mask">Key mask [B, T]: 1 = real token, 0 = padding.</param>
    /// <param name="output">Attention output [B, T, d].</param>
    /// <param name="probs">Softmax probabilities [B, H, T, m+T], prefix keys first.</param>
    /// <param name="shape">Sizes.</param>
    /// <param name="maskValue">Additive mask value: token key scores get + (1 − mask)·maskValue (e.g. −10000).</param>
    /// <param name="causal">When true query i sees the prefix and token keys j ≤ i only.</param>
    /// <param name="alibiSlopes">ALiBi slopes [H], or empty for none.</param>
    /// <param name="keyPositions">With ALiBi: the token keys' positions [B, T] (prefix key j is at j).</param>
    /// <param name="prefixChoice">
    /// Empty: one prefix [m, dkv] shared by the batch. Otherwise [B]: the prefixes are A adapters' stacked [A, m, dkv] and
    /// example b reads adapter prefixChoice[b] (0 ≤ prefixChoice[b] &lt; A) — several runs' rows in one batch. A = 1 with
    /// every choice 0 gives the shared-prefix results bit for bit. Inference only: <see cref="Backward"/> takes one prefix.
    /// </param>
    public static unsafe void Forward(ReadOnlySpan<float> qkv, ReadOnlySpan<float> prefixK, ReadOnlySpan<float> prefixV,
        ReadOnlySpan<float> mask, Span<float> output, Span<float> probs, AttentionShape shape, float maskValue, bool causal,
        ReadOnlySpan<float> alibiSlopes = default, ReadOnlySpan<int> keyPositions = default, ReadOnlySpan<int> prefixChoice = default)
    {
        int adapters = ValidatePrefixChoice("Attention.Forward", shape, prefixK.Length, prefixV.Length, prefixChoice);
        Validate("Forward", shape, qkv.Length, prefixK.Length, prefixV.Length, mask.Length, output.Length, probs.Length, adapters);
        ValidateAlibi("Attention.Forward", shape, alibiSlopes.Length, keyPositions.Length);
        int d = shape.Model, dkv = shape.KvModel, T = shape.Tokens, row = shape.QkvRow;
        fixed (float* pQkv = qkv, pK = prefixK, pV = prefixV, pMask = mask, pOut = output, pProbs = probs, pSlopes = alibiSlopes)
        fixed (int* pPositions = keyPositions, pChoice = prefixChoice)
        {
            var a = new Sources
            {
                Q = pQkv, QRow = row, QExample = T * row,
                PreK = pK, PreV = pV, PreRow = dkv, PreExample = prefixChoice.IsEmpty ? 0 : shape.PrefixElements,
                PrefixChoice = prefixChoice.IsEmpty ? null : pChoice,
                TokK = pQkv + d, TokV = pQkv + d + dkv, TokRow = row, TokExample = T * row,
                Slopes = alibiSlopes.IsEmpty ? null : pSlopes, KeyPositions = pPositions,
            };
            RunForward(a, pMask, pOut, pProbs, shape, maskValue, causal);
        }
    }

    /// <summary>
    /// Baseline for benchmarks only: what the reference PyTorch code does. Copies the prefix B times into
    /// concatenated [B, m+T, dkv] key and value buffers (allocated per call, 2·B·(m+T)·dkv floats), then runs
    /// plain attention over them. Same results as <see cref="Forward"/>; slower and bigger.
    /// </summary>
    /// <inheritdoc cref="Forward" path="/param"/>
    public static unsafe void ForwardNaiveConcatenated(ReadOnlySpan<float> qkv, ReadOnlySpan<float> prefixK,
        ReadOnlySpan<float> prefixV, ReadOnlySpan<float> mask, Span<float> output, Span<float> probs, AttentionShape shape,
        float maskValue, bool causal)
    {
        Validate("ForwardNaiveConcatenated", shape, qkv.Length, prefixK.Length, prefixV.Length, mask.Length, output.Length, probs.Length);
        int B = shape.Batch, T = shape.Tokens, m = shape.PrefixLength, d = shape.Model, dkv = shape.KvModel, S = shape.Keys;
        int row = shape.QkvRow;
        var catK = new float[B * S * dkv];
        var catV = new float[B * S * dkv];
        for (int b = 0; b < B; b++)
        {
            prefixK.CopyTo(catK.AsSpan(b * S * dkv, m * dkv));
            prefixV.CopyTo(catV.AsSpan(b * S * dkv, m * dkv));
            for (int t = 0; t < T; t++)
            {
                qkv.Slice((b * T + t) * row + d, dkv).CopyTo(catK.AsSpan((b * S + m + t) * dkv, dkv));
                qkv.Slice((b * T + t) * row + d + dkv, dkv).CopyTo(catV.AsSpan((b * S + m + t) * dkv, dkv));
            }
        }
        fixed (float* pQkv = qkv, pK = catK, pV = catV, pMask = mask, pOut = output, pProbs = probs)
        {
            var a = new Sources
            {
                Q = pQkv, QRow = row, QExample = T * row,
                PreK = pK, PreV = pV, PreRow = dkv, PreExample = S * dkv,
                TokK = pK + m * dkv, TokV = pV + m * dkv, TokRow = dkv, TokExample = S * dkv,
            };
            RunForward(a, pMask, pOut, pProbs, shape, maskValue, causal);
        }
    }

    /// <summary>
    /// CPU backward from the saved <paramref name="probs"/>: accumulates (+=) into <paramref name="dQkv"/> [B,T,d+2·dkv]
    /// (the key/value columns get the sum over their group's query heads), and into <paramref name="dPrefixK"/>,
    /// <paramref name="dPrefixV"/> [m,dkv] their gradient summed over the batch and the group (deterministic: query heads
    /// of a group added in order, per-example partials added in order b = 0..B−1, no atomics).
    /// </summary>
    /// <param name="dOut">Gradient of the output [B, T, d].</param>
    /// <param name="qkv">Fused projections [B, T, d + 2·dkv] (as given to the forward).</param>
    /// <param name="prefixK">Shared prefix keys [m, dkv].</param>
    /// <param name="prefixV">Shared prefix values [m, dkv].</param>
    /// <param name="probs">P [B, H, T, m+T] saved by the forward (encodes mask and causality).</param>
    /// <param name="dQkv">Gradient of qkv [B, T, d + 2·dkv], accumulated.</param>
    /// <param name="dPrefixK">Gradient of the prefix keys [m, dkv], accumulated.</param>
    /// <param name="dPrefixV">Gradient of the prefix values [m, dkv], accumulated.</param>
    /// <param name="shape">Sizes.</param>
    public static unsafe void Backward(ReadOnlySpan<float> dOut, ReadOnlySpan<float> qkv, ReadOnlySpan<float> prefixK,
        ReadOnlySpan<float> prefixV, ReadOnlySpan<float> probs, Span<float> dQkv, Span<float> dPrefixK, Span<float> dPrefixV,
        AttentionShape shape)
    {
        ValidateBackward("Backward", shape, dOut.Length, qkv.Length, prefixK.Length, prefixV.Length, probs.Length,
            dQkv.Length, dPrefixK.Length, dPrefixV.Length);
        int B = shape.Batch, m = shape.PrefixLength, d = shape.KvModel;
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
                switch (VectorBits)
                {
                    case 512: RunBackward<Simd512, Vector512<float>>(g, shape); break;
                    case 256: RunBackward<Simd256, Vector256<float>>(g, shape); break;
                    default: RunBackward<Simd128, Vector128<float>>(g, shape); break;
                }
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

    /// <summary>
    /// Where one forward call reads queries, prefix keys/values and token keys/values (row and example strides), and the
    /// ALiBi slopes [H] and token key positions [B, T] (Slopes null: no ALiBi). Example b reads prefix block
    /// PrefixChoice[b] (PrefixChoice null: block b; PreExample = 0 then shares one prefix).
    /// </summary>
    private unsafe struct Sources
    {
        public float* Q; public int QRow, QExample;
        public float* PreK, PreV; public int PreRow, PreExample; public int* PrefixChoice;
        public float* TokK, TokV; public int TokRow, TokExample;
        public float* Slopes; public int* KeyPositions;
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
    [ThreadStatic] private static float[]? t_arena;

    private static unsafe float* Arena(int floats)
    {
        var arena = t_arena;
        if (arena is null || arena.Length < floats + 16)
        {
            arena = GC.AllocateArray<float>(floats + 16, pinned: true);
            t_arena = arena;
        }
        nint p = (nint)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(arena));
        return (float*)((p + 63) & ~(nint)63);
    }

    /// <summary>Test hook: forces the 256- or 128-bit tiles (0 = the widest the machine accelerates).</summary>
    internal static int ForceVectorBits { get; set; }

    private static int VectorBits => ForceVectorBits != 0 ? ForceVectorBits
        : Vector512.IsHardwareAccelerated ? 512 : Vector256.IsHardwareAccelerated ? 256 : 128;

    private static unsafe void RunForward(Sources a, float* mask, float* output, float* probs, AttentionShape shape,
        float maskValue, bool causal)
    {
        switch (VectorBits)
        {
            case 512: RunForward<Simd512, Vector512<float>>(a, mask, output, probs, shape, maskValue, causal); break;
            case 256: RunForward<Simd256, Vector256<float>>(a, mask, output, probs, shape, maskValue, causal); break;
            default: RunForward<Simd128, Vector128<float>>(a, mask, output, probs, shape, maskValue, causal); break;
        }
    }

    private static unsafe void RunForward<TOps, TV>(Sources a, float* mask, float* output, float* probs, AttentionShape shape,
        float maskValue, bool causal) where TOps : ISimd<TV> where TV : unmanaged
    {
        nint nMask = (nint)mask, nOut = (nint)output, nProbs = (nint)probs;
        int H = shape.Heads;
        // Work ≈ 4 flops per (query, key, head dim): scores, then the context; one short sentence's heads run on this thread.
        OpsParallel.For(shape.Batch * H, 4L * shape.Batch * H * shape.Tokens * shape.Keys * shape.HeadDim, bh =>
            ForwardHead<TOps, TV>(bh / H, bh % H, a, (float*)nMask, (float*)nOut, (float*)nProbs, shape, maskValue, causal));
    }

    // One backward item per (b, KV head): its query heads run in order and their key/value gradients meet in the item's
    // own tiles, so the group sum needs neither atomics nor a per-query-head buffer. With KV = H this is the (b, h) split.
    private static unsafe void RunBackward<TOps, TV>(GradArgs g, AttentionShape shape) where TOps : ISimd<TV> where TV : unmanaged
    {
        int KV = shape.KvHeads;
        Parallel.For(0, shape.Batch * KV, KernelParallelism.Options, bkv => BackwardKvHead<TOps, TV>(bkv / KV, bkv % KV, g, shape));
    }

    /// <summary>
    /// One (b, h): gathers Kᵀ [dh, Sp] and V [S, dhp] of KV head h / G (prefix rows first; Sp, dhp = S, dh padded to 16
    /// with zeros; a group's query heads each gather it again, which costs O(S·dh) against the O(T·S·dh) products) and
    /// the keys' additive bias (padding mask, ALiBi), scores = Q·Kᵀ, row softmax with the max shift, O = P·V; all in
    /// register-blocked fp32 tiles.
    /// </summary>
    private static unsafe void ForwardHead<TOps, TV>(int b, int h, in Sources a, float* mask, float* output, float* probs,
        AttentionShape shape, float maskValue, bool causal) where TOps : ISimd<TV> where TV : unmanaged
    {
        int T = shape.Tokens, H = shape.Heads, dh = shape.HeadDim, m = shape.PrefixLength, d = shape.Model, S = shape.Keys;
        int Sp = Pad16(S), dhp = Pad16(dh), w = TOps.Count;
        int col = h * dh, kvCol = h / shape.HeadsPerKv * dh;
        float* kt = Arena(dh * Sp + S * dhp + T * Sp + T * dhp + 2 * Sp);
        float* v = kt + dh * Sp, sc = v + S * dhp, o = sc + T * Sp, bias = o + T * dhp, maxBias = bias + Sp;

        // Gather this head's keys (transposed) and values, prefix first; the additive key bias and its running max.
        float slope = a.Slopes == null ? 0f : a.Slopes[h];
        int prefixBlock = (a.PrefixChoice == null ? b : a.PrefixChoice[b]) * a.PreExample;
        for (int j = 0; j < S; j++)
        {
            float* kr, vr;
            if (j < m)
            {
                kr = a.PreK + prefixBlock + j * a.PreRow + kvCol;
                vr = a.PreV + prefixBlock + j * a.PreRow + kvCol;
                bias[j] = 0;
            }
            else
            {
                kr = a.TokK + b * a.TokExample + (j - m) * a.TokRow + kvCol;
                vr = a.TokV + b * a.TokExample + (j - m) * a.TokRow + kvCol;
                bias[j] = (1f - mask[b * T + j - m]) * maskValue;
            }
            if (a.Slopes != null) bias[j] += slope * (j < m ? j : a.KeyPositions[b * T + j - m]);
            for (int k = 0; k < dh; k++) kt[k * Sp + j] = kr[k];
            CopyPadded(vr, v + j * dhp, dh, dhp);
            maxBias[j] = j == 0 ? bias[0] : Math.Max(maxBias[j - 1], bias[j]);
        }
        for (int j = S; j < Sp; j++) bias[j] = 0;
        if (Sp > S)
            for (int k = 0; k < dh; k++) new Span<float>(kt + k * Sp + S, Sp - S).Clear();

        // Raw scores [T, Sp] = Q·Kᵀ (queries read in place).
        Gemm<TOps, TV>(a.Q + b * a.QExample + col, a.QRow, 1, kt, Sp, sc, Sp, T, Sp, dh);

        // t = score·scale + (bias − max bias over the visible keys), −∞ past the visible keys; then t − max t.
        // Shifting by the bias max first keeps the large additive mask terms from swamping real scores (a fully
        // padded row still gets a proper softmax).
        var vScale = TOps.Splat(1f / MathF.Sqrt(dh));
        for (int i = 0; i < T; i++)
        {
            int allowed = causal ? m + i + 1 : S;
            var vShift = TOps.Splat(maxBias[allowed - 1]);
            float* row = sc + i * Sp;
            var vMax = TOps.Splat(float.NegativeInfinity);
            for (int j = 0; j < Sp; j += w)
            {
                var t = TOps.Fma(TOps.Load(row + j), vScale, TOps.Sub(TOps.Load(bias + j), vShift));
                t = TOps.KeepBelow(t, j, allowed, float.NegativeInfinity);
                TOps.Store(row + j, t);
                vMax = TOps.Max(vMax, t);
            }
            var vC = TOps.Splat(TOps.MaxAcross(vMax));
            var vSum = TOps.Zero;
            for (int j = 0; j < Sp; j += w)
            {
                var e = ExpNonPositive<TOps, TV>(TOps.Sub(TOps.Load(row + j), vC));
                TOps.Store(row + j, e);
                vSum = TOps.Add(vSum, e);
            }
            var vInv = TOps.Splat(1f / TOps.Sum(vSum));
            for (int j = 0; j < Sp; j += w) TOps.Store(row + j, TOps.Mul(TOps.Load(row + j), vInv));
            new ReadOnlySpan<float>(row, S).CopyTo(new Span<float>(probs + (long)((b * H + h) * T + i) * S, S));
        }

        // O [T, dhp] = P·V.
        Gemm<TOps, TV>(sc, Sp, 1, v, dhp, o, dhp, T, dhp, S);
        for (int i = 0; i < T; i++) new ReadOnlySpan<float>(o + i * dhp, dh).CopyTo(new Span<float>(output + (b * T + i) * d + col, dh));
    }

    /// <summary>
    /// One (b, KV head): gathers its Vᵀ [dh, Sp] and K [S, dhp] once, then for each query head h of the group in order:
    /// dP = dO·Vᵀ, D_i = Σ_j P_ij·dP_ij, dS = scale·P∘(dP − D), dQ = dS·K, dK += dSᵀ·Q, dV += Pᵀ·dO, all in
    /// register-blocked fp32 tiles. Token rows are added into dQkv; prefix rows go to this item's fp64 partial slice.
    /// </summary>
    private static unsafe void BackwardKvHead<TOps, TV>(int b, int kvh, in GradArgs g, AttentionShape shape)
        where TOps : ISimd<TV> where TV : unmanaged
    {
        int T = shape.Tokens, H = shape.Heads, dh = shape.HeadDim, m = shape.PrefixLength, d = shape.Model, S = shape.Keys;
        int dkv = shape.KvModel, row = shape.QkvRow, G = shape.HeadsPerKv;
        int Sp = Pad16(S), dhp = Pad16(dh), w = TOps.Count;
        int kvCol = kvh * dh;
        // The group tiles dk2/dv2 exist only when G > 1, so the MHA arena is the same size as before.
        int groupTiles = G > 1 ? 2 * S * dhp : 0;
        float* vt = Arena(dh * Sp + 2 * T * Sp + 3 * S * dhp + 3 * T * dhp + groupTiles);
        float* pp = vt + dh * Sp, ds = pp + T * Sp, kr = ds + T * Sp, qr = kr + S * dhp, dor = qr + T * dhp,
            dq = dor + T * dhp, dk = dq + T * dhp, dv = dk + S * dhp, dk2 = dv + S * dhp, dv2 = dk2 + S * dhp;

        // Gather: Vᵀ [dh, Sp], K [S, dhp] (zero padding).
        for (int j = 0; j < S; j++)
        {
            float* ks = j < m ? g.PreK + j * dkv + kvCol : g.Qkv + (b * T + j - m) * row + d + kvCol;
            float* vs = j < m ? g.PreV + j * dkv + kvCol : g.Qkv + (b * T + j - m) * row + d + dkv + kvCol;
            CopyPadded(ks, kr + j * dhp, dh, dhp);
            for (int k = 0; k < dh; k++) vt[k * Sp + j] = vs[k];
        }
        if (Sp > S)
            for (int k = 0; k < dh; k++) new Span<float>(vt + k * Sp + S, Sp - S).Clear();

        var vScale = TOps.Splat(1f / MathF.Sqrt(dh));
        for (int gi = 0; gi < G; gi++)
        {
            int h = kvh * G + gi, col = h * dh;
            // Q and dO [T, dhp], P [T, Sp] of this query head (zero padding).
            for (int t = 0; t < T; t++)
            {
                CopyPadded(g.Qkv + (b * T + t) * row + col, qr + t * dhp, dh, dhp);
                CopyPadded(g.DOut + (b * T + t) * d + col, dor + t * dhp, dh, dhp);
                CopyPadded(g.Probs + (long)((b * H + h) * T + t) * S, pp + t * Sp, S, Sp);
            }

            // dP [T, Sp] = dO·Vᵀ.
            Gemm<TOps, TV>(dor, dhp, 1, vt, Sp, ds, Sp, T, Sp, dh);
            // dS = scale·P∘(dP − D) in place (P = 0 in the padding, so it contributes nothing to D).
            for (int i = 0; i < T; i++)
            {
                float* p = pp + i * Sp, r = ds + i * Sp;
                var vD = TOps.Zero;
                for (int j = 0; j < Sp; j += w) vD = TOps.Fma(TOps.Load(p + j), TOps.Load(r + j), vD);
                vD = TOps.Splat(TOps.Sum(vD));
                for (int j = 0; j < Sp; j += w)
                    TOps.Store(r + j, TOps.Mul(TOps.Mul(TOps.Load(p + j), vScale), TOps.Sub(TOps.Load(r + j), vD)));
            }

            // dQ [T, dhp] = dS·K; dK [S, dhp] = dSᵀ·Q; dV [S, dhp] = Pᵀ·dO (transposed A operands read with strides).
            // The first query head of the group writes dk, dv; the others go through dk2, dv2 and are added in order.
            Gemm<TOps, TV>(ds, Sp, 1, kr, dhp, dq, dhp, T, dhp, S);
            float* dkOut = gi == 0 ? dk : dk2, dvOut = gi == 0 ? dv : dv2;
            Gemm<TOps, TV>(ds, 1, Sp, qr, dhp, dkOut, dhp, S, dhp, T);
            Gemm<TOps, TV>(pp, 1, Sp, dor, dhp, dvOut, dhp, S, dhp, T);
            if (gi > 0)
            {
                AddInto(dk2, dk, S * dhp);
                AddInto(dv2, dv, S * dhp);
            }
            // The last head's dQ waits for the pass below, so with KV = H each dQkv row is visited once, as before GQA.
            if (gi < G - 1)
                for (int t = 0; t < T; t++) AddInto(dq + t * dhp, g.DQkv + (b * T + t) * row + col, dh);
        }

        int lastCol = (kvh * G + G - 1) * dh;
        for (int t = 0; t < T; t++)
        {
            float* r = g.DQkv + (b * T + t) * row;
            AddInto(dq + t * dhp, r + lastCol, dh);
            AddInto(dk + (m + t) * dhp, r + d + kvCol, dh);
            AddInto(dv + (m + t) * dhp, r + d + dkv + kvCol, dh);
        }
        // This (b, KV head) owns columns kvCol..kvCol+dh of rows j of partial slice b: plain writes, no races.
        for (int j = 0; j < m; j++)
            for (int k = 0; k < dh; k++)
            {
                g.PartK[(b * m + j) * dkv + kvCol + k] = dk[j * dhp + k];
                g.PartV[(b * m + j) * dkv + kvCol + k] = dv[j * dhp + k];
            }
    }

    /// <summary>dst[0..n) = src, dst[n..padded) = 0.</summary>
    private static unsafe void CopyPadded(float* src, float* dst, int n, int padded)
    {
        new ReadOnlySpan<float>(src, n).CopyTo(new Span<float>(dst, n));
        if (padded > n) new Span<float>(dst + n, padded - n).Clear();
    }

    /// <summary>y += x.</summary>
    private static unsafe void AddInto(float* x, float* y, int n)
    {
        var ys = new Span<float>(y, n);
        System.Numerics.Tensors.TensorPrimitives.Add(ys, new ReadOnlySpan<float>(x, n), ys);
    }

    /// <summary>
    /// C [M, N] = A [M, K] · B [K, N] in fp32 (FMA), overwriting C. A is read at a + r·ars + k·aks, so a transposed or
    /// strided operand needs no copy; B and C are row-major with row strides ldb, ldc. N must be a multiple of 16.
    /// Tiles of 4 rows × 4, 2 or 1 vectors keep up to 16 accumulators in registers and load each B row once per 4 rows
    /// of A. Summation order is fixed (k = 0..K−1 per element), so results are deterministic.
    /// </summary>
    private static unsafe void Gemm<TOps, TV>(float* a, nint ars, nint aks, float* b, nint ldb, float* c, nint ldc,
        int M, int N, int K) where TOps : ISimd<TV> where TV : unmanaged
    {
        int w = TOps.Count, j = 0;
        for (; j + 4 * w <= N; j += 4 * w)
        {
            int i = 0;
            for (; i + 4 <= M; i += 4)
            {
                float* pa = a + i * ars;
                float* pb = b + j;
                TV c00 = TOps.Zero, c01 = TOps.Zero, c02 = TOps.Zero, c03 = TOps.Zero;
                TV c10 = TOps.Zero, c11 = TOps.Zero, c12 = TOps.Zero, c13 = TOps.Zero;
                TV c20 = TOps.Zero, c21 = TOps.Zero, c22 = TOps.Zero, c23 = TOps.Zero;
                TV c30 = TOps.Zero, c31 = TOps.Zero, c32 = TOps.Zero, c33 = TOps.Zero;
                for (int k = 0; k < K; k++)
                {
                    TV b0 = TOps.Load(pb), b1 = TOps.Load(pb + w), b2 = TOps.Load(pb + 2 * w), b3 = TOps.Load(pb + 3 * w);
                    TV x = TOps.Splat(*pa);
                    c00 = TOps.Fma(x, b0, c00); c01 = TOps.Fma(x, b1, c01); c02 = TOps.Fma(x, b2, c02); c03 = TOps.Fma(x, b3, c03);
                    x = TOps.Splat(pa[ars]);
                    c10 = TOps.Fma(x, b0, c10); c11 = TOps.Fma(x, b1, c11); c12 = TOps.Fma(x, b2, c12); c13 = TOps.Fma(x, b3, c13);
                    x = TOps.Splat(pa[2 * ars]);
                    c20 = TOps.Fma(x, b0, c20); c21 = TOps.Fma(x, b1, c21); c22 = TOps.Fma(x, b2, c22); c23 = TOps.Fma(x, b3, c23);
                    x = TOps.Splat(pa[3 * ars]);
                    c30 = TOps.Fma(x, b0, c30); c31 = TOps.Fma(x, b1, c31); c32 = TOps.Fma(x, b2, c32); c33 = TOps.Fma(x, b3, c33);
                    pa += aks; pb += ldb;
                }
                float* pc = c + i * ldc + j;
                TOps.Store(pc, c00); TOps.Store(pc + w, c01); TOps.Store(pc + 2 * w, c02); TOps.Store(pc + 3 * w, c03); pc += ldc;
                TOps.Store(pc, c10); TOps.Store(pc + w, c11); TOps.Store(pc + 2 * w, c12); TOps.Store(pc + 3 * w, c13); pc += ldc;
                TOps.Store(pc, c20); TOps.Store(pc + w, c21); TOps.Store(pc + 2 * w, c22); TOps.Store(pc + 3 * w, c23); pc += ldc;
                TOps.Store(pc, c30); TOps.Store(pc + w, c31); TOps.Store(pc + 2 * w, c32); TOps.Store(pc + 3 * w, c33);
            }
            for (; i < M; i++)
            {
                float* pa = a + i * ars;
                float* pb = b + j;
                TV c0 = TOps.Zero, c1 = TOps.Zero, c2 = TOps.Zero, c3 = TOps.Zero;
                for (int k = 0; k < K; k++)
                {
                    TV x = TOps.Splat(*pa);
                    c0 = TOps.Fma(x, TOps.Load(pb), c0); c1 = TOps.Fma(x, TOps.Load(pb + w), c1);
                    c2 = TOps.Fma(x, TOps.Load(pb + 2 * w), c2); c3 = TOps.Fma(x, TOps.Load(pb + 3 * w), c3);
                    pa += aks; pb += ldb;
                }
                float* pc = c + i * ldc + j;
                TOps.Store(pc, c0); TOps.Store(pc + w, c1); TOps.Store(pc + 2 * w, c2); TOps.Store(pc + 3 * w, c3);
            }
        }
        for (; j + 2 * w <= N; j += 2 * w)
        {
            int i = 0;
            for (; i + 4 <= M; i += 4)
            {
                float* pa = a + i * ars;
                float* pb = b + j;
                TV c00 = TOps.Zero, c01 = TOps.Zero, c10 = TOps.Zero, c11 = TOps.Zero;
                TV c20 = TOps.Zero, c21 = TOps.Zero, c30 = TOps.Zero, c31 = TOps.Zero;
                for (int k = 0; k < K; k++)
                {
                    TV b0 = TOps.Load(pb), b1 = TOps.Load(pb + w);
                    TV x = TOps.Splat(*pa);
                    c00 = TOps.Fma(x, b0, c00); c01 = TOps.Fma(x, b1, c01);
                    x = TOps.Splat(pa[ars]);
                    c10 = TOps.Fma(x, b0, c10); c11 = TOps.Fma(x, b1, c11);
                    x = TOps.Splat(pa[2 * ars]);
                    c20 = TOps.Fma(x, b0, c20); c21 = TOps.Fma(x, b1, c21);
                    x = TOps.Splat(pa[3 * ars]);
                    c30 = TOps.Fma(x, b0, c30); c31 = TOps.Fma(x, b1, c31);
                    pa += aks; pb += ldb;
                }
                float* pc = c + i * ldc + j;
                TOps.Store(pc, c00); TOps.Store(pc + w, c01); pc += ldc;
                TOps.Store(pc, c10); TOps.Store(pc + w, c11); pc += ldc;
                TOps.Store(pc, c20); TOps.Store(pc + w, c21); pc += ldc;
                TOps.Store(pc, c30); TOps.Store(pc + w, c31);
            }
            for (; i < M; i++)
            {
                float* pa = a + i * ars;
                float* pb = b + j;
                TV c0 = TOps.Zero, c1 = TOps.Zero;
                for (int k = 0; k < K; k++)
                {
                    TV x = TOps.Splat(*pa);
                    c0 = TOps.Fma(x, TOps.Load(pb), c0); c1 = TOps.Fma(x, TOps.Load(pb + w), c1);
                    pa += aks; pb += ldb;
                }
                TOps.Store(c + i * ldc + j, c0); TOps.Store(c + i * ldc + j + w, c1);
            }
        }
        for (; j < N; j += w)
        {
            int i = 0;
            for (; i + 4 <= M; i += 4)
            {
                float* pa = a + i * ars;
                float* pb = b + j;
                TV c0 = TOps.Zero, c1 = TOps.Zero, c2 = TOps.Zero, c3 = TOps.Zero;
                for (int k = 0; k < K; k++)
                {
                    TV b0 = TOps.Load(pb);
                    c0 = TOps.Fma(TOps.Splat(*pa), b0, c0); c1 = TOps.Fma(TOps.Splat(pa[ars]), b0, c1);
                    c2 = TOps.Fma(TOps.Splat(pa[2 * ars]), b0, c2); c3 = TOps.Fma(TOps.Splat(pa[3 * ars]), b0, c3);
                    pa += aks; pb += ldb;
                }
                float* pc = c + i * ldc + j;
                TOps.Store(pc, c0); TOps.Store(pc + ldc, c1); TOps.Store(pc + 2 * ldc, c2); TOps.Store(pc + 3 * ldc, c3);
            }
            for (; i < M; i++)
            {
                float* pa = a + i * ars;
                float* pb = b + j;
                TV c0 = TOps.Zero;
                for (int k = 0; k < K; k++)
                {
                    c0 = TOps.Fma(TOps.Splat(*pa), TOps.Load(pb), c0);
                    pa += aks; pb += ldb;
                }
                TOps.Store(c + i * ldc + j, c0);
            }
        }
    }

    // e^x = 2^n·e^r, n = round(x·log2 e), r = x − n·ln 2 (Cody–Waite split, |r| ≤ ln2/2), e^r by its degree-7 Taylor
    // polynomial (truncation error < 3e-9 relative, below float's 6e-8). Vector Exp from the BCL is several times slower
    // here, most of all on the masked −10000 / −∞ scores, which take its fix-up path.
    private const float ExpLog2E = 1.44269504f, ExpLn2Hi = 0.693359375f, ExpLn2Lo = -2.12194440e-4f;
    private const float ExpC2 = 1f / 2, ExpC3 = 1f / 6, ExpC4 = 1f / 24, ExpC5 = 1f / 120, ExpC6 = 1f / 720, ExpC7 = 1f / 5040;

    /// <summary>The few fp32 vector operations the CPU tiles need, for one vector width (JIT-specialized per struct).</summary>
    internal unsafe interface ISimd<TV> where TV : unmanaged
    {
        /// <summary>Lanes; 16 must be a multiple of Count.</summary>
        static abstract int Count { get; }
        static abstract TV Zero { get; }
        static abstract TV Load(float* p);
        static abstract void Store(float* p, TV v);
        static abstract TV Splat(float x);
        /// <summary>a·b + c, one rounding.</summary>
        static abstract TV Fma(TV a, TV b, TV c);
        static abstract TV Add(TV a, TV b);
        static abstract TV Sub(TV a, TV b);
        static abstract TV Mul(TV a, TV b);
        static abstract TV Max(TV a, TV b);
        /// <summary>Lanes whose index first + lane is below limit keep v, the others become fill.</summary>
        static abstract TV KeepBelow(TV v, int first, int limit, float fill);
        static abstract float Sum(TV v);
        static abstract float MaxAcross(TV v);
        /// <summary>Round to the nearest integer (ties to even).</summary>
        static abstract TV Round(TV v);
        /// <summary>2ⁿ for integral n in [−126, 127], built in the exponent bits.</summary>
        static abstract TV Pow2(TV n);
        /// <summary>v, with 0 in the lanes where x &lt; limit.</summary>
        static abstract TV ZeroWhereBelow(TV v, TV x, float limit);
    }

    /// <summary>e^x for x ≤ 0 (−∞ allowed), ~1 ulp; results below e^−87 are flushed to 0.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static TV ExpNonPositive<TOps, TV>(TV x) where TOps : ISimd<TV> where TV : unmanaged
    {
        x = TOps.Max(x, TOps.Splat(-88f));
        var n = TOps.Round(TOps.Mul(x, TOps.Splat(ExpLog2E)));
        var r = TOps.Fma(n, TOps.Splat(-ExpLn2Hi), x);
        r = TOps.Fma(n, TOps.Splat(-ExpLn2Lo), r);
        var p = TOps.Splat(ExpC7);
        p = TOps.Fma(p, r, TOps.Splat(ExpC6));
        p = TOps.Fma(p, r, TOps.Splat(ExpC5));
        p = TOps.Fma(p, r, TOps.Splat(ExpC4));
        p = TOps.Fma(p, r, TOps.Splat(ExpC3));
        p = TOps.Fma(p, r, TOps.Splat(ExpC2));
        p = TOps.Fma(p, r, TOps.Splat(1f));
        p = TOps.Fma(p, r, TOps.Splat(1f));
        return TOps.ZeroWhereBelow(TOps.Mul(p, TOps.Pow2(n)), x, -87f);
    }

    internal readonly unsafe struct Simd512 : ISimd<Vector512<float>>
    {
        public static int Count => Vector512<float>.Count;
        public static Vector512<float> Zero => Vector512<float>.Zero;
        [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<float> Load(float* p) => Vector512.Load(p);
        [MethodImpl(MethodImplOptions.AggressiveInlining)] public static void Store(float* p, Vector512<float> v) => v.Store(p);
        [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<float> Splat(float x) => Vector512.Create(x);
        [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<float> Fma(Vector512<float> a, Vector512<float> b, Vector512<float> c) => Vector512.FusedMultiplyAdd(a, b, c);
        [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<float> Add(Vector512<float> a, Vector512<float> b) => a + b;
        [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<float> Sub(Vector512<float> a, Vector512<float> b) => a - b;
        [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<float> Mul(Vector512<float> a, Vector512<float> b) => a * b;
        [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<float> Max(Vector512<float> a, Vector512<float> b) => Vector512.Max(a, b);
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector512<float> KeepBelow(Vector512<float> v, int first, int limit, float fill) =>
            Vector512.ConditionalSelect(Vector512.LessThan(Vector512<int>.Indices + Vector512.Create(first), Vector512.Create(limit)).AsSingle(),
                v, Vector512.Create(fill));
        [MethodImpl(MethodImplOptions.AggressiveInlining)] public static float Sum(Vector512<float> v) => Vector512.Sum(v);
        [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<float> Round(Vector512<float> v) => Vector512.Round(v);
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector512<float> Pow2(Vector512<float> n) => Vector512.ShiftLeft(Vector512.ConvertToInt32(n) + Vector512.Create(127), 23).AsSingle();
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector512<float> ZeroWhereBelow(Vector512<float> v, Vector512<float> x, float limit) =>
            Vector512.ConditionalSelect(Vector512.LessThan(x, Vector512.Create(limit)), Vector512<float>.Zero, v);
        [MethodImpl(MethodImplOptions.AggressiveInlining)] public static float MaxAcross(Vector512<float> v) => Simd256.MaxAcross(Vector256.Max(v.GetLower(), v.GetUpper()));
    }

    private readonly unsafe struct Simd256 : ISimd<Vector256<float>>
    {
        public static int Count => Vector256<float>.Count;
        public static Vector256<float> Zero => Vector256<float>.Zero;
        [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<float> Load(float* p) => Vector256.Load(p);
        [MethodImpl(MethodImplOptions.AggressiveInlining)] public static void Store(float* p, Vector256<float> v) => v.Store(p);
        [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<float> Splat(float x) => Vector256.Create(x);
        [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<float> Fma(Vector256<float> a, Vector256<float> b, Vector256<float> c) => Vector256.FusedMultiplyAdd(a, b, c);
        [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<float> Add(Vector256<float> a, Vector256<float> b) => a + b;
        [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<float> Sub(Vector256<float> a, Vector256<float> b) => a - b;
        [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<float> Mul(Vector256<float> a, Vector256<float> b) => a * b;
        [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<float> Max(Vector256<float> a, Vector256<float> b) => Vector256.Max(a, b);
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<float> KeepBelow(Vector256<float> v, int first, int limit, float fill) =>
            Vector256.ConditionalSelect(Vector256.LessThan(Vector256<int>.Indices + Vector256.Create(first), Vector256.Create(limit)).AsSingle(),
                v, Vector256.Create(fill));
        [MethodImpl(MethodImplOptions.AggressiveInlining)] public static float Sum(Vector256<float> v) => Vector256.Sum(v);
        [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<float> Round(Vector256<float> v) => Vector256.Round(v);
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<float> Pow2(Vector256<float> n) => Vector256.ShiftLeft(Vector256.ConvertToInt32(n) + Vector256.Create(127), 23).AsSingle();
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<float> ZeroWhereBelow(Vector256<float> v, Vector256<float> x, float limit) =>
            Vector256.ConditionalSelect(Vector256.LessThan(x, Vector256.Create(limit)), Vector256<float>.Zero, v);
        [MethodImpl(MethodImplOptions.AggressiveInlining)] public static float MaxAcross(Vector256<float> v) => Simd128.MaxAcross(Vector128.Max(v.GetLower(), v.GetUpper()));
    }

    private readonly unsafe struct Simd128 : ISimd<Vector128<float>>
    {
        public static int Count => Vector128<float>.Count;
        public static Vector128<float> Zero => Vector128<float>.Zero;
        [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector128<float> Load(float* p) => Vector128.Load(p);
        [MethodImpl(MethodImplOptions.AggressiveInlining)] public static void Store(float* p, Vector128<float> v) => v.Store(p);
        [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector128<float> Splat(float x) => Vector128.Create(x);
        [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector128<float> Fma(Vector128<float> a, Vector128<float> b, Vector128<float> c) => Vector128.FusedMultiplyAdd(a, b, c);
        [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector128<float> Add(Vector128<float> a, Vector128<float> b) => a + b;
        [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector128<float> Sub(Vector128<float> a, Vector128<float> b) => a - b;
        [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector128<float> Mul(Vector128<float> a, Vector128<float> b) => a * b;
        [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector128<float> Max(Vector128<float> a, Vector128<float> b) => Vector128.Max(a, b);
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector128<float> KeepBelow(Vector128<float> v, int first, int limit, float fill) =>
            Vector128.ConditionalSelect(Vector128.LessThan(Vector128<int>.Indices + Vector128.Create(first), Vector128.Create(limit)).AsSingle(),
                v, Vector128.Create(fill));
        [MethodImpl(MethodImplOptions.AggressiveInlining)] public static float Sum(Vector128<float> v) => Vector128.Sum(v);
        [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector128<float> Round(Vector128<float> v) => Vector128.Round(v);
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector128<float> Pow2(Vector128<float> n) => Vector128.ShiftLeft(Vector128.ConvertToInt32(n) + Vector128.Create(127), 23).AsSingle();
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector128<float> ZeroWhereBelow(Vector128<float> v, Vector128<float> x, float limit) =>
            Vector128.ConditionalSelect(Vector128.LessThan(x, Vector128.Create(limit)), Vector128<float>.Zero, v);
        [MethodImpl(MethodImplOptions.AggressiveInlining)] public static float MaxAcross(Vector128<float> v) => Math.Max(Math.Max(v.GetElement(0), v.GetElement(1)), Math.Max(v.GetElement(2), v.GetElement(3)));
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
        if (s.KvHeads < 1 || s.Heads % s.KvHeads != 0)
            throw new ArgumentException($"{method}: KV={s.KvHeads} key/value heads must be ≥ 1 and divide H={s.Heads}");
        long qkv = (long)s.Batch * s.Tokens * ((long)s.Heads + 2L * s.KvHeads) * s.HeadDim;
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

    private static void Validate(string method, AttentionShape s, int qkv, int prefixK, int prefixV, int mask, int output, int probs,
        int adapters = 1)
    {
        method = "Attention." + method;
        ValidateShape(method, s);
        CheckLength(method, "qkv", qkv, s.QkvLength, "B*T*(H+2*KV)*dh");
        CheckLength(method, "prefixK", prefixK, adapters * s.PrefixElements, adapters == 1 ? "m*KV*dh" : $"A*m*KV*dh with A={adapters}");
        CheckLength(method, "prefixV", prefixV, adapters * s.PrefixElements, adapters == 1 ? "m*KV*dh" : $"A*m*KV*dh with A={adapters}");
        CheckLength(method, "mask", mask, s.MaskLength, "B*T");
        CheckLength(method, "output", output, s.OutputLength, "B*T*d");
        CheckLength(method, "probs", probs, s.ProbsLength, "B*H*T*(m+T)");
    }

    /// <summary>
    /// A per-example prefix choice (empty: the shared prefix, A = 1): B indices, each in [0, A) for the A = prefixK / (m·dkv)
    /// stacked prefixes. Returns A. The ILGPU forward checks the sizes only (its indices live on the device).
    /// </summary>
    internal static int ValidatePrefixChoice(string method, AttentionShape s, int prefixK, int prefixV, ReadOnlySpan<int> choice)
    {
        if (choice.IsEmpty) return 1;
        int adapters = PrefixAdapters(method, s, prefixK, prefixV, choice.Length);
        for (int b = 0; b < choice.Length; b++)
            if ((uint)choice[b] >= (uint)adapters)
                throw new ArgumentException($"{method}: prefixChoice[{b}] = {choice[b]} is outside the {adapters} stacked prefixes");
        return adapters;
    }

    /// <summary>A, the stacked prefixes of a per-example choice of <paramref name="choices"/> entries (one per example).</summary>
    internal static int PrefixAdapters(string method, AttentionShape s, int prefixK, int prefixV, int choices)
    {
        CheckLength(method, "prefixChoice", choices, s.Batch, "B");
        if (s.PrefixElements == 0 || prefixK == 0 || prefixK % s.PrefixElements != 0 || prefixV != prefixK)
            throw new ArgumentException($"{method}: with a prefix choice, prefixK and prefixV ({prefixK}, {prefixV} elements) must both hold " +
                $"A ≥ 1 whole prefixes of m*KV*dh = {s.PrefixElements}");
        return prefixK / s.PrefixElements;
    }

    /// <summary>ALiBi's arguments: no slopes (then no positions either), or H slopes and B·T token key positions.</summary>
    internal static void ValidateAlibi(string method, AttentionShape s, int slopes, int keyPositions)
    {
        if (slopes == 0)
        {
            CheckLength(method, "keyPositions (no ALiBi slopes)", keyPositions, 0, "0");
            return;
        }
        CheckLength(method, "alibiSlopes", slopes, s.Heads, "H");
        CheckLength(method, "keyPositions", keyPositions, s.MaskLength, "B*T");
    }

    private static void ValidateBackward(string method, AttentionShape s, int dOut, int qkv, int prefixK, int prefixV, int probs,
        int dQkv, int dPrefixK, int dPrefixV)
    {
        method = "Attention." + method;
        ValidateShape(method, s);
        CheckLength(method, "dOut", dOut, s.OutputLength, "B*T*d");
        CheckLength(method, "qkv", qkv, s.QkvLength, "B*T*(H+2*KV)*dh");
        CheckLength(method, "prefixK", prefixK, s.PrefixElements, "m*KV*dh");
        CheckLength(method, "prefixV", prefixV, s.PrefixElements, "m*KV*dh");
        CheckLength(method, "probs", probs, s.ProbsLength, "B*H*T*(m+T)");
        CheckLength(method, "dQkv", dQkv, s.QkvLength, "B*T*(H+2*KV)*dh");
        CheckLength(method, "dPrefixK", dPrefixK, s.PrefixElements, "m*KV*dh");
        CheckLength(method, "dPrefixV", dPrefixV, s.PrefixElements, "m*KV*dh");
    }
}
