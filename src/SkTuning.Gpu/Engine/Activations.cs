using SkTuning.Gpu.Import;

namespace SkTuning.Gpu.Engine;

/// <summary>
/// Everything the forward saves for the backward, plus the backward's scratch, sized for a capacity shape.
/// The prefix is not here: it is one buffer owned by the caller, whatever the batch size.
/// </summary>
internal sealed class Activations : IDisposable
{
    private readonly List<IDisposable> _owned = [];

    /// <param name="backend">Where the buffers live.</param>
    /// <param name="spec">The model.</param>
    /// <param name="capacity">The largest forward the buffers hold.</param>
    /// <param name="loraRank">LoRA's rank (0: no LoRA buffers).</param>
    /// <param name="recompute">
    /// One set of per-layer buffers shared by every layer (<see cref="TransformerEngine.Recompute"/>): the layer inputs
    /// (<see cref="Hidden"/>) are still kept for all layers, the rest is rebuilt per layer in the backward.
    /// </param>
    public Activations(Backend backend, ModelSpec spec, ForwardShape capacity, int loraRank = 0, bool recompute = false)
    {
        Capacity = capacity;
        Recompute = recompute;
        int d = spec.Hidden, F = spec.FfnSize, Fin = EngineParameters.FfnInputWidth(spec), qkv = EngineParameters.QkvWidth(spec);
        int tokRows = capacity.Batch * capacity.SeqLen, rows = capacity.Batch * capacity.Positions;
        DeviceArray<float> A(int n) { var a = backend.Allocate(Math.Max(n, 1)); _owned.Add(a); Bytes += a.Length * 4L; return a; }
        EmbeddingSum = A(tokRows * d);
        EmbeddingOut = A(tokRows * d);
        EmbeddingMean = A(tokRows);
        EmbeddingRstd = A(tokRows);
        Hidden = new DeviceArray<float>[spec.Layers + 1];
        for (int l = 0; l <= spec.Layers; l++) Hidden[l] = A(rows * d);
        if (spec.HasFinalNorm)
        {
            Final = A(rows * d); FinalMean = A(rows); FinalRstd = A(rows);
        }
        int probs = capacity.Batch * spec.Heads * capacity.Positions * (capacity.PrefixLen + capacity.Positions);
        bool rotatedPrefix = spec.Positions == PositionKind.Rope && capacity.PrefixLen > 0;
        Layers = new LayerActivations[spec.Layers];
        for (int l = 0; l < spec.Layers; l++)
            Layers[l] = recompute && l > 0 ? Layers[0] : new LayerActivations(A(rows * qkv), A(probs), A(rows * d), A(rows * d), A(rows), A(rows), A(rows * d),
                A(rows * Fin), A(rows * F), A(rows * d), A(rows * d), A(rows), A(rows),
                rotatedPrefix ? A(capacity.PrefixKeys * spec.KvDim) : null);
        DX = A(rows * d); DR = A(rows * d); DH = A(rows * d); DContext = A(rows * d);
        DFfn = A(rows * Fin); DFfnAct = A(rows * F); DQkv = A(rows * qkv);
        if (rotatedPrefix) DPrefixK = A(capacity.PrefixLen * spec.KvDim);
        if (spec.Causal && capacity.PromptLen > 0) DPromptK = A(capacity.PromptLen * spec.KvDim);
        if (loraRank > 0)
        {
            LoraT = new DeviceArray<float>[2 * spec.Layers];
            for (int i = 0; i < LoraT.Length; i++) LoraT[i] = A(rows * loraRank);
            LoraX = A(rows * d); LoraU = A(rows * d); LoraDT = A(rows * loraRank);
        }
    }

    public ForwardShape Capacity { get; }

    /// <summary>Whether every layer shares one set of per-layer buffers (activation recomputation).</summary>
    public bool Recompute { get; }

    /// <summary>Bytes of every buffer here.</summary>
    public long Bytes { get; private set; }
    public bool Fits(ForwardShape shape, bool recompute) => Capacity.Fits(shape) && recompute == Recompute;

    /// <summary>Token embeddings before / after their LayerNorm, [B·T, d], and that LayerNorm's statistics.</summary>
    public DeviceArray<float> EmbeddingSum { get; }
    public DeviceArray<float> EmbeddingOut { get; }
    public DeviceArray<float> EmbeddingMean { get; }
    public DeviceArray<float> EmbeddingRstd { get; }

    /// <summary>Hidden[l] is the input of layer l, [B·(m_p+T), d]; Hidden[L] is the last layer's output.</summary>
    public DeviceArray<float>[] Hidden { get; }

    /// <summary>Pre-norm models: the final norm of Hidden[L] (the model's output) and its statistics; null otherwise.</summary>
    public DeviceArray<float>? Final { get; }
    public DeviceArray<float>? FinalMean { get; }
    public DeviceArray<float>? FinalRstd { get; }

    /// <summary>RoPE models with a prefix: d(loss)/d(rotated prefix keys) of one layer, before the inverse rotation.</summary>
    public DeviceArray<float>? DPrefixK { get; }

    /// <summary>Causal models with prompt rows: one layer's shared-prompt key gradient, rotated (see Sublayers).</summary>
    public DeviceArray<float>? DPromptK { get; }
    public LayerActivations[] Layers { get; }

    // Backward scratch.
    public DeviceArray<float> DX { get; }
    public DeviceArray<float> DR { get; }
    public DeviceArray<float> DH { get; }
    public DeviceArray<float> DContext { get; }
    public DeviceArray<float> DFfn { get; }
    public DeviceArray<float> DFfnAct { get; }
    public DeviceArray<float> DQkv { get; }

    // LoRA (allocated only when the engine has LoRA): t = dropout(x)·A [rows, r] per layer and target (2l: query,
    // 2l + 1: value), saved for the backward; scratch for dropout(x) / d(dropout(x)) [rows, d], u = t·B / du [rows, d], dt [rows, r].
    public DeviceArray<float>[] LoraT { get; } = [];
    public DeviceArray<float>? LoraX { get; }
    public DeviceArray<float>? LoraU { get; }
    public DeviceArray<float>? LoraDT { get; }

    public void Dispose()
    {
        foreach (var a in _owned) a.Dispose();
    }
}

/// <summary>
/// One layer's saved activations. Qkv holds q and k after RoPE. Post-norm: AttnSum = x + attention, AttnNormOut =
/// AttnNorm(AttnSum), FfnSum = AttnNormOut + FFN, output = FfnNorm(FfnSum). Pre-norm: AttnNormOut = AttnNorm(x),
/// AttnSum = x + attention(AttnNormOut), FfnNormOut = FfnNorm(AttnSum), output = AttnSum + FFN(FfnNormOut). Parallel:
/// AttnNormOut = AttnNorm(x), FfnNormOut = FfnNorm(x) (unused with a shared norm), FfnSum = FFN's branch output,
/// output = x + attention + FfnSum.
/// FfnIn is the FFN's input projection ([rows, 2F] gate | up with SwiGLU), FfnAct the activation [rows, F].
/// PrefixK is the prefix keys rotated to positions 0..m−1 (RoPE models with a prefix).
/// </summary>
internal sealed record LayerActivations(
    DeviceArray<float> Qkv, DeviceArray<float> Probabilities, DeviceArray<float> Context,
    DeviceArray<float> AttnSum, DeviceArray<float> AttnMean, DeviceArray<float> AttnRstd, DeviceArray<float> AttnNormOut,
    DeviceArray<float> FfnIn, DeviceArray<float> FfnAct, DeviceArray<float> FfnSum, DeviceArray<float> FfnNormOut,
    DeviceArray<float> FfnMean, DeviceArray<float> FfnRstd, DeviceArray<float>? PrefixK);
