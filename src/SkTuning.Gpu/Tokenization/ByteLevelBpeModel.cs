using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using Microsoft.ML.Tokenizers;

namespace SkTuning.Gpu.Tokenization;

/// <summary>
/// GPT-2-style byte-level BPE (GPT-2, SmolLM, Qwen2, Llama-3): the text is split by the pre-tokenizer's regex, each
/// piece's UTF-8 bytes become GPT-2's printable byte symbols and Microsoft.ML.Tokenizers' BPE merges them.
/// The regex is read from tokenizer.json (Llama-3 and Qwen2 use their own, e.g. digits in groups of three);
/// GPT-2's is the default of a ByteLevel pre-tokenizer with <c>use_regex</c>.
/// </summary>
internal sealed class ByteLevelBpeModel : ITokenModel
{
    /// <summary>GPT-2's split regex (the ByteLevel pre-tokenizer's built-in one).</summary>
    public const string Gpt2Pattern = @"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

    private static readonly string[] ByteSymbols = BuildByteSymbols();

    private readonly BpeTokenizer _bpe;
    private readonly Regex _split;
    private readonly bool _addPrefixSpace;
    private readonly bool _ignoreMerges;
    private readonly Dictionary<string, int> _vocab;
    private readonly Dictionary<string, int> _added;

    public ByteLevelBpeModel(Dictionary<string, int> vocab, IReadOnlyList<string> merges, Dictionary<string, int> added,
        string pattern, bool addPrefixSpace, bool ignoreMerges)
    {
        _vocab = vocab;
        _added = added;
        _split = new Regex(pattern, RegexOptions.Compiled);
        _addPrefixSpace = addPrefixSpace;
        _ignoreMerges = ignoreMerges;
        _bpe = BpeTokenizer.Create(new BpeOptions(vocab) { Merges = merges, ByteLevel = true, PreTokenizer = WholeTextPreTokenizer.Instance });
        VocabularySize = vocab.Values.Concat(added.Values).DefaultIfEmpty(-1).Max() + 1;
    }

    public string Kind => "bpe";

    public int VocabularySize { get; }

    /// <summary>The regex of a tokenizer.json pre_tokenizer that contains a ByteLevel step, and its add_prefix_space.</summary>
    /// <returns>Null when the pre-tokenizer is not byte-level.</returns>
    /// <exception cref="SkTuningException">A step this loader does not implement.</exception>
    public static (string Pattern, bool AddPrefixSpace)? ReadPreTokenizer(JsonElement pre, string path)
    {
        if (pre.ValueKind != JsonValueKind.Object) return null;
        var steps = pre.GetProperty("type").GetString() == "Sequence" ? pre.GetProperty("pretokenizers").EnumerateArray().ToList() : [pre];
        var byteLevel = steps.FirstOrDefault(s => s.GetProperty("type").GetString() == "ByteLevel");
        if (byteLevel.ValueKind != JsonValueKind.Object) return null;
        string? pattern = null;
        foreach (var step in steps)
        {
            switch (step.GetProperty("type").GetString())
            {
                case "ByteLevel":
                    break;
                case "Split":
                    if (step.TryGetProperty("invert", out var inv) && inv.GetBoolean()
                        || step.TryGetProperty("behavior", out var b) && b.GetString() != "Isolated")
                        throw new SkTuningException($"{path}: Split pre-tokenizer other than behavior Isolated, invert false is not supported");
                    var p = step.GetProperty("pattern");
                    pattern = p.TryGetProperty("Regex", out var r) ? r.GetString() : Regex.Escape(p.GetProperty("String").GetString()!);
                    break;
                case var other:
                    throw new SkTuningException($"{path}: pre-tokenizer step '{other}' is not supported with byte-level BPE");
            }
        }
        bool useRegex = !byteLevel.TryGetProperty("use_regex", out var ur) || ur.GetBoolean();
        pattern ??= useRegex ? Gpt2Pattern : @"[\s\S]+";
        bool prefix = byteLevel.TryGetProperty("add_prefix_space", out var aps) && aps.GetBoolean();
        return (pattern, prefix);
    }

    public IReadOnlyList<int> Encode(string text)
    {
        if (_addPrefixSpace && !text.StartsWith(' ')) text = " " + text;
        var ids = new List<int>();
        int at = 0;
        foreach (var m in _split.EnumerateMatches(text))
        {
            // Split "Isolated" keeps the unmatched gaps as pieces too.
            if (m.Index > at) EncodePiece(text[at..m.Index], ids);
            if (m.Length > 0) EncodePiece(text.Substring(m.Index, m.Length), ids);
            at = m.Index + m.Length;
        }
        if (at < text.Length) EncodePiece(text[at..], ids);
        return ids;
    }

    private void EncodePiece(string piece, List<int> ids)
    {
        // ignore_merges (Llama-3): a piece that is a vocabulary entry is taken whole, whatever the merges would give.
        if (_ignoreMerges && _vocab.TryGetValue(ToByteSymbols(piece), out var whole)) ids.Add(whole);
        else ids.AddRange(_bpe.EncodeToIds(piece));
    }

    private static string ToByteSymbols(string piece)
    {
        var sb = new StringBuilder();
        foreach (var b in Encoding.UTF8.GetBytes(piece)) sb.Append(ByteSymbols[b]);
        return sb.ToString();
    }

    // GPT-2's bytes_to_unicode: printable Latin-1 bytes stand for themselves, the others map to U+0100 onwards.
    private static string[] BuildByteSymbols()
    {
        var map = new string[256];
        int next = 256;
        for (int b = 0; b < 256; b++)
        {
            bool printable = b is >= '!' and <= '~' or >= 0xA1 and <= 0xAC or >= 0xAE and <= 0xFF;
            map[b] = ((char)(printable ? b : next++)).ToString();
        }
        return map;
    }

    public string Decode(IEnumerable<int> ids) => _bpe.Decode(ids) ?? "";

    public int? IdOf(string token) => _added.TryGetValue(token, out var a) ? a : _vocab.TryGetValue(token, out var v) ? v : null;
}
