using SkTuning.Gpu.Data;
using SkTuning.Gpu.Tokenization;

namespace SkTuning.Gpu.Training;

/// <summary>
/// Tokenizes examples for training and evaluation and truncates them to a token budget: single texts keep
/// their first tokens and the closing special token; pairs lose tokens from the longer sentence first
/// (Hugging Face "longest_first"), keeping every special token and token type; token-classification sentences
/// are tokenized word by word (the word's label on its first sub-token) and lose whole words at the end.
/// </summary>
public static class ExampleEncoder
{
    /// <summary>Encodes <paramref name="examples"/> as <paramref name="kind"/> examples of at most <paramref name="maxTokens"/> tokens.</summary>
    /// <param name="tokenizer">The model's tokenizer.</param>
    /// <param name="examples">The examples, untokenized.</param>
    /// <param name="kind">Which target to read from each example.</param>
    /// <param name="maxTokens">Token budget per example, special tokens included (the model's positions minus any the caller reserves).</param>
    /// <param name="requireTargets">False for unlabelled inputs (prediction): missing labels are allowed.</param>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="maxTokens"/> cannot hold the special tokens and one token per text.</exception>
    /// <exception cref="SkTuningException">An example lacks its target or has an empty text (the message names its source).</exception>
    public static EncodedDataset Encode(TextTokenizer tokenizer, IReadOnlyList<TextExample> examples, TaskKind kind, int maxTokens, bool requireTargets = true)
    {
        var layout = Layout.Of(tokenizer);
        int needed = kind == TaskKind.TokenClassification || examples.All(e => e.TextPair is null) ? layout.SingleSpecials + 1 : layout.PairSpecials + 2;
        if (maxTokens < needed)
            throw new ArgumentOutOfRangeException(nameof(maxTokens), maxTokens, $"a budget of {maxTokens} tokens cannot hold the special tokens and the text (at least {needed})");
        var encoded = new EncodedExample[examples.Count];
        int truncated = 0;
        for (int i = 0; i < examples.Count; i++)
        {
            var e = examples[i];
            try
            {
                encoded[i] = kind == TaskKind.TokenClassification ? EncodeWords(tokenizer, layout, e, maxTokens) : EncodeText(tokenizer, layout, e, kind, maxTokens, requireTargets);
            }
            catch (SkTuningException x) when (e.Source.Length > 0 && !x.Message.StartsWith(e.Source, StringComparison.Ordinal))
            {
                throw new SkTuningException($"{e.Source}: {x.Message}", x);
            }
            if (encoded[i].Truncated) truncated++;
        }
        return new EncodedDataset(encoded, truncated);
    }

    private static EncodedExample EncodeText(TextTokenizer tokenizer, Layout layout, TextExample e, TaskKind kind, int max, bool requireTargets)
    {
        if (requireTargets && kind == TaskKind.Classification && e.Label < 0) throw new SkTuningException("no class label");
        if (requireTargets && kind == TaskKind.Regression && !double.IsFinite(e.Value)) throw new SkTuningException($"regression target {e.Value} is not a finite number");
        var full = tokenizer.Encode(e.Text, e.TextPair);
        var (ids, types) = full.Length <= max ? (full.Ids, full.TypeIds)
            : e.TextPair is null ? TruncateSingle(full, layout, max) : TruncatePair(full, layout, max);
        return new EncodedExample
        {
            Kind = kind,
            Ids = ids,
            TypeIds = types,
            Label = kind == TaskKind.Classification ? e.Label : -1,
            Value = kind == TaskKind.Regression ? (float)e.Value : float.NaN,
            Source = e.Source,
            Truncated = full.Length > max,
        };
    }

    // [prefix] content [suffix] → [prefix] content[..keep] [suffix].
    private static (int[] Ids, int[] Types) TruncateSingle(EncodedText full, Layout layout, int max)
    {
        int p = layout.SinglePrefix.Length, q = layout.SingleSuffix.Length, keep = max - p - q, n = full.Length;
        int[] Cut(int[] a) => [.. a.AsSpan(0, p + keep), .. a.AsSpan(n - q, q)];
        return (Cut(full.Ids), Cut(full.TypeIds));
    }

    // [prefixA] a [suffixA] [prefixB] b [suffixB], the A segment typed 0 and the B segment 1.
    private static (int[] Ids, int[] Types) TruncatePair(EncodedText full, Layout layout, int max)
    {
        // SecondStart, not the types: a decoder's pair is all type 0.
        int n = full.Length, nA = full.SecondStart;
        if (nA < 0) nA = n;
        int la = nA - layout.PairA.Prefix - layout.PairA.Suffix;
        int lb = n - nA - layout.PairB.Prefix - layout.PairB.Suffix;
        int budget = max - layout.PairSpecials;
        if (nA == n || la < 0 || lb < 0) return TruncateSingle(full, layout, max);
        // Hugging Face longest_first: one token at a time from the longer sentence (the second on a tie).
        while (la + lb > budget)
        {
            if (la > lb) la--;
            else lb--;
        }
        int aEnd = layout.PairA.Prefix + la, bStart = nA, bEnd = nA + layout.PairB.Prefix + lb;
        int[] Cut(int[] x) =>
        [
            .. x.AsSpan(0, aEnd), .. x.AsSpan(nA - layout.PairA.Suffix, layout.PairA.Suffix),
            .. x.AsSpan(bStart, bEnd - bStart), .. x.AsSpan(n - layout.PairB.Suffix, layout.PairB.Suffix),
        ];
        return (Cut(full.Ids), Cut(full.TypeIds));
    }

    private static EncodedExample EncodeWords(TextTokenizer tokenizer, Layout layout, TextExample e, int max)
    {
        if (e.Words is null || e.WordLabels is null) throw new SkTuningException("not a token-classification example (no words and word labels)");
        if (e.Words.Length != e.WordLabels.Length) throw new SkTuningException($"{e.Words.Length} words but {e.WordLabels.Length} labels");
        int p = layout.SinglePrefix.Length, q = layout.SingleSuffix.Length, budget = max - p - q;
        var ids = new List<int>(p + q + e.Words.Length * 2);
        var labels = new List<int>(ids.Capacity);
        var starts = new List<int>(e.Words.Length);
        ids.AddRange(layout.SinglePrefix);
        labels.AddRange(Enumerable.Repeat(EncodedExample.IgnoreLabel, p));
        bool truncated = false;
        for (int w = 0; w < e.Words.Length; w++)
        {
            var pieces = tokenizer.EncodeWordPieces(e.Words[w]);
            int room = budget - (ids.Count - p);
            if (pieces.Length > room)
            {
                truncated = true;
                if (w > 0) break;
                pieces = pieces[..room]; // a first word longer than the whole budget keeps what fits
            }
            starts.Add(ids.Count);
            ids.AddRange(pieces);
            labels.Add(e.WordLabels[w]);
            labels.AddRange(Enumerable.Repeat(EncodedExample.IgnoreLabel, pieces.Length - 1));
        }
        ids.AddRange(layout.SingleSuffix);
        labels.AddRange(Enumerable.Repeat(EncodedExample.IgnoreLabel, q));
        return new EncodedExample
        {
            Kind = TaskKind.TokenClassification,
            Ids = [.. ids],
            TypeIds = new int[ids.Count],
            TokenLabels = [.. labels],
            WordStarts = [.. starts],
            Source = e.Source,
            Truncated = truncated,
        };
    }

    /// <summary>Where the tokenizer puts its special tokens, found by encoding a probe word alone and as a pair.</summary>
    private sealed record Layout(int[] SinglePrefix, int[] SingleSuffix, (int Prefix, int Suffix) PairA, (int Prefix, int Suffix) PairB)
    {
        public int SingleSpecials => SinglePrefix.Length + SingleSuffix.Length;

        public int PairSpecials => PairA.Prefix + PairA.Suffix + PairB.Prefix + PairB.Suffix;

        public static Layout Of(TextTokenizer tokenizer)
        {
            const string probe = "a";
            var pieces = tokenizer.EncodeWordPieces(probe);
            var single = tokenizer.Encode(probe).Ids;
            int at = Find(single, pieces);
            var pair = tokenizer.Encode(probe, probe);
            int nA = pair.SecondStart;
            if (nA < 0) nA = pair.Length;
            int atA = Find(pair.Ids.AsSpan(0, nA), pieces);
            int atB = nA < pair.Length ? Find(pair.Ids.AsSpan(nA), pieces) : 0;
            if (at < 0 || atA < 0 || atB < 0)
                throw new SkTuningException($"{tokenizer.Kind} tokenizer: cannot tell its special tokens apart from the text (probe '{probe}')");
            return new Layout(
                single[..at], single[(at + pieces.Length)..],
                (atA, nA - atA - pieces.Length),
                nA < pair.Length ? (atB, pair.Length - nA - atB - pieces.Length) : (0, 0));
        }

        private static int Find(ReadOnlySpan<int> haystack, ReadOnlySpan<int> needle) => haystack.IndexOf(needle);
    }
}
