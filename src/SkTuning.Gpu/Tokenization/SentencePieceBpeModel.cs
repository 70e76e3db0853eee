using System.Text;
using System.Text.Json;
using Microsoft.ML.Tokenizers;

namespace SkTuning.Gpu.Tokenization;

/// <summary>
/// A SentencePiece BPE converted to tokenizer.json (Llama-2, Mistral, TinyLlama): spaces become ▁, one ▁ is prepended,
/// and a character missing from the vocabulary falls back to its UTF-8 bytes as <c>&lt;0xXX&gt;</c> tokens.
/// Microsoft.ML.Tokenizers' BPE has no byte fallback, so the text is cut at each unknown character first: byte tokens
/// take part in no merge, so BPE on the known runs alone gives what HF's BPE gives on the whole text.
/// </summary>
internal sealed class SentencePieceBpeModel : ITokenModel
{
    private const char Space = '▁';

    private readonly BpeTokenizer _bpe;
    private readonly Dictionary<string, int> _vocab;
    private readonly Dictionary<string, int> _added;
    private readonly string _prepend;
    private readonly bool _splitWords;
    private readonly bool _byteFallback;
    private readonly int? _unknown;
    private readonly bool _fuseUnknown;

    private SentencePieceBpeModel(Dictionary<string, int> vocab, IReadOnlyList<string> merges, Dictionary<string, int> added,
        string prepend, bool splitWords, bool byteFallback, int? unknown, bool fuseUnknown)
    {
        _vocab = vocab;
        _added = added;
        _prepend = prepend;
        _splitWords = splitWords;
        _byteFallback = byteFallback;
        _unknown = unknown;
        _fuseUnknown = fuseUnknown;
        _bpe = BpeTokenizer.Create(new BpeOptions(vocab) { Merges = merges, PreTokenizer = WholeTextPreTokenizer.Instance });
        VocabularySize = vocab.Values.Concat(added.Values).DefaultIfEmpty(-1).Max() + 1;
    }

    public string Kind => "sentencepiece-bpe";

    public int VocabularySize { get; }

    /// <summary>
    /// The model for a tokenizer.json whose normalizer is Prepend("▁") + Replace(" ", "▁") (legacy Llama conversion) or
    /// whose pre-tokenizer is Metaspace (newer conversions); null when it is neither.
    /// </summary>
    public static SentencePieceBpeModel? TryCreate(JsonElement root, JsonElement model, Dictionary<string, int> vocab,
        IReadOnlyList<string> merges, Dictionary<string, int> added, string path)
    {
        string? prepend = null;
        bool split = false;
        if (root.TryGetProperty("normalizer", out var norm) && norm.ValueKind == JsonValueKind.Object)
        {
            var steps = norm.GetProperty("type").GetString() == "Sequence" ? norm.GetProperty("normalizers").EnumerateArray().ToList() : [norm];
            foreach (var step in steps)
            {
                switch (step.GetProperty("type").GetString())
                {
                    case "Prepend": prepend = step.GetProperty("prepend").GetString(); break;
                    case "Replace" when step.GetProperty("pattern").TryGetProperty("String", out var s) && s.GetString() == " "
                                        && step.GetProperty("content").GetString() == Space.ToString():
                        prepend ??= "";
                        break;
                    case var other: throw new SkTuningException($"{path}: normalizer step '{other}' is not supported");
                }
            }
        }
        if (root.TryGetProperty("pre_tokenizer", out var pre) && pre.ValueKind == JsonValueKind.Object)
        {
            if (pre.GetProperty("type").GetString() != "Metaspace") return null;
            var scheme = pre.TryGetProperty("prepend_scheme", out var ps) ? ps.GetString()
                : pre.TryGetProperty("add_prefix_space", out var aps) && !aps.GetBoolean() ? "never" : "always";
            prepend = scheme == "never" ? "" : Space.ToString();
            split = !pre.TryGetProperty("split", out var sp) || sp.GetBoolean();
        }
        if (prepend is null) return null;
        int? unk = model.TryGetProperty("unk_token", out var u) && u.ValueKind == JsonValueKind.String
            ? (added.TryGetValue(u.GetString()!, out var a) ? a : vocab.GetValueOrDefault(u.GetString()!, -1)) : null;
        if (unk < 0) throw new SkTuningException($"{path}: unk_token '{u.GetString()}' is not in the vocabulary");
        bool fallback = model.TryGetProperty("byte_fallback", out var bf) && bf.GetBoolean();
        bool fuse = model.TryGetProperty("fuse_unk", out var fu) && fu.GetBoolean();
        return new SentencePieceBpeModel(vocab, merges, added, prepend, split, fallback, unk, fuse);
    }

    public IReadOnlyList<int> Encode(string text)
    {
        var normalized = _prepend + text.Replace(' ', Space);
        var ids = new List<int>();
        if (!_splitWords) { EncodeWord(normalized, ids); return ids; }
        // Metaspace split: each word begins at a ▁ (merged with the text after it).
        int start = 0;
        for (int i = 1; i <= normalized.Length; i++)
            if (i == normalized.Length || normalized[i] == Space)
            {
                EncodeWord(normalized[start..i], ids);
                start = i;
            }
        return ids;
    }

    private void EncodeWord(string word, List<int> ids)
    {
        int runStart = 0;
        bool lastWasUnknown = false;
        for (int i = 0; i < word.Length;)
        {
            int len = char.IsSurrogatePair(word, i) ? 2 : 1;
            var ch = word.Substring(i, len);
            if (_vocab.ContainsKey(ch)) { i += len; continue; }
            if (i > runStart) { ids.AddRange(_bpe.EncodeToIds(word[runStart..i])); lastWasUnknown = false; }
            var bytes = Encoding.UTF8.GetBytes(ch);
            var byteIds = _byteFallback ? bytes.Select(b => _vocab.TryGetValue($"<0x{b:X2}>", out var id) ? id : -1).ToArray() : [];
            if (_byteFallback && byteIds.All(id => id >= 0)) { ids.AddRange(byteIds); lastWasUnknown = false; }
            else
            {
                if (_unknown is not { } unk) throw new SkTuningException($"character U+{char.ConvertToUtf32(ch, 0):X4} is not in the vocabulary and the tokenizer has no unk_token");
                if (!(_fuseUnknown && lastWasUnknown)) ids.Add(unk);
                lastWasUnknown = true;
            }
            i += len;
            runStart = i;
        }
        if (runStart < word.Length) ids.AddRange(_bpe.EncodeToIds(word[runStart..]));
    }

    public string Decode(IEnumerable<int> ids) => (_bpe.Decode(ids) ?? "").Replace(Space, ' ');

    public int? IdOf(string token) => _added.TryGetValue(token, out var a) ? a : _vocab.TryGetValue(token, out var v) ? v : null;
}
