using SkTuning.Gpu.Import;
using SkTuning.Gpu.Training;

namespace SkTuning.Gpu.Engine;

/// <summary>
/// LoRA on the query and value projections: <c>q = x·Wq + bq + (α/r)·dropout(x)·A_q·B_q</c>, likewise v, with
/// A [d, r] and B [r, d] trainable and the model's weights frozen.
/// </summary>
/// <param name="Rank">r ≥ 1.</param>
/// <param name="Alpha">α; the update is scaled by α/r.</param>
/// <param name="Dropout">Drop probability on the LoRA input x in training, in [0, 1).</param>
public sealed record LoraOptions(int Rank, float Alpha, float Dropout)
{
    /// <summary>α/r.</summary>
    public float Scale => Alpha / Rank;

    /// <summary>Throws unless the rank is positive and the dropout in [0, 1).</summary>
    /// <exception cref="ArgumentException">An option is out of range (the message names it).</exception>
    public void Validate()
    {
        if (Rank < 1) throw new ArgumentException($"LoRA rank must be at least 1, got {Rank}");
        if (!(Dropout >= 0f && Dropout < 1f)) throw new ArgumentException($"LoRA dropout must be in [0, 1), got {Dropout}");
        if (!float.IsFinite(Alpha)) throw new ArgumentException($"LoRA alpha must be finite, got {Alpha}");
    }
}

/// <summary>
/// The names of one layer's weight tensors: the one naming scheme of engine weights, full fine-tuning's parameters and
/// saved runs. "attention.norm" and "output.norm" are the norms of the attention and FFN branches (after their residual
/// in post-norm models, before their branch in pre-norm models).
/// </summary>
/// <param name="QkvWeight">Fused q|k|v projection [d, d + 2·kvDim].</param>
/// <param name="QkvBias">Fused q|k|v bias [d + 2·kvDim] (absent without q/k/v biases).</param>
/// <param name="AttentionOutputWeight">Attention output projection [d, d].</param>
/// <param name="AttentionOutputBias">Attention output bias [d].</param>
/// <param name="AttentionNormGamma">The attention branch's norm γ [d].</param>
/// <param name="AttentionNormBeta">The attention branch's norm β [d] (LayerNorm only).</param>
/// <param name="FfnUpWeight">FFN input projection [d, F], or [d, 2F] (columns gate | up) with SwiGLU.</param>
/// <param name="FfnUpBias">FFN input bias [F].</param>
/// <param name="FfnDownWeight">FFN output projection [F, d].</param>
/// <param name="FfnDownBias">FFN output bias [d].</param>
/// <param name="FfnNormGamma">The FFN branch's norm γ [d].</param>
/// <param name="FfnNormBeta">The FFN branch's norm β [d] (LayerNorm only).</param>
public sealed record LayerTensorNames(
    string QkvWeight, string QkvBias, string AttentionOutputWeight, string AttentionOutputBias,
    string AttentionNormGamma, string AttentionNormBeta, string FfnUpWeight, string FfnUpBias,
    string FfnDownWeight, string FfnDownBias, string FfnNormGamma, string FfnNormBeta);

/// <summary>
/// The transformer's trainable tensors for the two baselines that train inside the model: full fine-tuning (every
/// weight, <see cref="WeightTensors"/>) and LoRA on query/value (<see cref="LoraTensors"/>). A trainer registers these
/// next to the head's tensors in one <see cref="TrainableParameters"/>, initializes them (<see cref="CopyPretrained"/>,
/// <see cref="InitializeLora"/>) and builds the engine on them; one fused AdamW step then updates everything.
/// </summary>
public static class EngineParameters
{
    /// <summary>Word embeddings [V, d].</summary>
    public const string WordEmbeddings = "embeddings.word";

    /// <summary>Position embeddings [P, d].</summary>
    public const string PositionEmbeddings = "embeddings.position";

    /// <summary>Token-type embeddings [Tt, d].</summary>
    public const string TokenTypeEmbeddings = "embeddings.token_type";

    /// <summary>Embedding LayerNorm γ [d].</summary>
    public const string EmbeddingNormGamma = "embeddings.norm.gamma";

    /// <summary>Embedding LayerNorm β [d].</summary>
    public const string EmbeddingNormBeta = "embeddings.norm.beta";

    /// <summary>Layer <paramref name="layer"/>'s tensor names, e.g. <c>layer0.qkv.weight</c>, <c>layer0.output.norm.beta</c>.</summary>
    public static LayerTensorNames LayerNames(int layer)
    {
        var p = $"layer{layer}.";
        return new LayerTensorNames(p + "qkv.weight", p + "qkv.bias", p + "attention.output.weight", p + "attention.output.bias",
            p + "attention.norm.gamma", p + "attention.norm.beta", p + "ffn.up.weight", p + "ffn.up.bias",
            p + "ffn.down.weight", p + "ffn.down.bias", p + "output.norm.gamma", p + "output.norm.beta");
    }

    /// <summary>LoRA tensor names of layer <paramref name="layer"/>: <c>layer{l}.lora.{query|value}.{a|b}</c>.</summary>
    public static (string QueryA, string QueryB, string ValueA, string ValueB) LoraNames(int layer) =>
        ($"layer{layer}.lora.query.a", $"layer{layer}.lora.query.b", $"layer{layer}.lora.value.a", $"layer{layer}.lora.value.b");

    /// <summary>Final norm γ [d] (pre-norm models).</summary>
    public const string FinalNormGamma = "final_norm.gamma";

    /// <summary>Final norm β [d] (pre-norm models with LayerNorm).</summary>
    public const string FinalNormBeta = "final_norm.beta";

    /// <summary>Columns of the fused q|k|v projection: d + 2·kvDim.</summary>
    public static int QkvWidth(ModelSpec spec) => spec.Heads * spec.HeadSize + 2 * spec.KvDim;

    /// <summary>Columns of the FFN input projection: 2F with SwiGLU (gate | up), else F.</summary>
    public static int FfnInputWidth(ModelSpec spec) => spec.Activation == ActivationKind.SwiGlu ? 2 * spec.FfnSize : spec.FfnSize;

    /// <summary>
    /// Every weight of the transformer that the model has (the pooler excluded: no head uses it), named and shaped as the
    /// engine uses them (matrices [in, out]; q, k, v fused as <c>layer{l}.qkv.weight</c>, columns q | k | v; SwiGLU's gate
    /// and up fused as <c>layer{l}.ffn.up.weight</c>, columns gate | up). Absent tensors (biases, β of RMSNorm, position
    /// or token-type tables) are not listed.
    /// </summary>
    public static IEnumerable<(string Name, int[] Shape)> WeightTensors(ModelSpec spec)
    {
        int d = spec.Hidden, F = spec.FfnSize, qkv = QkvWidth(spec);
        bool beta = spec.Norm == NormKind.LayerNorm;
        yield return (WordEmbeddings, [spec.VocabSize, d]);
        if (spec.Positions == PositionKind.Absolute) yield return (PositionEmbeddings, [spec.MaxPositions, d]);
        if (spec.TypeVocabSize > 0) yield return (TokenTypeEmbeddings, [spec.TypeVocabSize, d]);
        if (spec.EmbeddingNorm)
        {
            yield return (EmbeddingNormGamma, [d]);
            if (beta) yield return (EmbeddingNormBeta, [d]);
        }
        for (int l = 0; l < spec.Layers; l++)
        {
            var n = LayerNames(l);
            yield return (n.QkvWeight, [d, qkv]);
            if (spec.QkvBias) yield return (n.QkvBias, [qkv]);
            yield return (n.AttentionOutputWeight, [d, d]);
            if (spec.OtherBiases) yield return (n.AttentionOutputBias, [d]);
            yield return (n.AttentionNormGamma, [d]);
            if (beta) yield return (n.AttentionNormBeta, [d]);
            yield return (n.FfnUpWeight, [d, FfnInputWidth(spec)]);
            if (spec.OtherBiases) yield return (n.FfnUpBias, [F]);
            yield return (n.FfnDownWeight, [F, d]);
            if (spec.OtherBiases) yield return (n.FfnDownBias, [d]);
            if (spec.SharedNorm) continue;
            yield return (n.FfnNormGamma, [d]);
            if (beta) yield return (n.FfnNormBeta, [d]);
        }
        if (spec.HasFinalNorm)
        {
            yield return (FinalNormGamma, [d]);
            if (beta) yield return (FinalNormBeta, [d]);
        }
    }

    /// <summary>The frozen model's weights as host tensors named like <see cref="WeightTensors"/> (q, k, v fused; gate, up fused).</summary>
    /// <exception cref="SkTuningException">A weight's size disagrees with the spec (the message names it).</exception>
    public static Dictionary<string, float[]> PretrainedTensors(ModelWeights weights) =>
        PretrainedTensorsInOrder(weights).ToDictionary(t => t.Name, t => t.Data);

    /// <summary>
    /// The frozen model's weights one tensor at a time, in <see cref="WeightTensors"/> order; fused tensors are built when
    /// reached, so at most one exists at a time. With <paramref name="release"/> the host arrays are dropped from
    /// <paramref name="weights"/> once the consumer has moved past them (<see cref="ModelWeights.ReleaseLayer"/>,
    /// <see cref="ModelWeights.ReleaseWordEmbeddings"/>): a loader that converts each tensor then never holds the whole
    /// fp32 model beside its converted copy.
    /// </summary>
    /// <exception cref="SkTuningException">A weight's size disagrees with the spec (the message names it).</exception>
    public static IEnumerable<(string Name, float[] Data)> PretrainedTensorsInOrder(ModelWeights weights, bool release = false)
    {
        if (weights.Released)
            throw new SkTuningException("model weights: the host copies were released into an engine (bench's memory saving); load the model again");
        var spec = weights.Spec;
        var source = new Dictionary<string, (int Layer, Func<float[]> Data)>
        {
            [WordEmbeddings] = (-1, () => weights.Embeddings.Word), [PositionEmbeddings] = (-1, () => weights.Embeddings.Position),
            [TokenTypeEmbeddings] = (-1, () => weights.Embeddings.TokenType), [EmbeddingNormGamma] = (-1, () => weights.Embeddings.NormGamma),
            [EmbeddingNormBeta] = (-1, () => weights.Embeddings.NormBeta),
            [FinalNormGamma] = (-1, () => weights.FinalNormGamma), [FinalNormBeta] = (-1, () => weights.FinalNormBeta),
        };
        for (int l = 0; l < weights.Layers.Count; l++)
        {
            int layer = l;
            LayerWeights W() => weights.Layers[layer];
            var n = LayerNames(l);
            source[n.QkvWeight] = (l, () => W().FusedQkvWeight(spec.Hidden));
            source[n.QkvBias] = (l, () => W().FusedQkvBias());
            source[n.AttentionOutputWeight] = (l, () => W().Wo);
            source[n.AttentionOutputBias] = (l, () => W().Bo);
            source[n.AttentionNormGamma] = (l, () => W().AttentionNormGamma);
            source[n.AttentionNormBeta] = (l, () => W().AttentionNormBeta);
            source[n.FfnUpWeight] = (l, () => spec.Activation == ActivationKind.SwiGlu ? W().FusedGateUpWeight(spec.Hidden) : W().W1);
            source[n.FfnUpBias] = (l, () => W().B1);
            source[n.FfnDownWeight] = (l, () => W().W2);
            source[n.FfnDownBias] = (l, () => W().B2);
            source[n.FfnNormGamma] = (l, () => W().FfnNormGamma);
            source[n.FfnNormBeta] = (l, () => W().FfnNormBeta);
        }
        int current = -1;
        foreach (var (name, shape) in WeightTensors(spec))
        {
            var (layer, get) = source.TryGetValue(name, out var s) ? s : (-1, () => []);
            if (release && layer != current && current >= 0)
            {
                weights.ReleaseLayer(current);
                GC.Collect();   // so that the next layer's arrays reuse the released memory instead of growing the heap
            }
            current = layer;
            var data = get();
            long expected = shape.Aggregate(1L, (a, b) => a * b);
            if (data.Length != expected)
                throw new SkTuningException($"model weights: '{name}' has {data.Length} values, the {spec.Family} spec needs [{string.Join(",", shape)}] = {expected}");
            yield return (name, data);
            if (release && name == WordEmbeddings)
            {
                weights.ReleaseWordEmbeddings();
                GC.Collect();
            }
        }
        if (release && current >= 0) weights.ReleaseLayer(current);
    }

    /// <summary>Uploads the pretrained weights into <paramref name="p"/>'s values (every <see cref="WeightTensors"/> entry must be registered).</summary>
    /// <exception cref="SkTuningException">A tensor is not registered.</exception>
    /// <exception cref="ArgumentException">A registered tensor has another size.</exception>
    public static void CopyPretrained(ModelWeights weights, TrainableParameters p)
    {
        foreach (var (name, data) in PretrainedTensors(weights))
        {
            if (!p.Contains(name)) throw new SkTuningException($"full fine-tuning: tensor '{name}' is not registered (register EngineParameters.WeightTensors)");
            p.Set(p[name], data);
        }
    }

    /// <summary>LoRA's trainable tensors: per layer A [d, r] and B [r, d] for the query, A [d, r] and B [r, kvDim] for the value projection.</summary>
    public static IEnumerable<(string Name, int[] Shape)> LoraTensors(ModelSpec spec, int rank)
    {
        if (rank < 1) throw new ArgumentException($"LoRA rank must be at least 1, got {rank}", nameof(rank));
        int d = spec.Hidden;
        for (int l = 0; l < spec.Layers; l++)
        {
            var (qa, qb, va, vb) = LoraNames(l);
            yield return (qa, [d, rank]);
            yield return (qb, [rank, d]);
            yield return (va, [d, rank]);
            yield return (vb, [rank, spec.KvDim]);
        }
    }

    /// <summary>
    /// PEFT's LoRA initialization: A uniform in ±1/√d (kaiming-uniform with a = √5 on fan-in d), B zero, so the
    /// model starts exactly as the frozen one. Deterministic in <paramref name="rng"/>.
    /// </summary>
    public static void InitializeLora(ModelSpec spec, int rank, TrainableParameters p, Random rng)
    {
        int d = spec.Hidden;
        double bound = 1 / Math.Sqrt(d);
        for (int l = 0; l < spec.Layers; l++)
        {
            var (qa, qb, va, vb) = LoraNames(l);
            foreach (var a in new[] { qa, va })
            {
                var host = new float[d * rank];
                for (int i = 0; i < host.Length; i++) host[i] = (float)((rng.NextDouble() * 2 - 1) * bound);
                p.Set(p[a], host);
            }
            p.Set(p[qb], new float[rank * d]);
            p.Set(p[vb], new float[rank * spec.KvDim]);
        }
    }

    /// <summary>
    /// Values trained inside the model by full fine-tuning: the model's parameter count without the pooler (which no
    /// head uses). The trainer adds the head's tensors.
    /// </summary>
    public static long FullParameterCount(ModelSpec spec) =>
        WeightTensors(spec).Sum(t => t.Shape.Aggregate(1L, (a, b) => a * b));

    /// <summary>
    /// Values trained inside the model by LoRA: L·r·(3d + kvDim) (A and B for query and value; 2·L·2·r·d without grouped
    /// KV heads). The trainer adds the head's tensors.
    /// </summary>
    public static long LoraParameterCount(ModelSpec spec, int rank) => (long)spec.Layers * rank * (3L * spec.Hidden + spec.KvDim);
}
