using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Runtime;
using SkTuning.Gpu.Kernels.Gpu;

namespace SkTuning.Gpu.Kernels;

/// <summary>Scalar arguments of the attention kernels (passed by value to every launch).</summary>
public readonly struct AttentionGpuParams
{
    /// <summary>B.</summary>
    public readonly int Batch;
    /// <summary>T.</summary>
    public readonly int Tokens;
    /// <summary>H, query heads.</summary>
    public readonly int Heads;
    /// <summary>KV, key/value heads (divides H).</summary>
    public readonly int KvHeads;
    /// <summary>dh.</summary>
    public readonly int HeadDim;
    /// <summary>m.</summary>
    public readonly int Prefix;
    /// <summary>1 when causal, else 0.</summary>
    public readonly int Causal;
    /// <summary>1/sqrt(dh).</summary>
    public readonly float Scale;
    /// <summary>Additive mask value for padded token keys.</summary>
    public readonly float MaskValue;
    /// <summary>1 when keys get the ALiBi bias, else 0.</summary>
    public readonly int Alibi;
    /// <summary>1 when each example picks its prefix from A stacked ones (the forward's prefix choice), else 0.</summary>
    public readonly int PrefixChoice;

    /// <summary>Packs the sizes and options.</summary>
    public AttentionGpuParams(AttentionShape shape, float maskValue, bool causal, bool alibi = false, bool prefixChoice = false)
    {
        Batch = shape.Batch;
        Tokens = shape.Tokens;
        Heads = shape.Heads;
        KvHeads = shape.KvHeads;
        HeadDim = shape.HeadDim;
        Prefix = shape.PrefixLength;
        Causal = causal ? 1 : 0;
        Scale = shape.Scale;
        MaskValue = maskValue;
        Alibi = alibi ? 1 : 0;
        PrefixChoice = prefixChoice ? 1 : 0;
    }
}

/// <summary>
/// ILGPU version of <see cref="Attention"/> (same layouts, same results, multi-head, grouped-query and multi-query).
/// </summary>
/// <remarks>
/// <para>Forward: one fused kernel, one group of <see cref="GroupSize"/> threads per (query tile of
/// <see cref="TileQ"/> queries, query head, example); query head h reads key/value head h / (H/KV). The tile's queries are staged in shared memory, its scores
/// [TileQ, m+T] live in shared memory, one warp per row does the softmax (lanes over keys, shuffle reductions) (writing P; the keys' additive bias is the
/// padding mask plus, with ALiBi, slope_h·key position), then the group computes P·V. Limits: dh ≤ <see cref="MaxHeadDim"/>, m+T ≤ <see cref="MaxKeys"/> (36 KB shared memory).</para>
/// <para>Backward, two launches, deterministic (atomics only count arrivals and read the partials back; sums keep a fixed order):
/// (1) query kernel, grouped like the forward: dP = dO·Vᵀ in shared memory, dS = P∘(dP − rowsum(P∘dP))
/// written to a scratch buffer, dQ += scale·dS·K;
/// (2) key kernel, one thread per (b, key, key/value column): dK_j += scale·Σ_h Σ_i dS_ij q_i, dV_j += Σ_h Σ_i P_ij dO_i
/// over the group's query heads h, accumulated into dqkv for token keys and written to per-example partials [B, m, dkv]
/// for prefix keys; the last of the B threads of a prefix element to arrive (an atomic count per element, zeroed by the
/// query kernel) adds the partials in order b = 0..B−1 into the prefix gradient — the batch reduction of the shared
/// prefix without a launch of its own.</para>
/// </remarks>
public static class AttentionGpu
{
    /// <summary>Queries per group.</summary>
    public const int TileQ = 8;
    /// <summary>Threads per group of the grouped kernels.</summary>
    public const int GroupSize = 64;
    /// <summary>Largest m+T the grouped kernels accept.</summary>
    public const int MaxKeys = 1024;
    /// <summary>Largest dh the grouped kernels accept.</summary>
    public const int MaxHeadDim = 128;

    /// <summary>Floats of scratch <see cref="Backward"/> needs: dS [B,H,T,m+T], prefix partials 2·[B,m,dkv], arrival counts [m,dkv].</summary>
    public static int BackwardScratchLength(AttentionShape shape) =>
        shape.ProbsLength + (2 * shape.Batch + 1) * shape.PrefixElements;

    /// <summary>
    /// Forward on the device: overwrites <paramref name="output"/> [B,T,d] and <paramref name="probs"/> [B,H,T,m+T].
    /// </summary>
    /// <param name="device">Device (kernels are loaded once and cached on it).</param>
    /// <param name="qkv">Fused projections [B, T, d + 2·dkv]: queries, keys, values.</param>
    /// <param name="prefixK">Shared prefix keys [m, dkv].</param>
    /// <param name="prefixV">Shared prefix values [m, dkv].</param>
    /// <param name="mask">Key mask [B, T]: 1 = real token, 0 = padding.</param>
    /// <param name="output">Attention output [B, T, d].</param>
    /// <param name="probs">Softmax probabilities [B, H, T, m+T], saved for backward.</param>
    /// <param name="shape">Sizes.</param>
    /// <param name="maskValue">Additive mask value (scores of token keys get + (1 − mask)·maskValue).</param>
    /// <param name="causal">When true query i sees the prefix and token keys j ≤ i only.</param>
    /// <param name="alibiSlopes">ALiBi slopes [H], or empty for none.</param>
    /// <param name="keyPositions">With ALiBi: the token keys' positions [B, T] (prefix key j is at j).</param>
    /// <param name="prefixChoice">
    /// Empty: the prefix is shared. Otherwise [B]: the prefixes are [A, m, dkv] and example b reads prefix prefixChoice[b],
    /// which the caller keeps in [0, A) (as <see cref="Attention.Forward"/>; inference only).
    /// </param>
    public static void Forward(GpuDevice device, ArrayView<float> qkv, ArrayView<float> prefixK, ArrayView<float> prefixV,
        ArrayView<float> mask, ArrayView<float> output, ArrayView<float> probs, AttentionShape shape, float maskValue, bool causal,
        ArrayView<float> alibiSlopes = default, ArrayView<int> keyPositions = default, ArrayView<int> prefixChoice = default)
    {
        const string method = "AttentionGpu.Forward";
        ValidateGrouped(method, shape);
        Attention.CheckLength(method, "qkv", (int)qkv.Length, shape.QkvLength, "B*T*(H+2*KV)*dh");
        if (prefixChoice.Length == 0)
        {
            Attention.CheckLength(method, "prefixK", (int)prefixK.Length, shape.PrefixElements, "m*KV*dh");
            Attention.CheckLength(method, "prefixV", (int)prefixV.Length, shape.PrefixElements, "m*KV*dh");
        }
        else Attention.PrefixAdapters(method, shape, (int)prefixK.Length, (int)prefixV.Length, (int)prefixChoice.Length);
        Attention.CheckLength(method, "mask", (int)mask.Length, shape.MaskLength, "B*T");
        Attention.CheckLength(method, "output", (int)output.Length, shape.OutputLength, "B*T*d");
        Attention.CheckLength(method, "probs", (int)probs.Length, shape.ProbsLength, "B*H*T*(m+T)");
        Attention.ValidateAlibi(method, shape, (int)alibiSlopes.Length, (int)keyPositions.Length);
        var kernel = device.Kernel("attention.forward", a => a.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>,
            ArrayView<float>, ArrayView<float>, ArrayView<int>, ArrayView<int>, ArrayView<float>, ArrayView<float>, AttentionGpuParams>(ForwardKernel));
        kernel(GroupedConfig(shape), qkv, prefixK, prefixV, mask, alibiSlopes, keyPositions, prefixChoice, output, probs,
            new AttentionGpuParams(shape, maskValue, causal, alibiSlopes.Length > 0, prefixChoice.Length > 0));
    }

    /// <summary>
    /// Backward on the device from the saved <paramref name="probs"/>: accumulates (+=) into <paramref name="dQkv"/> and
    /// into <paramref name="dPrefixK"/>, <paramref name="dPrefixV"/> their gradient summed over the batch (deterministic).
    /// </summary>
    /// <param name="device">Device.</param>
    /// <param name="dOut">Gradient of the output [B, T, d].</param>
    /// <param name="qkv">Fused projections [B, T, d + 2·dkv]: queries, keys, values.</param>
    /// <param name="prefixK">Shared prefix keys [m, dkv].</param>
    /// <param name="prefixV">Shared prefix values [m, dkv].</param>
    /// <param name="probs">P [B, H, T, m+T] saved by the forward.</param>
    /// <param name="dQkv">Gradient of qkv [B, T, d + 2·dkv], accumulated (key/value columns: summed over the group).</param>
    /// <param name="dPrefixK">Gradient of the prefix keys [m, dkv], accumulated.</param>
    /// <param name="dPrefixV">Gradient of the prefix values [m, dkv], accumulated.</param>
    /// <param name="scratch">Workspace of <see cref="BackwardScratchLength"/> floats (contents ignored and overwritten).</param>
    /// <param name="shape">Sizes.</param>
    public static void Backward(GpuDevice device, ArrayView<float> dOut, ArrayView<float> qkv, ArrayView<float> prefixK,
        ArrayView<float> prefixV, ArrayView<float> probs, ArrayView<float> dQkv, ArrayView<float> dPrefixK,
        ArrayView<float> dPrefixV, ArrayView<float> scratch, AttentionShape shape)
    {
        const string method = "AttentionGpu.Backward";
        ValidateGrouped(method, shape);
        Attention.CheckLength(method, "dOut", (int)dOut.Length, shape.OutputLength, "B*T*d");
        Attention.CheckLength(method, "qkv", (int)qkv.Length, shape.QkvLength, "B*T*(H+2*KV)*dh");
        Attention.CheckLength(method, "prefixK", (int)prefixK.Length, shape.PrefixElements, "m*KV*dh");
        Attention.CheckLength(method, "prefixV", (int)prefixV.Length, shape.PrefixElements, "m*KV*dh");
        Attention.CheckLength(method, "probs", (int)probs.Length, shape.ProbsLength, "B*H*T*(m+T)");
        Attention.CheckLength(method, "dQkv", (int)dQkv.Length, shape.QkvLength, "B*T*(H+2*KV)*dh");
        Attention.CheckLength(method, "dPrefixK", (int)dPrefixK.Length, shape.PrefixElements, "m*KV*dh");
        Attention.CheckLength(method, "dPrefixV", (int)dPrefixV.Length, shape.PrefixElements, "m*KV*dh");
        Attention.CheckLength(method, "scratch", (int)scratch.Length, BackwardScratchLength(shape), "B*H*T*(m+T) + 2*B*m*KV*dh");
        var p = new AttentionGpuParams(shape, 0f, false);

        var query = device.Kernel("attention.backward.query", a => a.LoadStreamKernel<ArrayView<float>, ArrayView<float>,
            ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, AttentionGpuParams>(BackwardQueryKernel));
        query(GroupedConfig(shape), dOut, qkv, prefixK, prefixV, probs, dQkv, scratch, p);

        var key = device.Kernel("attention.backward.key", a => a.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>,
            ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, AttentionGpuParams>(BackwardKeyKernel));
        key(shape.Batch * shape.Keys * shape.KvModel, dOut, qkv, probs, dQkv, scratch, dPrefixK, dPrefixV, p);
    }

    private static KernelConfig GroupedConfig(AttentionShape s) =>
        new(new Index3D((s.Tokens + TileQ - 1) / TileQ, s.Heads, s.Batch), new Index3D(GroupSize, 1, 1));

    private static void ValidateGrouped(string method, AttentionShape s)
    {
        Attention.ValidateShape(method, s);
        if (s.HeadDim > MaxHeadDim || s.Keys > MaxKeys)
            throw new ArgumentException($"{method}: dh = {s.HeadDim} and m+T = {s.Keys} must not exceed {MaxHeadDim} and {MaxKeys}");
    }

    /// <summary>
    /// Additive bias of key j for head h: (1 − mask)·maskValue on token keys, plus with ALiBi slope_h·position (prefix key
    /// j at j, token keys at their key position).
    /// </summary>
    private static float Bias(ArrayView<float> mask, ArrayView<float> slopes, ArrayView<int> keyPositions, int b, int h, int j,
        AttentionGpuParams p)
    {
        int t = j - p.Prefix;
        float padding = j < p.Prefix ? 0f : (1f - mask[b * p.Tokens + t]) * p.MaskValue;
        if (p.Alibi == 0) return padding;
        return padding + slopes[h] * (j < p.Prefix ? j : keyPositions[b * p.Tokens + t]);
    }

    /// <summary>In a kernel: the maximum of <paramref name="value"/> over the warp, in every lane (butterfly shuffles).</summary>
    private static float WarpMax(float value)
    {
        for (int offset = Warp.WarpSize / 2; offset > 0; offset /= 2) value = XMath.Max(value, Warp.ShuffleXor(value, offset));
        return value;
    }

    /// <summary>Fused forward: grid (query tiles, H, B), <see cref="GroupSize"/> threads per group.</summary>
    internal static void ForwardKernel(ArrayView<float> qkv, ArrayView<float> prefixK, ArrayView<float> prefixV,
        ArrayView<float> mask, ArrayView<float> slopes, ArrayView<int> keyPositions, ArrayView<int> prefixChoice, ArrayView<float> output,
        ArrayView<float> probs, AttentionGpuParams p)
    {
        var scores = SharedMemory.Allocate<float>(TileQ * MaxKeys);
        var qTile = SharedMemory.Allocate<float>(TileQ * MaxHeadDim);
        int i0 = Grid.IdxX * TileQ, h = Grid.IdxY, b = Grid.IdxZ, tid = Group.IdxX, n = Group.DimX;
        int T = p.Tokens, m = p.Prefix, dh = p.HeadDim, d = p.Heads * dh, dkv = p.KvHeads * dh, row = d + 2 * dkv;
        int S = m + T, col = h * dh, kvCol = h / (p.Heads / p.KvHeads) * dh;
        int rows = XMath.Min(TileQ, T - i0);
        // This example's prefix: block prefixChoice[b] of the stacked [A, m, dkv], or the shared one.
        int pre = p.PrefixChoice != 0 ? prefixChoice[b] * m * dkv : 0;

        for (int e = tid; e < rows * dh; e += n)
        {
            int r = e / dh, k = e - r * dh;
            qTile[r * MaxHeadDim + k] = qkv[(b * T + i0 + r) * row + col + k];
        }
        Group.Barrier();

        for (int e = tid; e < rows * S; e += n)
        {
            int r = e / S, j = e - r * S;
            if (p.Causal != 0 && j > m + i0 + r) continue;
            float dot = 0f;
            if (j < m)
            {
                for (int k = 0; k < dh; k++) dot += qTile[r * MaxHeadDim + k] * prefixK[pre + j * dkv + kvCol + k];
            }
            else
            {
                int kr = (b * T + j - m) * row + d + kvCol;
                for (int k = 0; k < dh; k++) dot += qTile[r * MaxHeadDim + k] * qkv[kr + k];
            }
            scores[r * MaxKeys + j] = dot * p.Scale;
        }
        Group.Barrier();

        // Softmax, one warp per query row (rows r = warp, warp + warps, …): lanes stride over the keys, max and sum reduce
        // with butterfly shuffles (fixed order, every lane gets the result).
        int lane = Warp.LaneIdx, warps = n / Warp.WarpSize;
        for (int r = Warp.WarpIdx; r < rows; r += warps)
        {
            int i = i0 + r, allowed = p.Causal != 0 ? m + i + 1 : S, s0 = r * MaxKeys;
            // Shift by max(bias) + max(score + bias − max(bias)): large mask terms never swamp real scores.
            float maxBias = float.NegativeInfinity;
            for (int j = lane; j < allowed; j += Warp.WarpSize) maxBias = XMath.Max(maxBias, Bias(mask, slopes, keyPositions, b, h, j, p));
            maxBias = WarpMax(maxBias);
            float c = float.NegativeInfinity;
            for (int j = lane; j < allowed; j += Warp.WarpSize)
                c = XMath.Max(c, scores[s0 + j] + (Bias(mask, slopes, keyPositions, b, h, j, p) - maxBias));
            c = WarpMax(c);
            float sum = 0f;
            for (int j = lane; j < allowed; j += Warp.WarpSize)
            {
                float e = XMath.Exp(scores[s0 + j] - c + (Bias(mask, slopes, keyPositions, b, h, j, p) - maxBias));
                scores[s0 + j] = e;
                sum += e;
            }
            float inv = 1f / WarpRows.Sum(sum);
            int prow = ((b * p.Heads + h) * T + i) * S;
            for (int j = lane; j < S; j += Warp.WarpSize)
            {
                float pj = j < allowed ? scores[s0 + j] * inv : 0f;
                scores[s0 + j] = pj;
                probs[prow + j] = pj;
            }
        }
        Group.Barrier();

        for (int e = tid; e < rows * dh; e += n)
        {
            int r = e / dh, k = e - r * dh, allowed = p.Causal != 0 ? m + i0 + r + 1 : S;
            float acc = 0f;
            for (int j = 0; j < allowed; j++)
            {
                float v = j < m ? prefixV[pre + j * dkv + kvCol + k] : qkv[(b * T + j - m) * row + d + dkv + kvCol + k];
                acc += scores[r * MaxKeys + j] * v;
            }
            output[(b * T + i0 + r) * d + col + k] = acc;
        }
    }

    /// <summary>Backward per query tile: dS into scratch[0 .. B·H·T·S), dQ accumulated into dQkv.</summary>
    internal static void BackwardQueryKernel(ArrayView<float> dOut, ArrayView<float> qkv, ArrayView<float> prefixK,
        ArrayView<float> prefixV, ArrayView<float> probs, ArrayView<float> dQkv, ArrayView<float> scratch, AttentionGpuParams p)
    {
        var dS = SharedMemory.Allocate<float>(TileQ * MaxKeys);
        var doTile = SharedMemory.Allocate<float>(TileQ * MaxHeadDim);
        int i0 = Grid.IdxX * TileQ, h = Grid.IdxY, b = Grid.IdxZ, tid = Group.IdxX, n = Group.DimX;
        int T = p.Tokens, m = p.Prefix, dh = p.HeadDim, d = p.Heads * dh, dkv = p.KvHeads * dh, row = d + 2 * dkv;
        int S = m + T, col = h * dh, kvCol = h / (p.Heads / p.KvHeads) * dh;
        int rows = XMath.Min(TileQ, T - i0);
        int prow0 = ((b * p.Heads + h) * T + i0) * S;

        // The key kernel counts arrivals per prefix element from zero: this launch runs entirely before it.
        int thread = ((b * p.Heads + h) * Grid.DimX + Grid.IdxX) * n + tid, counts = p.Batch * p.Heads * T * S + 2 * p.Batch * m * dkv;
        for (int e = thread; e < m * dkv; e += Grid.DimX * p.Heads * p.Batch * n) scratch[counts + e] = 0f;

        for (int e = tid; e < rows * dh; e += n)
        {
            int r = e / dh, k = e - r * dh;
            doTile[r * MaxHeadDim + k] = dOut[(b * T + i0 + r) * d + col + k];
        }
        Group.Barrier();

        // dP_ij = dO_i · V_j (skipped where P = 0: causal cut or fully masked key).
        for (int e = tid; e < rows * S; e += n)
        {
            int r = e / S, j = e - r * S;
            float dp = 0f;
            if (probs[prow0 + r * S + j] != 0f)
            {
                if (j < m)
                {
                    for (int k = 0; k < dh; k++) dp += doTile[r * MaxHeadDim + k] * prefixV[j * dkv + kvCol + k];
                }
                else
                {
                    int vr = (b * T + j - m) * row + d + dkv + kvCol;
                    for (int k = 0; k < dh; k++) dp += doTile[r * MaxHeadDim + k] * qkv[vr + k];
                }
            }
            dS[r * MaxKeys + j] = dp;
        }
        Group.Barrier();

        // dS = P∘(dP − rowsum(P∘dP)), one warp per query row as in the forward softmax.
        int lane = Warp.LaneIdx, warps = n / Warp.WarpSize;
        for (int r = Warp.WarpIdx; r < rows; r += warps)
        {
            int s0 = r * MaxKeys, prow = prow0 + r * S;
            float D = 0f;
            for (int j = lane; j < S; j += Warp.WarpSize) D += probs[prow + j] * dS[s0 + j];
            D = WarpRows.Sum(D);
            for (int j = lane; j < S; j += Warp.WarpSize)
            {
                float ds = probs[prow + j] * (dS[s0 + j] - D);
                dS[s0 + j] = ds;
                scratch[prow + j] = ds;
            }
        }
        Group.Barrier();

        for (int e = tid; e < rows * dh; e += n)
        {
            int r = e / dh, k = e - r * dh;
            float acc = 0f;
            for (int j = 0; j < S; j++)
            {
                float key = j < m ? prefixK[j * dkv + kvCol + k] : qkv[(b * T + j - m) * row + d + kvCol + k];
                acc += dS[r * MaxKeys + j] * key;
            }
            dQkv[(b * T + i0 + r) * row + col + k] += p.Scale * acc;
        }
    }

    /// <summary>
    /// Backward per (b, key j, key/value column c), index over B·(m+T)·dkv: sums over the G query heads of c's group
    /// (in order) and their queries; token keys accumulate dK, dV into dQkv; prefix keys write their per-example share
    /// to the partials in scratch (after dS).
    /// </summary>
    internal static void BackwardKeyKernel(Index1D index, ArrayView<float> dOut, ArrayView<float> qkv, ArrayView<float> probs,
        ArrayView<float> dQkv, ArrayView<float> scratch, ArrayView<float> dPrefixK, ArrayView<float> dPrefixV, AttentionGpuParams p)
    {
        int T = p.Tokens, m = p.Prefix, dh = p.HeadDim, d = p.Heads * dh, dkv = p.KvHeads * dh, row = d + 2 * dkv, S = m + T;
        int G = p.Heads / p.KvHeads;
        int c = index % dkv, rest = index / dkv, j = rest % S, b = rest / S, kvh = c / dh, k = c - kvh * dh;
        float accK = 0f, accV = 0f;
        for (int g = 0; g < G; g++)
        {
            int h = kvh * G + g, qc = h * dh + k;
            int prow = (b * p.Heads + h) * T * S + j;
            for (int i = 0; i < T; i++)
            {
                accK += scratch[prow + i * S] * qkv[(b * T + i) * row + qc];
                accV += probs[prow + i * S] * dOut[(b * T + i) * d + qc];
            }
        }
        if (j >= m)
        {
            int r = (b * T + j - m) * row;
            dQkv[r + d + c] += p.Scale * accK;
            dQkv[r + d + dkv + c] += accV;
        }
        else
        {
            int dsLength = p.Batch * p.Heads * T * S, partial = p.Batch * m * dkv, e = j * dkv + c;
            scratch[dsLength + b * m * dkv + e] = p.Scale * accK;
            scratch[dsLength + partial + b * m * dkv + e] = accV;
            MemoryFence.DeviceLevel();   // the partials are visible before the arrival is
            if (Atomic.Add(ref scratch[dsLength + 2 * partial + e], 1f) != p.Batch - 1) return;
            // The last arrival sums in example order; atomic reads come from L2, never from a stale L1 line.
            float sumK = 0f, sumV = 0f;
            for (int bb = 0; bb < p.Batch; bb++)
            {
                sumK += Atomic.Add(ref scratch[dsLength + bb * m * dkv + e], 0f);
                sumV += Atomic.Add(ref scratch[dsLength + partial + bb * m * dkv + e], 0f);
            }
            dPrefixK[e] += sumK;
            dPrefixV[e] += sumV;
        }
    }
}
