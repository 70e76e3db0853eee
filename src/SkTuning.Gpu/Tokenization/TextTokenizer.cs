using System.Text.Json;
using Microsoft.ML.Tokenizers;

namespace SkTuning.Gpu.Tokenization;

/// <summary>Token ids and token type ids of one encoded text (or sentence pair), special tokens included.</summary>
/// <param name="Ids">Vocabulary ids.</param>
/// <param name="TypeIds">0 for the first sentence, 1 for the second (all 0 for a single text).</param>
public sealed record EncodedText(int[] Ids, int[] TypeIds)
{
    /// <summary>Number of tokens.</summary>
    public int Length => Ids.Length;
}

/// <summary>
/// The model's tokenizer, found from the files beside it: <c>vocab.txt</c> → BERT WordPiece,
/// <c>vocab.json</c> + <c>merges.txt</c> or a BPE <c>tokenizer.json</c> → byte-level BPE,
/// <c>tokenizer.model</c> → SentencePiece. Encodes texts and pairs the way the model was trained
/// (<c>[CLS] a [SEP] b [SEP]</c> with token types 0/1 for BERT).
/// </summary>
public sealed class TextTokenizer
{
    private readonly Tokenizer _tokenizer;
    private readonly BertTokenizer? _bert;

    private TextTokenizer(Tokenizer tokenizer, string kind, int vocabularySize)
    {
        _tokenizer = tokenizer;
        _bert = tokenizer as BertTokenizer;
        Kind = kind;
        VocabularySize = vocabularySize;
    }

    // GPT-2/RoBERTa byte-level BPE splits words with their leading space attached (the space becomes 'Ġ').
    private static readonly PreTokenizer Gpt2PreTokenizer = new RegexPreTokenizer(
        new System.Text.RegularExpressions.Regex(@"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+",
            System.Text.RegularExpressions.RegexOptions.Compiled), null);

    /// <summary>"wordpiece", "bpe" or "sentencepiece".</summary>
    public string Kind { get; }

    /// <summary>Number of entries in the vocabulary file.</summary>
    public int VocabularySize { get; }

    /// <summary>The padding id (0 for BERT vocabularies).</summary>
    public int PadId => _bert?.PaddingTokenId ?? 0;

    /// <summary>Loads the tokenizer files from <paramref name="directory"/>.</summary>
    /// <exception cref="SkTuningException">No tokenizer file is there, or one is malformed.</exception>
    public static TextTokenizer Load(string directory)
    {
        string P(string name) => Path.Combine(directory, name);
        try
        {
            if (File.Exists(P("vocab.txt"))) return LoadWordPiece(P("vocab.txt"), directory);
            if (File.Exists(P("tokenizer.json"))) return LoadTokenizerJson(P("tokenizer.json"));
            if (File.Exists(P("vocab.json")) && File.Exists(P("merges.txt")))
            {
                var bpe = BpeTokenizer.Create(new BpeOptions(P("vocab.json"), P("merges.txt")) { ByteLevel = true, PreTokenizer = Gpt2PreTokenizer });
                return new TextTokenizer(bpe, "bpe", CountJsonEntries(P("vocab.json")));
            }
            if (File.Exists(P("tokenizer.model")))
            {
                using var stream = File.OpenRead(P("tokenizer.model"));
                var sp = SentencePieceTokenizer.Create(stream, true, false);
                return new TextTokenizer(sp, "sentencepiece", sp.Vocabulary.Count);
            }
        }
        catch (Exception e) when (e is not SkTuningException)
        {
            throw new SkTuningException($"{directory}: tokenizer files could not be read: {OneLine(e.Message)}", e);
        }
        throw new SkTuningException(
            $"{directory}: no vocabulary (expected vocab.txt, tokenizer.json, vocab.json + merges.txt or tokenizer.model)");
    }

    private static TextTokenizer LoadWordPiece(string vocabPath, string directory)
    {
        var vocabulary = File.ReadAllLines(vocabPath);
        if (vocabulary.Length == 0) throw new SkTuningException($"{vocabPath}: empty vocabulary");
        var options = new BertOptions { LowerCaseBeforeTokenization = IsUncased(directory, vocabulary) };
        return new TextTokenizer(BertTokenizer.Create(vocabPath, options), "wordpiece", vocabulary.Length);
    }

    // tokenizer_config.json says so when present; otherwise an uncased vocabulary has no capitalized words.
    private static bool IsUncased(string directory, string[] vocabulary)
    {
        var config = Path.Combine(directory, "tokenizer_config.json");
        if (File.Exists(config))
        {
            using var doc = JsonDocument.Parse(File.ReadAllText(config));
            if (doc.RootElement.TryGetProperty("do_lower_case", out var lower)) return lower.GetBoolean();
        }
        return !vocabulary.Any(t => t.Length > 1 && char.IsUpper(t[0]) && !t.StartsWith('[') && t.Skip(1).All(char.IsLower));
    }

    private static TextTokenizer LoadTokenizerJson(string path)
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(path));
        var model = doc.RootElement.GetProperty("model");
        var type = model.TryGetProperty("type", out var t) ? t.GetString() : null;
        var vocab = model.GetProperty("vocab").EnumerateObject().Select(p => new KeyValuePair<string, int>(p.Name, p.Value.GetInt32())).ToList();
        if (type == "WordPiece")
        {
            var temp = Path.Combine(Path.GetTempPath(), $"sktune-vocab-{Guid.NewGuid():N}.txt");
            File.WriteAllLines(temp, vocab.OrderBy(p => p.Value).Select(p => p.Key));
            try { return LoadWordPiece(temp, Path.GetDirectoryName(path)!); }
            finally { File.Delete(temp); }
        }
        if (type != "BPE") throw new SkTuningException($"{path}: tokenizer model type '{type}' is not supported (BPE or WordPiece)");
        var merges = model.GetProperty("merges").EnumerateArray()
            .Select(m => m.ValueKind == JsonValueKind.Array ? $"{m[0].GetString()} {m[1].GetString()}" : m.GetString()!).ToList();
        var bpe = BpeTokenizer.Create(new BpeOptions(vocab) { Merges = merges, ByteLevel = true, PreTokenizer = Gpt2PreTokenizer });
        return new TextTokenizer(bpe, "bpe", vocab.Count);
    }

    private static int CountJsonEntries(string path)
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(path));
        return doc.RootElement.EnumerateObject().Count();
    }

    /// <summary>Encodes one text, or a pair of texts as the model expects, with special tokens.</summary>
    /// <exception cref="SkTuningException">The text is empty.</exception>
    public EncodedText Encode(string text, string? pair = null)
    {
        if (string.IsNullOrWhiteSpace(text)) throw new SkTuningException("empty text: nothing to encode");
        if (pair is not null && string.IsNullOrWhiteSpace(pair)) throw new SkTuningException("empty second text of a pair");
        if (_bert is not null)
        {
            var a = _bert.EncodeToIds(text, addSpecialTokens: false);
            var b = pair is null ? null : _bert.EncodeToIds(pair, addSpecialTokens: false);
            var ids = _bert.BuildInputsWithSpecialTokens(a, b);
            var types = _bert.CreateTokenTypeIdsFromSequences(a, b);
            return new EncodedText(ids.ToArray(), types.ToArray());
        }
        var first = _tokenizer.EncodeToIds(text);
        if (pair is null) return new EncodedText(first.ToArray(), new int[first.Count]);
        var second = _tokenizer.EncodeToIds(pair);
        var joined = first.Concat(second).ToArray();
        var typeIds = Enumerable.Repeat(0, first.Count).Concat(Enumerable.Repeat(1, second.Count)).ToArray();
        return new EncodedText(joined, typeIds);
    }

    /// <summary>
    /// The sub-token ids of one word of a pre-split sentence (token classification), without special tokens.
    /// A word that yields no sub-token (empty, whitespace, or a control character the tokenizer drops) gives the
    /// unknown token alone (the padding id where the vocabulary has none), so every word keeps one token.
    /// </summary>
    public int[] EncodeWordPieces(string word)
    {
        IReadOnlyList<int> ids;
        int unknown;
        if (_bert is not null)
        {
            ids = _bert.EncodeToIds(word, addSpecialTokens: false);
            unknown = _bert.UnknownTokenId;
        }
        else if (_tokenizer is SentencePieceTokenizer sp)
        {
            ids = sp.EncodeToIds(word, addBeginningOfSentence: false, addEndOfSentence: false);
            unknown = sp.UnknownId;
        }
        else
        {
            ids = word.Length == 0 ? [] : _tokenizer.EncodeToIds(word);
            unknown = PadId;
        }
        return ids.Count == 0 ? [unknown] : ids.ToArray();
    }

    /// <summary>The vocabulary strings of <paramref name="ids"/> (for display).</summary>
    public string Decode(IEnumerable<int> ids) => _tokenizer.Decode(ids) ?? "";

    private static string OneLine(string s) => s.ReplaceLineEndings(" ");
}
