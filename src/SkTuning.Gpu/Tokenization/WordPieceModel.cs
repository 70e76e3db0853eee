using System.Text.Json;
using Microsoft.ML.Tokenizers;

namespace SkTuning.Gpu.Tokenization;

/// <summary>BERT WordPiece (vocab.txt, or a WordPiece tokenizer.json): lower-casing and accent stripping for uncased vocabularies.</summary>
internal sealed class WordPieceModel : ITokenModel
{
    public WordPieceModel(string vocabPath, string directory)
    {
        var vocabulary = InputFile.ReadAllLines(vocabPath).ToArray();
        if (vocabulary.Length == 0) throw new SkTuningException($"{vocabPath}: empty vocabulary");
        var (lower, strip) = CaseOptions(directory, vocabulary);
        _lower = lower;
        // HF's BertTokenizer: strip_accents defaults to do_lower_case (NFD, then drop the Mn marks: crème → creme).
        _strip = strip ?? lower;
        // Basic tokenization is BertBasicTokenizer's; BertTokenizer only splits on spaces and applies WordPiece.
        Bert = BertTokenizer.Create(vocabPath, new BertOptions { ApplyBasicTokenization = false, LowerCaseBeforeTokenization = false });
        VocabularySize = vocabulary.Length;
        _ids = new Dictionary<string, int>(vocabulary.Length);
        for (int i = 0; i < vocabulary.Length; i++) _ids.TryAdd(vocabulary[i], i);
    }

    private readonly Dictionary<string, int> _ids;
    private readonly bool _lower;
    private readonly bool _strip;

    /// <summary>The underlying tokenizer ([CLS]/[SEP]/[PAD] and token types come from it).</summary>
    public BertTokenizer Bert { get; }

    public string Kind => "wordpiece";

    public int VocabularySize { get; }

    public IReadOnlyList<int> Encode(string text) => Bert.EncodeToIds(BertBasicTokenizer.Split(text, _lower, _strip), addSpecialTokens: false);

    public string Decode(IEnumerable<int> ids) => Bert.Decode(ids) ?? "";

    public int? IdOf(string token) => _ids.TryGetValue(token, out var id) ? id : null;

    // tokenizer_config.json says so when present; otherwise an uncased vocabulary has no capitalized words.
    private static (bool Lower, bool? Strip) CaseOptions(string directory, string[] vocabulary)
    {
        var config = Path.Combine(directory, "tokenizer_config.json");
        bool? lower = null, strip = null;
        if (File.Exists(config))
        {
            using var doc = JsonDocument.Parse(InputFile.ReadAllText(config));
            if (doc.RootElement.TryGetProperty("do_lower_case", out var l)) lower = l.GetBoolean();
            if (doc.RootElement.TryGetProperty("strip_accents", out var s) && s.ValueKind is JsonValueKind.True or JsonValueKind.False) strip = s.GetBoolean();
        }
        lower ??= !vocabulary.Any(t => t.Length > 1 && char.IsUpper(t[0]) && !t.StartsWith('[') && t.Skip(1).All(char.IsLower));
        return (lower.Value, strip);
    }
}
