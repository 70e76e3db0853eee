using System.Text.Json;

namespace SkTuning.Gpu.Tokenization;

/// <summary>Reads an HF <c>tokenizer.json</c>: WordPiece, byte-level BPE, or SentencePiece-style BPE with byte fallback.</summary>
internal static class TokenizerJson
{
    /// <summary>The token model described by <paramref name="root"/> (the parsed file at <paramref name="path"/>).</summary>
    public static ITokenModel Read(JsonElement root, string path)
    {
        if (!root.TryGetProperty("model", out var model) || model.ValueKind != JsonValueKind.Object)
            throw new SkTuningException($"{path}: no \"model\" object");
        var type = model.TryGetProperty("type", out var t) ? t.GetString() : null;
        if (!model.TryGetProperty("vocab", out var vocabElement) || vocabElement.ValueKind != JsonValueKind.Object)
            throw new SkTuningException($"{path}: model has no \"vocab\" object (model type '{type}')");
        var vocab = vocabElement.EnumerateObject().ToDictionary(p => p.Name, p => p.Value.GetInt32());
        if (type == "WordPiece")
        {
            var temp = Path.Combine(Path.GetTempPath(), $"sktune-vocab-{Guid.NewGuid():N}.txt");
            File.WriteAllLines(temp, vocab.OrderBy(p => p.Value).Select(p => p.Key));
            try { return new WordPieceModel(temp, Path.GetDirectoryName(path)!); }
            finally { File.Delete(temp); }
        }
        if (type != "BPE") throw new SkTuningException($"{path}: tokenizer model type '{type}' is not supported (BPE or WordPiece)");
        // Merges are "a b" strings (older files) or [a, b] pairs (newer ones).
        var merges = model.GetProperty("merges").EnumerateArray()
            .Select(m => m.ValueKind == JsonValueKind.Array ? $"{m[0].GetString()} {m[1].GetString()}" : m.GetString()!).ToList();
        var added = root.TryGetProperty("added_tokens", out var at) && at.ValueKind == JsonValueKind.Array
            ? at.EnumerateArray().ToDictionary(a => a.GetProperty("content").GetString()!, a => a.GetProperty("id").GetInt32())
            : [];
        bool ignoreMerges = model.TryGetProperty("ignore_merges", out var im) && im.GetBoolean();
        if (root.TryGetProperty("pre_tokenizer", out var pre) && ByteLevelBpeModel.ReadPreTokenizer(pre, path) is var (pattern, prefix))
            return new ByteLevelBpeModel(vocab, merges, added, pattern, prefix, ignoreMerges);
        return SentencePieceBpeModel.TryCreate(root, model, vocab, merges, added, path)
            ?? throw new SkTuningException($"{path}: BPE without a ByteLevel pre-tokenizer or a SentencePiece ▁ normalizer/Metaspace is not supported");
    }
}
