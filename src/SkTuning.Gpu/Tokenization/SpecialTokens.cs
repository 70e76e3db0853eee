using System.Text.Json;

namespace SkTuning.Gpu.Tokenization;

/// <summary>
/// A decoder tokenizer's special tokens and whether it adds them, from the files beside the model:
/// <c>tokenizer_config.json</c> first, then <c>special_tokens_map.json</c>, then <c>tokenizer.json</c>'s
/// <c>post_processor</c> (a TemplateProcessing that opens with BOS or closes with EOS), then the kind's default.
/// </summary>
internal sealed record SpecialTokens(int? BosId, int? EosId, int? PadId, bool AddBos, bool AddEos)
{
    /// <summary>Reads the special tokens of the tokenizer in <paramref name="directory"/>.</summary>
    /// <param name="directory">The model's folder.</param>
    /// <param name="lookup">Token string → id (added tokens, then the vocabulary); null where unknown.</param>
    /// <param name="tokenizerJson">The parsed tokenizer.json, if the tokenizer came from one.</param>
    /// <param name="defaults">What the kind does without configuration (ids from the model file, Llama's add-BOS).</param>
    public static SpecialTokens Read(string directory, Func<string, int?> lookup, JsonElement? tokenizerJson, SpecialTokens defaults)
    {
        var config = ReadObject(Path.Combine(directory, "tokenizer_config.json"));
        var map = ReadObject(Path.Combine(directory, "special_tokens_map.json"));
        var (templateBos, templateEos) = tokenizerJson is { } tj ? FromTemplate(tj) : (null, null);

        int? Id(string key, int? fallback)
        {
            // An explicit null (Llama's "pad_token": null) means the model has no such token.
            foreach (var source in new[] { config, map })
                if (source is { } s && s.TryGetProperty(key, out var v))
                    return TokenString(v) is { } token
                        ? lookup(token) ?? throw new SkTuningException($"{directory}: {key} '{token}' is not in the vocabulary")
                        : null;
            return fallback;
        }
        bool Flag(string key, bool fallback) =>
            config is { } c && c.TryGetProperty(key, out var v) && v.ValueKind is JsonValueKind.True or JsonValueKind.False
                ? v.GetBoolean() : fallback;

        var bos = Id("bos_token", templateBos ?? defaults.BosId);
        var eos = Id("eos_token", templateEos ?? defaults.EosId);
        var pad = Id("pad_token", defaults.PadId);
        bool addBos = Flag("add_bos_token", tokenizerJson is null ? defaults.AddBos : templateBos is not null);
        bool addEos = Flag("add_eos_token", tokenizerJson is null ? defaults.AddEos : templateEos is not null);
        if (addBos && bos is null) throw new SkTuningException($"{directory}: add_bos_token is set but the tokenizer has no bos_token");
        if (addEos && eos is null) throw new SkTuningException($"{directory}: add_eos_token is set but the tokenizer has no eos_token");
        return new SpecialTokens(bos, eos, pad, addBos, addEos);
    }

    // "bos_token": "<s>" or {"content": "<s>", ...} (AddedToken serialized), or null.
    private static string? TokenString(JsonElement v) => v.ValueKind switch
    {
        JsonValueKind.String => v.GetString(),
        JsonValueKind.Object when v.TryGetProperty("content", out var c) => c.GetString(),
        _ => null,
    };

    private static JsonElement? ReadObject(string path)
    {
        if (!File.Exists(path)) return null;
        try
        {
            using var doc = JsonDocument.Parse(InputFile.ReadAllText(path));
            if (doc.RootElement.ValueKind != JsonValueKind.Object) throw new SkTuningException($"{path}: expected a JSON object");
            return doc.RootElement.Clone();
        }
        catch (JsonException e) { throw new SkTuningException($"{path}: malformed JSON: {e.Message.ReplaceLineEndings(" ")}", e); }
    }

    // HF fast tokenizers add BOS/EOS through the post_processor, not through config flags (Llama-3, Qwen2).
    private static (int? Bos, int? Eos) FromTemplate(JsonElement tokenizerJson)
    {
        if (!tokenizerJson.TryGetProperty("post_processor", out var pp) || pp.ValueKind != JsonValueKind.Object) return (null, null);
        var template = pp;
        if (pp.TryGetProperty("processors", out var list))
            template = list.EnumerateArray().FirstOrDefault(p => p.TryGetProperty("type", out var t) && t.GetString() == "TemplateProcessing");
        if (template.ValueKind != JsonValueKind.Object || !template.TryGetProperty("single", out var single)) return (null, null);
        var items = single.EnumerateArray().ToList();
        int? IdOf(JsonElement item)
        {
            if (!item.TryGetProperty("SpecialToken", out var st)) return null;
            var name = st.GetProperty("id").GetString()!;
            return template.GetProperty("special_tokens").GetProperty(name).GetProperty("ids")[0].GetInt32();
        }
        return items.Count == 0 ? (null, null) : (IdOf(items[0]), items.Count > 1 ? IdOf(items[^1]) : null);
    }
}
