using System.Text;
using Microsoft.ML.Tokenizers;
using SkTuning.Gpu.Tokenization.Proto;
using Piece = SkTuning.Gpu.Tokenization.Proto.ModelProto.Types.SentencePiece;

namespace SkTuning.Gpu.Tokenization;

/// <summary>
/// XLM-R's <c>sentencepiece.bpe.model</c> (a unigram model despite its name, nmt_nfkc normalization rules inside) with
/// fairseq's ids as HF's XLMRobertaTokenizer gives them: &lt;s&gt; 0, &lt;pad&gt; 1, &lt;/s&gt; 2, &lt;unk&gt; 3, every other piece
/// its SentencePiece id + 1, and &lt;mask&gt; after the last piece. Microsoft.ML.Tokenizers normalizes the text (the
/// model's precompiled rules, dummy prefix, ▁ for spaces); the segmentation is SentencePiece's unigram Viterbi written
/// out here (unigram_model.cc, EncodeOptimized), because equal-score paths — "!!" + "!" against "!" + "!!" — must break
/// as SentencePiece's float/double rounding breaks them, and runs of unknown characters must merge into one &lt;unk&gt;.
/// </summary>
internal sealed class FairseqSentencePieceModel : ITokenModel
{
    private const int Offset = 1, Unknown = 3;

    /// <summary>SentencePiece's penalty below the lowest piece score for an unknown character (kUnkPenalty).</summary>
    private const float UnknownPenalty = 10f;

    private static readonly Dictionary<string, int> Specials = new(StringComparer.Ordinal)
    {
        ["<s>"] = 0, ["<pad>"] = 1, ["</s>"] = 2, ["<unk>"] = Unknown,
    };

    private readonly SentencePieceTokenizer _sp;
    private readonly Dictionary<string, (int Id, double Score)> _pieces = new(StringComparer.Ordinal);
    private readonly Dictionary<string, (int Id, double Score)>.AlternateLookup<ReadOnlySpan<char>> _lookup;
    private readonly int _longest, _pieceCount, _unknownId;
    private readonly float _unknownScore;

    public FairseqSentencePieceModel(string path)
    {
        var bytes = File.ReadAllBytes(path);
        // TextTokenizer adds <s> and </s> (fairseq's ids), so the model adds none itself.
        _sp = SentencePieceTokenizer.Create(new MemoryStream(bytes), false, false);
        var pieces = ModelProto.Parser.ParseFrom(bytes).Pieces;
        _pieceCount = pieces.Count;
        float min = float.MaxValue, max = float.MinValue;
        _unknownId = -1;
        for (int id = 0; id < pieces.Count; id++)
        {
            var p = pieces[id];
            switch (p.Type)
            {
                case Piece.Types.Type.Normal:
                    min = Math.Min(min, p.Score);
                    max = Math.Max(max, p.Score);
                    break;
                case Piece.Types.Type.Unknown:
                    _unknownId = id;
                    continue;
                case Piece.Types.Type.UserDefined:
                    break;
                default:
                    continue; // control and byte pieces are never matched in text
            }
            _pieces[p.Piece] = (id, p.Score);
            _longest = Math.Max(_longest, p.Piece.Length);
        }
        if (_unknownId < 0 || _pieces.Count == 0) throw new SkTuningException($"{path}: a SentencePiece model without an <unk> piece or without pieces");
        // User-defined pieces always win over the pieces they overlap (score = length · max − 0.1).
        foreach (var (piece, (id, _)) in _pieces.ToList())
            if (pieces[id].Type == Piece.Types.Type.UserDefined) _pieces[piece] = (id, piece.Length * max - 0.1);
        _unknownScore = min - UnknownPenalty;
        _lookup = _pieces.GetAlternateLookup<ReadOnlySpan<char>>();
    }

    public string Kind => "sentencepiece-fairseq";

    /// <summary>The pieces shifted by the offset, plus &lt;mask&gt;.</summary>
    public int VocabularySize => _pieceCount + Offset + 1;

    private int MaskId => _pieceCount + Offset;

    public IReadOnlyList<int> Encode(string text)
    {
        // The normalized text as the tokenizer's own encoding produces it (its Normalizer alone skips the model's rules).
        _sp.EncodeToTokens(text, out string? normalized, addBeginningOfSentence: false, addEndOfSentence: false);
        var s = normalized ?? text;
        int n = s.Length;
        // best[e]: the best path over s[..e] — its score, the start of its last piece and that piece's id (−1: none yet).
        var score = new float[n + 1];
        var start = new int[n + 1];
        var id = new int[n + 1];
        Array.Fill(start, -1);
        for (int at = 0; at < n; at = Next(s, at))
        {
            int charLength = Next(s, at) - at;
            bool single = false;
            for (int length = 1; length <= Math.Min(_longest, n - at); length++)
            {
                if (!_lookup.TryGetValue(s.AsSpan(at, length), out var piece)) continue;
                Relax(at + length, at, piece.Id, piece.Score + (double)score[at]);
                single |= length == charLength;
            }
            if (!single) Relax(at + charLength, at, _unknownId, _unknownScore + score[at]);
        }

        // SentencePiece adds a piece's score in double (its ternary with the user-defined bonus is double), the unknown
        // score in float, keeps the best score in float, and takes a candidate only when strictly better: equal paths
        // break by that rounding, so the arithmetic is copied exactly.
        void Relax(int end, int from, int pieceId, double candidate)
        {
            if (start[end] == -1 || candidate > score[end]) (score[end], start[end], id[end]) = ((float)candidate, from, pieceId);
        }

        var ids = new List<int>();
        for (int end = n; end > 0; end = start[end])
        {
            bool unknown = id[end] == _unknownId;
            // A run of unknown characters is one <unk>, as SentencePiece merges it.
            if (!(unknown && ids.Count > 0 && ids[^1] == Unknown)) ids.Add(unknown ? Unknown : id[end] + Offset);
        }
        ids.Reverse();
        return ids;
    }

    private static int Next(string s, int at) => at + (char.IsHighSurrogate(s[at]) && at + 1 < s.Length && char.IsLowSurrogate(s[at + 1]) ? 2 : 1);

    public string Decode(IEnumerable<int> ids) =>
        _sp.Decode(ids.Where(id => id > Unknown && id < MaskId).Select(id => id - Offset)) ?? "";

    public int? IdOf(string token) =>
        Specials.TryGetValue(token, out var special) ? special
        : token == "<mask>" ? MaskId
        : _pieces.TryGetValue(token, out var piece) ? piece.Id + Offset : null;
}
