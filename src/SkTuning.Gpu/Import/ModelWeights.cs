namespace SkTuning.Gpu.Import;

/// <summary>
/// The embedding block: word, position and token-type tables (row-major [rows, d]) and the LayerNorm that
/// follows their sum.
/// </summary>
public sealed class EmbeddingWeights
{
    /// <summary>Word embeddings [V, d].</summary>
    public required float[] Word { get; init; }

    /// <summary>Position embeddings [P, d] (empty for RoPE models).</summary>
    public required float[] Position { get; init; }

    /// <summary>Token-type embeddings [Tt, d] (empty when the model has none).</summary>
    public required float[] TokenType { get; init; }

    /// <summary>Embedding LayerNorm γ [d].</summary>
    public required float[] NormGamma { get; init; }

    /// <summary>Embedding LayerNorm β [d].</summary>
    public required float[] NormBeta { get; init; }

    /// <summary>Number of floats held.</summary>
    public long Count => (long)Word.Length + Position.Length + TokenType.Length + NormGamma.Length + NormBeta.Length;
}

/// <summary>
/// One transformer layer, weights named by role. Every matrix is stored [in, out] row-major (y = x·W + b), the layout
/// of a torch export's MatMul initializers; an absent bias or norm β is an empty array. Post-norm (BERT):
/// h₁ = AttnNorm(h + Attn(h)·Wo + bo), h₂ = FfnNorm(h₁ + act(h₁·W1 + b1)·W2 + b2). Pre-norm (GPT-2, LLaMA):
/// h₁ = h + Attn(AttnNorm(h))·Wo + bo, h₂ = h₁ + FFN(FfnNorm(h₁)). With SwiGLU, FFN(x) = (silu(x·WGate) ⊙ (x·W1))·W2.
/// </summary>
public sealed class LayerWeights
{
    /// <summary>Query projection [d, d].</summary>
    public required float[] Wq { get; init; }
    /// <summary>Query bias [d].</summary>
    public required float[] Bq { get; init; }
    /// <summary>Key projection [d, kvDim].</summary>
    public required float[] Wk { get; init; }
    /// <summary>Key bias [kvDim].</summary>
    public required float[] Bk { get; init; }
    /// <summary>Value projection [d, kvDim].</summary>
    public required float[] Wv { get; init; }
    /// <summary>Value bias [kvDim].</summary>
    public required float[] Bv { get; init; }
    /// <summary>Attention output projection [d, d].</summary>
    public required float[] Wo { get; init; }
    /// <summary>Attention output bias [d].</summary>
    public required float[] Bo { get; init; }
    /// <summary>The attention branch's norm (after its residual when post-norm, before attention when pre-norm), γ [d].</summary>
    public required float[] AttentionNormGamma { get; init; }
    /// <summary>The attention branch's norm β [d] (empty for RMSNorm).</summary>
    public required float[] AttentionNormBeta { get; init; }
    /// <summary>SwiGLU gate projection [d, F] (empty without SwiGLU).</summary>
    public float[] WGate { get; init; } = [];
    /// <summary>FFN input (up) projection [d, F].</summary>
    public required float[] W1 { get; init; }
    /// <summary>FFN input bias [F].</summary>
    public required float[] B1 { get; init; }
    /// <summary>FFN output projection [F, d].</summary>
    public required float[] W2 { get; init; }
    /// <summary>FFN output bias [d].</summary>
    public required float[] B2 { get; init; }
    /// <summary>The FFN branch's norm (after its residual when post-norm, before the FFN when pre-norm), γ [d].</summary>
    public required float[] FfnNormGamma { get; init; }
    /// <summary>The FFN branch's norm β [d] (empty for RMSNorm).</summary>
    public required float[] FfnNormBeta { get; init; }

    /// <summary>A layer with no arrays: what <see cref="ModelWeights.ReleaseLayer"/> leaves behind.</summary>
    public static LayerWeights Empty { get; } = new()
    {
        Wq = [], Bq = [], Wk = [], Bk = [], Wv = [], Bv = [], Wo = [], Bo = [], AttentionNormGamma = [], AttentionNormBeta = [],
        W1 = [], B1 = [], W2 = [], B2 = [], FfnNormGamma = [], FfnNormBeta = [],
    };

    /// <summary>Number of floats held.</summary>
    public long Count => new[] { Wq, Bq, Wk, Bk, Wv, Bv, Wo, Bo, AttentionNormGamma, AttentionNormBeta, WGate, W1, B1, W2, B2, FfnNormGamma, FfnNormBeta }
        .Sum(a => (long)a.Length);

    /// <summary>
    /// The fused QKV projection [d, dq + 2·kvDim] (columns q | k | v), for one GEMM: row i is
    /// Wq[i,:] then Wk[i,:] then Wv[i,:]. A new array each call.
    /// </summary>
    /// <param name="hidden">d (the rows of every projection).</param>
    public float[] FusedQkvWeight(int hidden)
    {
        int rows = hidden, dq = Wq.Length / rows, dk = Wk.Length / rows, dv = Wv.Length / rows, width = dq + dk + dv;
        var w = new float[rows * width];
        for (int i = 0; i < rows; i++)
        {
            Wq.AsSpan(i * dq, dq).CopyTo(w.AsSpan(i * width));
            Wk.AsSpan(i * dk, dk).CopyTo(w.AsSpan(i * width + dq));
            Wv.AsSpan(i * dv, dv).CopyTo(w.AsSpan(i * width + dq + dk));
        }
        return w;
    }

    /// <summary>The fused QKV bias [dq + 2·kvDim] (q | k | v), or empty when the projections have no biases. A new array each call.</summary>
    public float[] FusedQkvBias() => Bq.Length + Bk.Length + Bv.Length == 0 ? [] : [.. Bq, .. Bk, .. Bv];

    /// <summary>The fused SwiGLU input projection [d, 2F] (columns gate | up), for one GEMM. A new array each call.</summary>
    /// <param name="hidden">d.</param>
    public float[] FusedGateUpWeight(int hidden)
    {
        int f = W1.Length / hidden, width = 2 * f;
        var w = new float[hidden * width];
        for (int i = 0; i < hidden; i++)
        {
            WGate.AsSpan(i * f, f).CopyTo(w.AsSpan(i * width));
            W1.AsSpan(i * f, f).CopyTo(w.AsSpan(i * width + f));
        }
        return w;
    }
}

/// <summary>The pooler: Linear(d → d) + Tanh on the first token's final state.</summary>
public sealed class PoolerWeights
{
    /// <summary>Weight [d, d], stored [in, out].</summary>
    public required float[] W { get; init; }

    /// <summary>Bias [d].</summary>
    public required float[] B { get; init; }
}

/// <summary>All the weights of an imported frozen model, with its <see cref="ModelSpec"/>.</summary>
public sealed class ModelWeights
{
    /// <summary>The architecture.</summary>
    public required ModelSpec Spec { get; init; }

    private EmbeddingWeights _embeddings = null!;
    private LayerWeights[] _layers = [];

    /// <summary>The embedding block.</summary>
    public required EmbeddingWeights Embeddings { get => _embeddings; init => _embeddings = value; }

    /// <summary>The layers, first to last.</summary>
    public required IReadOnlyList<LayerWeights> Layers { get => _layers; init => _layers = [.. value]; }

    /// <summary>
    /// True once an engine took the weights with the host copies released (<see cref="ReleaseLayer"/>): the arrays of
    /// released parts are empty, and whatever still needs them must load the model again.
    /// </summary>
    public bool Released { get; private set; }

    /// <summary>Drops layer <paramref name="layer"/>'s arrays (replaced by empty ones), so the memory can be reclaimed.</summary>
    public void ReleaseLayer(int layer)
    {
        _layers[layer] = LayerWeights.Empty;
        Released = true;
    }

    /// <summary>Drops the word-embedding table (the other embedding tensors, which are small, stay).</summary>
    public void ReleaseWordEmbeddings()
    {
        var e = _embeddings;
        _embeddings = new EmbeddingWeights { Word = [], Position = e.Position, TokenType = e.TokenType, NormGamma = e.NormGamma, NormBeta = e.NormBeta };
        Released = true;
    }

    /// <summary>The pooler, when the graph has one.</summary>
    public PoolerWeights? Pooler { get; init; }

    /// <summary>The final norm after the last layer (pre-norm models), γ [d]; empty for post-norm models.</summary>
    public float[] FinalNormGamma { get; init; } = [];

    /// <summary>The final norm β [d] (empty for RMSNorm and post-norm models).</summary>
    public float[] FinalNormBeta { get; init; } = [];

    /// <summary>Number of floats held (equals <see cref="ModelSpec.ParameterCount"/>).</summary>
    public long Count => Embeddings.Count + Layers.Sum(l => l.Count) + (Pooler is null ? 0 : Pooler.W.Length + Pooler.B.Length)
        + FinalNormGamma.Length + FinalNormBeta.Length;
}

/// <summary>The result of importing an ONNX model: architecture, weights and the graph's value names.</summary>
/// <param name="SourcePath">The .onnx file.</param>
/// <param name="Spec">The architecture.</param>
/// <param name="Weights">The weights.</param>
/// <param name="HiddenStateNames">
/// Graph value names of the hidden states: the input of each layer l = 0..L−1 (the embedding output first), then the
/// final hidden state (L + 1 names; for pre-norm models the last is after the final norm). Pass to
/// <c>OnnxModel.WithExtraOutputs</c> to read every layer.
/// </param>
/// <param name="InputIdsName">The graph input holding token ids.</param>
/// <param name="AttentionMaskName">The graph input holding the attention mask, or null.</param>
/// <param name="TokenTypeIdsName">The graph input holding token-type ids, or null.</param>
public sealed record ImportedModel(
    string SourcePath,
    ModelSpec Spec,
    ModelWeights Weights,
    IReadOnlyList<string> HiddenStateNames,
    string InputIdsName,
    string? AttentionMaskName,
    string? TokenTypeIdsName)
{
    /// <summary>The graph input holding position ids ([B, T] int64), or null when the graph computes positions itself.</summary>
    public string? PositionIdsName { get; init; }

    /// <summary>
    /// "With past" exports' cache inputs (<c>past_key_values.N.key</c>/<c>.value</c>), fed as empty tensors
    /// [B, KV heads, 0, head size]; empty for other exports.
    /// </summary>
    public IReadOnlyList<string> PastInputNames { get; init; } = [];

    /// <inheritdoc/>
    public override string ToString() => $"{Path.GetFileName(SourcePath)}: {Spec.Describe()}";
}
