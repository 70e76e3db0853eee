using SkTuning.Gpu.Import;

namespace SkTuning.Gpu.Export;

/// <summary>
/// How Hugging Face PEFT stores what our adapters compute: the tensor layouts and the module paths of the bare backbone
/// (<c>AutoModel</c>: <c>BertModel</c>, <c>LlamaModel</c>, …) the adapter is loaded onto.
/// </summary>
public static class PeftLayout
{
    /// <summary>
    /// PEFT's <c>prompt_embeddings</c> [m, 2·L·kvDim] of a prefix [L, 2, m, kvDim] (block 2l + j: layer l's keys j = 0 or
    /// values j = 1). PEFT reads the row as <c>view(m, 2L, heads, kvDim/heads)</c> then <c>permute(2, 0, 3, 1, 4)</c> and
    /// splits into pairs: entry (t, (2l + j)·kvDim + c) becomes layer l's key/value of virtual token t, column c.
    /// </summary>
    /// <param name="prefix">The prefix [L, 2, m, kvDim], as the engine takes it.</param>
    /// <param name="layers">L.</param>
    /// <param name="tokens">m.</param>
    /// <param name="kvDim">Key/value width per layer.</param>
    public static float[] PrefixEmbeddings(ReadOnlySpan<float> prefix, int layers, int tokens, int kvDim)
    {
        int groups = 2 * layers, row = groups * kvDim;
        if (prefix.Length != groups * tokens * kvDim)
            throw new ArgumentException($"prefix has {prefix.Length} values, expected 2·L·m·kvDim = {groups}·{tokens}·{kvDim}", nameof(prefix));
        var embeddings = new float[tokens * row];
        for (int g = 0; g < groups; g++)
            for (int t = 0; t < tokens; t++)
                prefix.Slice((g * tokens + t) * kvDim, kvDim).CopyTo(embeddings.AsSpan(t * row + g * kvDim, kvDim));
        return embeddings;
    }

    /// <summary>The [cols, rows] transpose of a row-major [rows, cols] matrix (our x·W layout → torch's Linear weight).</summary>
    public static float[] Transpose(ReadOnlySpan<float> matrix, int rows, int cols)
    {
        if (matrix.Length != rows * cols) throw new ArgumentException($"{matrix.Length} values are not [{rows}, {cols}]", nameof(matrix));
        var t = new float[matrix.Length];
        for (int r = 0; r < rows; r++)
            for (int c = 0; c < cols; c++)
                t[c * rows + r] = matrix[r * cols + c];
        return t;
    }

    /// <summary>
    /// The backbone's query and value projection modules of layer <paramref name="layer"/> and the target_modules names
    /// PEFT matches them by, for families whose query and value are separate Linear layers (BERT/RoBERTa:
    /// <c>encoder.layer.N.attention.self.query</c>; LLaMA/Mistral/Qwen2/Phi: <c>layers.N.self_attn.q_proj</c>). Null for
    /// families with a fused q|k|v projection (GPT-2 <c>c_attn</c>, Falcon and BLOOM <c>query_key_value</c>).
    /// </summary>
    public static (string Query, string Value, string[] TargetModules)? LoraModules(ModelFamily family, int layer) => family switch
    {
        ModelFamily.Bert or ModelFamily.Roberta =>
            ($"encoder.layer.{layer}.attention.self.query", $"encoder.layer.{layer}.attention.self.value", ["query", "value"]),
        ModelFamily.Llama or ModelFamily.Mistral or ModelFamily.Phi =>
            ($"layers.{layer}.self_attn.q_proj", $"layers.{layer}.self_attn.v_proj", ["q_proj", "v_proj"]),
        _ => null,
    };

    /// <summary>PEFT's saved key of a LoRA matrix: <c>base_model.model.{module}.lora_{A|B}.weight</c>.</summary>
    public static string LoraKey(string module, char matrix) => $"base_model.model.{module}.lora_{matrix}.weight";

    /// <summary>The Hugging Face id of a catalog model (for <c>base_model_name_or_path</c>); null for paths.</summary>
    public static string? HubId(string model) => model.ToLowerInvariant() switch
    {
        "minilm" => "sentence-transformers/all-MiniLM-L6-v2",
        "arctic-xs" => "Snowflake/snowflake-arctic-embed-xs",
        _ => null,
    };
}
