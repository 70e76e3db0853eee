using SkTuning.Gpu.Onnx;

namespace SkTuning.Gpu.Import;

/// <summary>
/// Imports a GPT-2-style decoder (GPT2Model exports) by structure: word + learned position embeddings, pre-LayerNorm
/// layers with a fused query/key/value projection (Conv1D, split in three), GELU-tanh FFN, a causal mask built in the
/// graph, and the final LayerNorm (ln_f).
/// </summary>
public static class Gpt2Importer
{
    /// <summary>Loads and imports an .onnx file.</summary>
    public static ImportedModel Import(string path) => Import(OnnxModel.Load(path));

    /// <summary>Imports a loaded model.</summary>
    /// <exception cref="SkTuningException">The graph is not a GPT-2-style decoder (the message names the node).</exception>
    public static ImportedModel Import(OnnxModel model)
    {
        var r = DecoderReader.Read(model, ModelFamily.Gpt2);
        var s = r.Imported.Spec;
        var g = new GraphWalker(model);
        if (s.Positions != PositionKind.Absolute) throw g.Fail("rotary embeddings in a GPT-2 graph (import it as LLaMA)", r.FirstSoftmax);
        if (s.Norm != NormKind.LayerNorm) throw g.Fail($"{s.Norm} in a GPT-2 graph (GPT-2 uses LayerNorm)", r.FirstSoftmax);
        if (s.Activation is not (ActivationKind.GeluTanh or ActivationKind.GeluErf))
            throw g.Fail($"{s.Activation} FFN in a GPT-2 graph", r.FirstSoftmax);
        return r.Imported;
    }
}

/// <summary>
/// Imports a LLaMA-family decoder (LLaMA, Mistral, Qwen2, SmolLM, TinyLlama; <see cref="ModelFamily.Llama"/>) by
/// structure: word embeddings, pre-RMSNorm layers with query/key/value projections (biases: Qwen2), rotary embeddings
/// (inverse frequencies computed in the graph or cos/sin caches), grouped KV heads (repeat_kv), SwiGLU FFN, a causal
/// mask built in the graph, and the final RMSNorm. "With past" exports (past_key_values.N.key/value inputs) import
/// the same way and list their cache inputs in <see cref="ImportedModel.PastInputNames"/>.
/// </summary>
public static class LlamaImporter
{
    /// <summary>Loads and imports an .onnx file.</summary>
    public static ImportedModel Import(string path) => Import(OnnxModel.Load(path));

    /// <summary>Imports a loaded model.</summary>
    /// <exception cref="SkTuningException">The graph is not a LLaMA-family decoder (the message names the node).</exception>
    public static ImportedModel Import(OnnxModel model)
    {
        var r = DecoderReader.Read(model, ModelFamily.Llama);
        var s = r.Imported.Spec;
        var g = new GraphWalker(model);
        if (s.Positions != PositionKind.Rope) throw g.Fail("learned absolute positions in a LLaMA graph (no rotary embedding)", r.FirstSoftmax);
        if (s.Norm != NormKind.RmsNorm) throw g.Fail($"{s.Norm} in a LLaMA graph (LLaMA uses RMSNorm)", r.FirstSoftmax);
        if (s.Activation != ActivationKind.SwiGlu) throw g.Fail($"{s.Activation} FFN in a LLaMA graph (LLaMA uses SwiGLU)", r.FirstSoftmax);
        if (s.OtherBiases) throw g.Fail("biases on the attention output or FFN projections in a LLaMA graph", r.FirstSoftmax);
        return r.Imported;
    }
}

/// <summary>
/// Imports a Falcon decoder (FalconModel, RoPE variants; <see cref="ModelFamily.Falcon"/>) by structure: word
/// embeddings, parallel blocks — attention and FFN side by side from one LayerNorm (input_layernorm, 7B) or one each
/// (ln_attn / ln_mlp, the new decoder architecture) — with the fused query_key_value cut into query, key and value
/// heads (multi-query [h + 2, hd], or per KV group [groups, heads/group + 2, hd], permuted on import into q | k | v),
/// rotary embeddings over the whole head, exact GELU, a causal mask built in the graph, and the final LayerNorm (ln_f).
/// </summary>
public static class FalconImporter
{
    /// <summary>Loads and imports an .onnx file.</summary>
    public static ImportedModel Import(string path) => Import(OnnxModel.Load(path));

    /// <summary>Imports a loaded model.</summary>
    /// <exception cref="SkTuningException">The graph is not a Falcon decoder (the message names the node).</exception>
    public static ImportedModel Import(OnnxModel model)
    {
        var r = DecoderReader.Read(model, ModelFamily.Falcon);
        var s = r.Imported.Spec;
        var g = new GraphWalker(model);
        if (s.NormPlacement != NormPlacement.Parallel) throw g.Fail("sequential attention and FFN in a Falcon graph (Falcon's blocks are parallel)", r.FirstSoftmax);
        if (s.Positions != PositionKind.Rope) throw g.Fail($"{s.Positions} positions in a Falcon graph (no rotary embedding)", r.FirstSoftmax);
        if (s.RotaryDim != s.HeadSize) throw g.Fail($"partial rotary ({s.RotaryDim} of {s.HeadSize} dimensions) in a Falcon graph", r.FirstSoftmax);
        if (s.Norm != NormKind.LayerNorm) throw g.Fail($"{s.Norm} in a Falcon graph (Falcon uses LayerNorm)", r.FirstSoftmax);
        if (s.Activation != ActivationKind.GeluErf) throw g.Fail($"{s.Activation} FFN in a Falcon graph (Falcon uses exact GELU)", r.FirstSoftmax);
        return r.Imported;
    }
}

/// <summary>
/// Imports a BLOOM decoder (BloomModel exports) by structure: word embeddings and their LayerNorm
/// (word_embeddings_layernorm), no position table, pre-LayerNorm layers with a fused query_key_value laid out per head
/// ([heads, 3, head size], permuted on import into the engine's [q | k | v]), ALiBi added to the scores (per-head slopes
/// from build_alibi_tensor, key positions counted from the attention mask), masked_fill with the dtype minimum, GELU-tanh
/// FFN, biases everywhere, and the final LayerNorm (ln_f).
/// </summary>
public static class BloomImporter
{
    /// <summary>Loads and imports an .onnx file.</summary>
    public static ImportedModel Import(string path) => Import(OnnxModel.Load(path));

    /// <summary>Imports a loaded model.</summary>
    /// <exception cref="SkTuningException">The graph is not a BLOOM decoder (the message names the node).</exception>
    public static ImportedModel Import(OnnxModel model)
    {
        var r = DecoderReader.Read(model, ModelFamily.Bloom);
        var s = r.Imported.Spec;
        var g = new GraphWalker(model);
        if (s.Positions != PositionKind.Alibi) throw g.Fail($"{s.Positions} positions in a BLOOM graph (no ALiBi term on the attention scores)", r.FirstSoftmax);
        if (!s.EmbeddingNorm) throw g.Fail("no LayerNorm after the word embeddings in a BLOOM graph", r.FirstSoftmax);
        if (s.NormPlacement != NormPlacement.Pre) throw g.Fail("parallel attention and FFN in a BLOOM graph (BLOOM's blocks are sequential)", r.FirstSoftmax);
        if (s.Norm != NormKind.LayerNorm) throw g.Fail($"{s.Norm} in a BLOOM graph (BLOOM uses LayerNorm)", r.FirstSoftmax);
        if (s.Activation is not (ActivationKind.GeluTanh or ActivationKind.GeluErf))
            throw g.Fail($"{s.Activation} FFN in a BLOOM graph", r.FirstSoftmax);
        if (s.KvHeads != s.Heads) throw g.Fail($"{s.KvHeads} key/value heads for {s.Heads} query heads in a BLOOM graph", r.FirstSoftmax);
        return r.Imported;
    }
}

/// <summary>
/// Imports a Phi decoder (PhiModel: Phi-1, Phi-1.5, Phi-2; <see cref="ModelFamily.Phi"/>) by structure: word embeddings,
/// parallel blocks from one LayerNorm (input_layernorm) with q_proj / k_proj / v_proj and dense (biases), partial rotary
/// embeddings (the first rotary_dim of each head, sliced off as q_rot / k_rot), a GELU FFN fc1 / fc2 (gelu_new: the tanh
/// form), a causal mask built in the graph, and the final LayerNorm (final_layernorm).
/// </summary>
public static class PhiImporter
{
    /// <summary>Loads and imports an .onnx file.</summary>
    public static ImportedModel Import(string path) => Import(OnnxModel.Load(path));

    /// <summary>Imports a loaded model.</summary>
    /// <exception cref="SkTuningException">The graph is not a Phi decoder (the message names the node).</exception>
    public static ImportedModel Import(OnnxModel model)
    {
        var r = DecoderReader.Read(model, ModelFamily.Phi);
        var s = r.Imported.Spec;
        var g = new GraphWalker(model);
        if (s.NormPlacement != NormPlacement.Parallel || !s.SharedNorm)
            throw g.Fail($"{(s.NormPlacement == NormPlacement.Parallel ? "a norm per branch" : "sequential attention and FFN")} in a Phi graph (Phi's attention and FFN read one LayerNorm)", r.FirstSoftmax);
        if (s.Positions != PositionKind.Rope) throw g.Fail("learned absolute positions in a Phi graph (no rotary embedding)", r.FirstSoftmax);
        if (s.Norm != NormKind.LayerNorm) throw g.Fail($"{s.Norm} in a Phi graph (Phi uses LayerNorm)", r.FirstSoftmax);
        if (s.Activation is not (ActivationKind.GeluTanh or ActivationKind.GeluErf)) throw g.Fail($"{s.Activation} FFN in a Phi graph", r.FirstSoftmax);
        return r.Imported;
    }
}

/// <summary>
/// Picks the importer by the graph's structure: embeddings that go straight into a norm feeding the first layer's
/// projections (post-norm) are BERT, and a LayerNorm of the word embeddings that starts a pre-norm residual stream is
/// BLOOM; a pre-norm residual stream with a learned position table is GPT-2; a residual Add of two branches summed first
/// (attention + FFN) is a parallel block — Phi when the attention output projection has a bias, Falcon when not; any
/// other rotary decoder is LLaMA. Each importer then checks the rest of its family's structure.
/// </summary>
public static class ModelImporter
{
    /// <summary>Loads and imports an .onnx file.</summary>
    public static ImportedModel Import(string path) => Import(OnnxModel.Load(path));

    /// <summary>Imports a loaded model with the importer its structure calls for.</summary>
    /// <exception cref="SkTuningException">No supported family fits (the message names the file and the node).</exception>
    public static ImportedModel Import(OnnxModel model)
    {
        var g = new GraphWalker(model);
        var (_, position, _, sum) = g.Embeddings();
        var residual = g.ConsumersThrough(sum).FirstOrDefault(n => n.OpType == "Add");
        if (residual is null) return g.EmbeddingNorm(sum) is null ? BertImporter.Import(model) : BloomImporter.Import(model);
        if (position is not null) return Gpt2Importer.Import(model);
        // Parallel: the branch added to the residual stream is itself an Add of two computed values (attention + FFN),
        // where a pre-norm layer adds the attention output projection (a MatMul, or a bias Add with a constant).
        bool IsComputed(string v) => model.TryGetTensor(v) is null;
        if (model.Producer(GraphWalker.Other(residual, sum)) is { OpType: "Add" } branches && branches.Inputs.All(IsComputed))
        {
            bool biased = branches.Inputs.Any(b => model.Producer(b) is { OpType: "Add" } bias && bias.Inputs.Any(i => g.FloatVector(i) is not null));
            return biased ? PhiImporter.Import(model) : FalconImporter.Import(model);
        }
        return LlamaImporter.Import(model);
    }
}
