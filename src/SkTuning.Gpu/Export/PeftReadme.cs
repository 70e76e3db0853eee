using System.Text;
using SkTuning.Gpu.Data;
using SkTuning.Gpu.Import;
using SkTuning.Gpu.Training;

namespace SkTuning.Gpu.Export;

/// <summary>The <c>README.md</c> of a PEFT export: how to load the adapter, apply the head, and what differs from sktune.</summary>
internal static class PeftReadme
{
    public static string Write(string peftType, AdapterConfig config, ModelSpec spec, string baseModel)
    {
        var s = new StringBuilder();
        bool prompt = peftType == "PROMPT_TUNING";
        s.AppendLine($"# {config.Method} run as a PEFT {peftType} adapter");
        s.AppendLine();
        s.AppendLine($"Exported by `sktune export --format peft` from a run of `{config.Method}` on `{config.Model}` ({spec.Family}, " +
            $"{spec.Layers} layers, d {spec.Hidden}, {spec.Heads} heads, {spec.KvHeads} KV heads), task `{config.Task}` ({config.TaskKind}).");
        s.AppendLine("The adapter is for the bare backbone (`AutoModel`, task type FEATURE_EXTRACTION); the task head is beside it.");
        s.AppendLine();
        s.AppendLine("```python");
        s.AppendLine("import torch");
        s.AppendLine("from transformers import AutoModel, AutoTokenizer");
        s.AppendLine("from peft import PeftModel");
        s.AppendLine("from safetensors.torch import load_file");
        s.AppendLine();
        s.AppendLine($"base = AutoModel.from_pretrained(\"{baseModel}\")");
        s.AppendLine("model = PeftModel.from_pretrained(base, EXPORT_DIR).eval()");
        s.AppendLine("head = load_file(f\"{EXPORT_DIR}/head.safetensors\")  # weight [C, d], bias [C]");
        s.AppendLine($"batch = AutoTokenizer.from_pretrained(\"{baseModel}\")(texts, padding=True, return_tensors=\"pt\")  # right padding");
        s.AppendLine("hidden = model(**batch).last_hidden_state");
        if (prompt) s.AppendLine($"hidden = hidden[:, {config.Tokens}:]  # the {config.Tokens} prompt rows come first");
        s.AppendLine("mask = batch[\"attention_mask\"].unsqueeze(-1).to(hidden.dtype)");
        s.AppendLine(config.TaskKind == TaskKind.TokenClassification ? "pooled = hidden  # one prediction per token"
            : config.Pooling switch
            {
                Pooling.Mean => "pooled = (hidden * mask).sum(1) / mask.sum(1)  # mean over the real tokens",
                Pooling.Cls => "pooled = hidden[:, 0]  # the first token ([CLS])",
                _ => "pooled = hidden[torch.arange(hidden.shape[0]), batch[\"attention_mask\"].sum(1) - 1]  # the last real token",
            });
        s.AppendLine("logits = pooled @ head[\"weight\"].T + head[\"bias\"]");
        s.AppendLine("```");
        s.AppendLine();
        s.AppendLine(config.TaskKind == TaskKind.Regression
            ? "The head has one output: the predicted value."
            : $"Labels in class-id order: {string.Join(", ", (config.Labels ?? []).Select(l => $"`{l}`"))} (also in head.safetensors' metadata); " +
              "softmax of the logits gives the probabilities.");
        s.AppendLine();
        s.AppendLine("## Caveats");
        s.AppendLine();
        foreach (var line in Caveats(peftType, config, spec)) s.AppendLine($"- {line}");
        return s.ToString();
    }

    private static IEnumerable<string> Caveats(string peftType, AdapterConfig config, ModelSpec spec)
    {
        yield return "Values are fp32. The head is not a transformers classifier: BERT's pooler and `*ForSequenceClassification` heads are not used.";
        if (peftType == "PREFIX_TUNING")
        {
            yield return "`prompt_embeddings` holds the prefix the trained adapter computes (evaluated once, dropout off); with `prefix_projection: false` " +
                "PEFT reads it as the key/value table itself, so training it further in PEFT tunes the prefix directly, not the original parameterization.";
            if (spec.Positions == PositionKind.Rope)
                yield return "Keys are stored rotated to positions 0..m−1, as Hugging Face's cache holds them.";
            if (spec.KvHeads != spec.Heads)
                yield return $"Grouped KV heads: `token_dim` is kvDim = {spec.KvDim} and `num_attention_heads` the {spec.KvHeads} KV heads, as PEFT sets them for grouped-query attention (PEFT ≥ 0.12).";
            if (spec.Causal)
                yield return "Tokens follow the prefix at positions m, m+1, … as in sktune for right-padded or unpadded input; with left padding " +
                    "transformers' default position ids count the padding while sktune skips it, so pad on the right.";
            else
                yield return "Encoder positions differ: sktune keeps the tokens at positions 0..T−1 beside a prefix, while transformers' encoders given " +
                    "past_key_values shift them to m..m+T−1 (and PEFT drops explicit position_ids), so outputs differ from sktune's unless the " +
                    "embedding positions are forced back to 0..T−1. PEFT's prompt-learning forward also drops token_type_ids, so sentence-pair " +
                    "inputs lose their segment ids. Recent transformers versions may also refuse past_key_values on an encoder.";
        }
        if (peftType == "PROMPT_TUNING")
        {
            yield return "PEFT concatenates the prompt to the word embeddings; sktune prepends it after the embedding layer. They agree on this model " +
                (spec.Positions == PositionKind.Absolute
                    ? "because the exported rows are P − wpe[0..m−1]: GPT-2 adds its position rows 0..m−1 back."
                    : "because it has no embedding norm or position table.");
            yield return "The prompt rows are the first m rows of last_hidden_state; pool over the rest.";
        }
        if (peftType == "LORA")
            yield return $"LoRA on the query and value projections, scale lora_alpha/r = {config.Training.LoraAlpha}/{config.Training.LoraRank}; lora_dropout applies in training only.";
    }
}
