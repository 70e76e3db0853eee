using System.Globalization;

namespace SkTuning.Gpu.Import;

/// <summary>The transformer family an imported model belongs to.</summary>
public enum ModelFamily
{
    /// <summary>BERT-style encoder (MiniLM, ArcticXs, bert-base): post-LayerNorm, GELU, absolute positions, token types.</summary>
    Bert,
    /// <summary>GPT-2-style decoder: pre-LayerNorm, GELU-tanh, absolute positions, causal.</summary>
    Gpt2,
    /// <summary>LLaMA-style decoder: pre-RMSNorm, SwiGLU, RoPE, causal, grouped KV heads.</summary>
    Llama,
    /// <summary>Mistral (LLaMA layout with sliding-window attention).</summary>
    Mistral,
    /// <summary>
    /// Falcon decoder: parallel attention and FFN from one LayerNorm (7B) or two (the new decoder architecture), fused
    /// query_key_value with multi-query or grouped KV heads, RoPE, exact GELU, no linear biases.
    /// </summary>
    Falcon,
    /// <summary>Phi-2 decoder: parallel attention and FFN from one LayerNorm, partial rotary, GELU-tanh, biases everywhere.</summary>
    Phi,
    /// <summary>BLOOM: LayerNorm after the word embeddings, pre-LayerNorm, GELU-tanh, ALiBi, causal, biases everywhere.</summary>
    Bloom,
    /// <summary>
    /// RoBERTa / XLM-R-style encoder: BERT layers, but positions counted from the padding id (<see cref="ModelSpec.PositionPaddingId"/>)
    /// and one token type.
    /// </summary>
    Roberta,
}

/// <summary>The normalization layer.</summary>
public enum NormKind
{
    /// <summary>LayerNorm: (x − mean) / sqrt(var + ε) · γ + β.</summary>
    LayerNorm,
    /// <summary>RMSNorm: x / sqrt(mean(x²) + ε) · γ.</summary>
    RmsNorm,
}

/// <summary>Where the normalization sits relative to each residual branch.</summary>
public enum NormPlacement
{
    /// <summary>After the residual add (BERT): h = Norm(h + f(h)).</summary>
    Post,
    /// <summary>Before the branch (GPT-2, LLaMA): h = h + f(Norm(h)), plus a final norm.</summary>
    Pre,
    /// <summary>
    /// Attention and FFN side by side from the layer input (Falcon, Phi): h = h + Attn(Norm₁(h)) + FFN(Norm₂(h)), with
    /// Norm₂ = Norm₁ when the block has one shared norm (<see cref="ModelSpec.SharedNorm"/>), plus a final norm.
    /// </summary>
    Parallel,
}

/// <summary>The feed-forward activation.</summary>
public enum ActivationKind
{
    /// <summary>GELU with the exact erf: 0.5·x·(1 + erf(x/√2)).</summary>
    GeluErf,
    /// <summary>GELU's tanh approximation.</summary>
    GeluTanh,
    /// <summary>SwiGLU: silu(x·W_gate) ⊙ (x·W_up).</summary>
    SwiGlu,
}

/// <summary>How positions enter the model.</summary>
public enum PositionKind
{
    /// <summary>A learned absolute position-embedding table added to the token embeddings.</summary>
    Absolute,
    /// <summary>Rotary position embeddings applied to queries and keys.</summary>
    Rope,
    /// <summary>
    /// ALiBi (BLOOM): no position table; each head adds slope·(key position) to its attention scores, the key positions
    /// counted from the attention mask (cumsum − 1).
    /// </summary>
    Alibi,
}

/// <summary>
/// The architecture of an imported frozen model: everything the engine needs to size buffers and pick
/// kernels. Sizes are read from the graph (tensor shapes, Reshape constants, scale constants), never from
/// a config file.
/// </summary>
public sealed record ModelSpec
{
    /// <summary>The family.</summary>
    public required ModelFamily Family { get; init; }

    /// <summary>Number of transformer layers L.</summary>
    public required int Layers { get; init; }

    /// <summary>Hidden size d.</summary>
    public required int Hidden { get; init; }

    /// <summary>Number of attention (query) heads h.</summary>
    public required int Heads { get; init; }

    /// <summary>Number of key/value heads (equal to <see cref="Heads"/> without grouped-query attention).</summary>
    public required int KvHeads { get; init; }

    /// <summary>Head size d/h.</summary>
    public required int HeadSize { get; init; }

    /// <summary>Feed-forward inner size F.</summary>
    public required int FfnSize { get; init; }

    /// <summary>The normalization kind.</summary>
    public required NormKind Norm { get; init; }

    /// <summary>Where the norms sit.</summary>
    public required NormPlacement NormPlacement { get; init; }

    /// <summary>The normalization epsilon.</summary>
    public required float Epsilon { get; init; }

    /// <summary>The feed-forward activation.</summary>
    public required ActivationKind Activation { get; init; }

    /// <summary>How positions are encoded.</summary>
    public required PositionKind Positions { get; init; }

    /// <summary>Whether attention is causal (decoder).</summary>
    public required bool Causal { get; init; }

    /// <summary>Vocabulary size V (rows of the word-embedding table).</summary>
    public required int VocabSize { get; init; }

    /// <summary>Maximum number of positions (rows of the position table; the context length for RoPE and ALiBi models).</summary>
    public required int MaxPositions { get; init; }

    /// <summary>
    /// RoBERTa's padding_idx where positions are counted from it (create_position_ids_from_input_ids): real tokens take
    /// positions padding_idx + 1, padding_idx + 2, … (padding skipped), padding takes padding_idx; null for BERT's 0..T−1.
    /// Read from the graph, which computes the positions from input_ids ≠ padding_idx.
    /// </summary>
    public int? PositionPaddingId { get; init; }

    /// <summary>
    /// The longest input the position table serves: <see cref="MaxPositions"/>, less padding_idx + 1 rows where
    /// positions count from the padding id (RoBERTa's 514 rows serve 512 tokens).
    /// </summary>
    public int MaxTokens => PositionPaddingId is { } p ? MaxPositions - p - 1 : MaxPositions;

    /// <summary>Token-type vocabulary size (0 when the model has no token types).</summary>
    public required int TypeVocabSize { get; init; }

    /// <summary>
    /// The value added to attention scores of masked-out keys, as the graph computes it:
    /// (1 − mask)·value; −10000 in MiniLM, float.MinValue in newer exports.
    /// </summary>
    public required float MaskValue { get; init; }

    /// <summary>Whether the model has a pooler (Linear + Tanh on the first token).</summary>
    public bool HasPooler { get; init; }

    /// <summary>Whether a norm follows the embedding sum (BERT, BLOOM); GPT-2 and LLaMA have none.</summary>
    public bool EmbeddingNorm { get; init; }

    /// <summary>
    /// RoPE base θ: inverse frequencies θ^(−2i/r) for i &lt; r/2 (as Hugging Face computes them in fp32). Read from the
    /// graph (inverse-frequency constant or cos/sin cache); unused without <see cref="PositionKind.Rope"/>.
    /// </summary>
    public float RopeTheta { get; init; } = 10000f;

    /// <summary>
    /// Rotary dimensions r per head (the first r of each head rotate, rotate-half pairing i ↔ i + r/2); equals
    /// <see cref="HeadSize"/> for LLaMA; 0 without RoPE.
    /// </summary>
    public int RotaryDim { get; init; }

    /// <summary>Whether the q/k/v projections carry biases (BERT, GPT-2, Qwen2; not LLaMA/Mistral).</summary>
    public bool QkvBias { get; init; } = true;

    /// <summary>
    /// Whether the attention output and FFN projections carry biases (BERT, GPT-2, Phi; not the LLaMA family or Falcon).
    /// Norm β follows the norm kind: LayerNorm has one, RMSNorm none.
    /// </summary>
    public bool OtherBiases { get; init; } = true;

    /// <summary>
    /// Parallel blocks only: attention and FFN read one norm (Falcon-7B, Phi; the layer has no FFN norm weights) rather
    /// than one each (Falcon's new decoder architecture).
    /// </summary>
    public bool SharedNorm { get; init; }

    /// <summary>Number of parameters (embeddings, layers, final norm, pooler).</summary>
    public required long ParameterCount { get; init; }

    /// <summary>Whether the layers are pre-norm or parallel, with a final norm after the last layer.</summary>
    public bool HasFinalNorm => NormPlacement is NormPlacement.Pre or NormPlacement.Parallel;

    /// <summary>Size of the key/value projections: <see cref="KvHeads"/>·<see cref="HeadSize"/>.</summary>
    public int KvDim => KvHeads * HeadSize;

    /// <summary>A one-line description, e.g. <c>bert: 6 layers, d 384, 12 heads × 32, FFN 1536, …</c>.</summary>
    public string Describe()
    {
        var ic = CultureInfo.InvariantCulture;
        var heads = KvHeads == Heads ? $"{Heads} heads × {HeadSize}" : $"{Heads} heads ({KvHeads} KV) × {HeadSize}";
        return string.Create(ic,
            $"{Family.ToString().ToLowerInvariant()}: {Layers} layers, d {Hidden}, {heads}, FFN {FfnSize}, " +
            $"{Norm} ({NormPlacement.ToString().ToLowerInvariant()}{(SharedNorm ? ", shared" : "")}, ε {Epsilon:G3}), {Activation}, {Positions} positions ({MaxPositions}{(Positions == PositionKind.Rope ? $", θ {RopeTheta:G6}, rotary {RotaryDim}" : "")}{(PositionPaddingId is { } pad ? $" from padding id {pad}, {MaxTokens} tokens" : "")}), " +
            $"{(Causal ? "causal" : "bidirectional")}, vocabulary {VocabSize:N0}, token types {TypeVocabSize}, " +
            $"mask {MaskValue:G6}{(HasPooler ? ", pooler" : "")}, {ParameterCount / 1e6:F2}M parameters");
    }

    /// <inheritdoc/>
    public override string ToString() => Describe();
}
