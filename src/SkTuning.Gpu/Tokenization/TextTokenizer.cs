using System.Text.Json;
using Microsoft.ML.Tokenizers;

namespace SkTuning.Gpu.Tokenization;

/// <summary>
/// The model's tokenizer, found from the files beside it (no network): <c>vocab.txt</c> → BERT WordPiece;
/// <c>tokenizer.json</c> → WordPiece, byte-level BPE (GPT-2, SmolLM, Qwen2, Llama-3) or SentencePiece-style BPE with
/// byte fallback (converted Llama-2/Mistral); <c>vocab.json</c> + <c>merges.txt</c> → GPT-2 byte-level BPE;
/// <c>tokenizer.model</c> → SentencePiece; <c>sentencepiece.bpe.model</c> → XLM-R's SentencePiece with fairseq's ids.
/// Ids match the model's own tokenizer token for token.
/// BERT texts are <c>[CLS] a [SEP] b [SEP]</c> with types 0/1; decoder texts are <c>[BOS] a EOS b [EOS]</c>, all type 0,
/// BOS only where the model adds one (<see cref="AddsBos"/>) and the final EOS only where <see cref="AddsEos"/>;
/// RoBERTa texts (<see cref="IsRoberta"/>) are <c>&lt;s&gt; a &lt;/s&gt;&lt;/s&gt; b &lt;/s&gt;</c>, all type 0.
/// </summary>
public sealed class TextTokenizer
{
    private readonly ITokenModel _model;
    private readonly BertTokenizer? _bert;
    private readonly SpecialTokens _special;

    private TextTokenizer(ITokenModel model, SpecialTokens special, bool roberta = false)
    {
        _model = model;
        _bert = (model as WordPieceModel)?.Bert;
        _special = special;
        IsRoberta = roberta;
    }

    /// <summary>
    /// Whether texts take RoBERTa's special tokens: <c>&lt;s&gt; a &lt;/s&gt;</c>, pairs <c>&lt;s&gt; a &lt;/s&gt;&lt;/s&gt; b &lt;/s&gt;</c>
    /// (RobertaTokenizer's build_inputs_with_special_tokens). Chosen by the files: a tokenizer.json whose post_processor is
    /// RobertaProcessing, a vocab.json holding &lt;s&gt;, &lt;/s&gt;, &lt;pad&gt; and &lt;mask&gt; (RoBERTa's, BART's), or XLM-R's
    /// sentencepiece.bpe.model.
    /// </summary>
    public bool IsRoberta { get; }

    /// <summary>
    /// "wordpiece" (BERT), "bpe" (byte-level BPE), "sentencepiece" (tokenizer.model), "sentencepiece-bpe" (its tokenizer.json
    /// conversion) or "sentencepiece-fairseq" (XLM-R's sentencepiece.bpe.model).
    /// </summary>
    public string Kind => _model.Kind;

    /// <summary>One more than the largest token id (vocabulary and added tokens): the embedding rows the model needs.</summary>
    public int VocabularySize => _model.VocabularySize;

    /// <summary>The decoder's beginning-of-sequence id, or null (BERT, or a decoder without one).</summary>
    public int? BosId => _bert is null ? _special.BosId : null;

    /// <summary>The decoder's end-of-sequence id, or null (BERT, or a decoder without one).</summary>
    public int? EosId => _bert is null ? _special.EosId : null;

    /// <summary>Whether <see cref="Encode"/> starts with <see cref="BosId"/> (Llama-2/3: yes; GPT-2: no).</summary>
    public bool AddsBos => _bert is null && _special.AddBos;

    /// <summary>Whether <see cref="Encode"/> ends with <see cref="EosId"/> (<c>add_eos_token</c>; rarely set).</summary>
    public bool AddsEos => _bert is null && _special.AddEos;

    /// <summary>Whether the vocabulary has a real padding token (BERT's [PAD]; most decoders have none).</summary>
    public bool HasPadToken => _bert is not null || _special.PadId is not null;

    /// <summary>
    /// The id padding positions hold: the pad token, else (a decoder without one) the EOS id, else 0. Without a pad token
    /// any id does, since padded positions are masked out of attention and loss.
    /// </summary>
    public int PadId => _bert?.PaddingTokenId ?? _special.PadId ?? _special.EosId ?? 0;

    /// <summary>Whether <paramref name="directory"/> holds a tokenizer file that <see cref="Load"/> reads.</summary>
    public static bool HasFiles(string directory)
    {
        string P(string name) => Path.Combine(directory, name);
        return File.Exists(P("vocab.txt")) || File.Exists(P("tokenizer.json")) || File.Exists(P("tokenizer.model")) || File.Exists(P("sentencepiece.bpe.model"))
               || (File.Exists(P("vocab.json")) && File.Exists(P("merges.txt")));
    }

    /// <summary>Loads the tokenizer files from <paramref name="directory"/>.</summary>
    /// <exception cref="SkTuningException">No tokenizer file is there, or one is malformed (the message names the file).</exception>
    public static TextTokenizer Load(string directory)
    {
        string P(string name) => Path.Combine(directory, name);
        string? current = null;
        try
        {
            if (File.Exists(current = P("vocab.txt"))) return new TextTokenizer(new WordPieceModel(current, directory), Bert);
            // XLM-R ships a tokenizer.json too (a Unigram model); the SentencePiece file is the one its slow tokenizer reads.
            if (File.Exists(current = P("sentencepiece.bpe.model")))
            {
                var model = new FairseqSentencePieceModel(current);
                return new TextTokenizer(model, SpecialTokens.Read(directory, model.IdOf, null, RobertaSpecials(model)!), true);
            }
            if (File.Exists(current = P("tokenizer.json")))
            {
                using var doc = JsonDocument.Parse(InputFile.ReadAllText(current));
                var model = TokenizerJson.Read(doc.RootElement, current);
                if (model is WordPieceModel) return new TextTokenizer(model, Bert);
                if (IsRobertaProcessing(doc.RootElement) && RobertaSpecials(model) is { } roberta)
                    return new TextTokenizer(model, SpecialTokens.Read(directory, model.IdOf, null, roberta), true);
                // A SentencePiece conversion without a post_processor still adds BOS as Llama does.
                var defaults = new SpecialTokens(null, null, null, model.Kind == "sentencepiece-bpe", false);
                return Decoder(model, directory, doc.RootElement, defaults);
            }
            if (File.Exists(current = P("vocab.json")) && File.Exists(P("merges.txt")))
            {
                var vocab = ReadVocabJson(current);
                current = P("merges.txt");
                var merges = InputFile.ReadAllLines(current).Where(l => l.Length > 0 && !l.StartsWith("#version")).ToList();
                var model = new ByteLevelBpeModel(vocab, merges, [], ByteLevelBpeModel.Gpt2Pattern, false, false);
                if (RobertaSpecials(model) is { } roberta) return new TextTokenizer(model, SpecialTokens.Read(directory, model.IdOf, null, roberta), true);
                // GPT-2's tokenizer class defaults BOS/EOS to <|endoftext|> and adds neither.
                int? eot = vocab.TryGetValue("<|endoftext|>", out var e) ? e : null;
                return Decoder(model, directory, null, new SpecialTokens(eot, eot, null, false, false));
            }
            if (File.Exists(current = P("tokenizer.model")))
            {
                var model = new SentencePieceModel(current);
                // Llama's tokenizer adds BOS and no EOS unless tokenizer_config.json says otherwise.
                return Decoder(model, directory, null, new SpecialTokens(model.Sp.BeginningOfSentenceId, model.Sp.EndOfSentenceId, null, true, false));
            }
        }
        catch (Exception e) when (e is not SkTuningException)
        {
            throw new SkTuningException($"{current}: malformed tokenizer file: {e.Message.ReplaceLineEndings(" ")}", e);
        }
        throw new SkTuningException(
            $"{directory}: no tokenizer file (vocab.txt, tokenizer.json, vocab.json + merges.txt, tokenizer.model or sentencepiece.bpe.model)");
    }

    // BERT's specials come from BertTokenizer itself.
    private static SpecialTokens Bert => new(null, null, null, false, false);

    /// <summary>RoBERTa's &lt;s&gt;, &lt;/s&gt; and &lt;pad&gt;, both ends added; null unless the vocabulary has them and &lt;mask&gt; (an MLM encoder's).</summary>
    private static SpecialTokens? RobertaSpecials(ITokenModel model) =>
        model.IdOf("<s>") is { } bos && model.IdOf("</s>") is { } eos && model.IdOf("<pad>") is { } pad && model.IdOf("<mask>") is not null
            ? new SpecialTokens(bos, eos, pad, true, true)
            : null;

    private static bool IsRobertaProcessing(JsonElement tokenizerJson) =>
        tokenizerJson.TryGetProperty("post_processor", out var pp) && pp.ValueKind == JsonValueKind.Object
        && pp.TryGetProperty("type", out var type) && type.GetString() == "RobertaProcessing";

    private static TextTokenizer Decoder(ITokenModel model, string directory, JsonElement? tokenizerJson, SpecialTokens defaults) =>
        new(model, SpecialTokens.Read(directory, model.IdOf, tokenizerJson, defaults));

    private static Dictionary<string, int> ReadVocabJson(string path)
    {
        using var doc = JsonDocument.Parse(InputFile.ReadAllText(path));
        return doc.RootElement.EnumerateObject().ToDictionary(p => p.Name, p => p.Value.GetInt32());
    }

    /// <summary>
    /// Encodes one text, or a pair of texts as the model expects, with special tokens. BERT: <c>[CLS] a [SEP] b [SEP]</c>,
    /// types 0 then 1. Decoders: <c>[BOS] a EOS b [EOS]</c>, all type 0: the EOS between the texts is the separator
    /// (a decoder without an EOS token joins them with none). RoBERTa: <c>&lt;s&gt; a &lt;/s&gt;&lt;/s&gt; b &lt;/s&gt;</c>, all type 0.
    /// </summary>
    /// <exception cref="SkTuningException">The text is empty.</exception>
    public EncodedText Encode(string text, string? pair = null)
    {
        if (string.IsNullOrWhiteSpace(text)) throw new SkTuningException("empty text: nothing to encode");
        if (pair is not null && string.IsNullOrWhiteSpace(pair)) throw new SkTuningException("empty second text of a pair");
        var a = _model.Encode(text);
        var b = pair is null ? null : _model.Encode(pair);
        if (_bert is not null)
        {
            var ids = _bert.BuildInputsWithSpecialTokens(a, b);
            var types = _bert.CreateTokenTypeIdsFromSequences(a, b);
            return new EncodedText(ids.ToArray(), types.ToArray(), b is null ? -1 : a.Count + 2);
        }
        var result = new List<int>(a.Count + (b?.Count ?? 0) + 3);
        if (AddsBos) result.Add(_special.BosId!.Value);
        result.AddRange(a);
        int secondStart = -1;
        if (b is not null)
        {
            if (_special.EosId is { } sep) result.Add(sep);
            if (IsRoberta) result.Add(_special.EosId!.Value);
            secondStart = result.Count;
            result.AddRange(b);
        }
        if (AddsEos) result.Add(_special.EosId!.Value);
        return new EncodedText(result.ToArray(), new int[result.Count], secondStart);
    }

    /// <summary>
    /// The sub-token ids of one word of a pre-split sentence (token classification), without special tokens.
    /// A word that yields no sub-token (empty, whitespace, or a control character the tokenizer drops) gives the
    /// unknown token alone (the padding id where the vocabulary has none), so every word keeps one token.
    /// </summary>
    public int[] EncodeWordPieces(string word)
    {
        var ids = word.Length == 0 ? [] : _model.Encode(word);
        // RoBERTa's graph reads its padding id as padding wherever it is, so an empty word there takes <unk>.
        int unknown = _bert?.UnknownTokenId ?? (_model as SentencePieceModel)?.Sp.UnknownId ?? (IsRoberta ? _model.IdOf("<unk>") : null) ?? PadId;
        return ids.Count == 0 ? [unknown] : ids.ToArray();
    }

    /// <summary>The text of <paramref name="ids"/> (for display).</summary>
    public string Decode(IEnumerable<int> ids) => _model.Decode(ids);
}
