namespace SkTuning.Gpu.Tokenization;

/// <summary>Token ids and token type ids of one encoded text (or sentence pair), special tokens included.</summary>
/// <param name="Ids">Vocabulary ids.</param>
/// <param name="TypeIds">BERT: 0 for the first sentence, 1 for the second. Decoders: all 0 (they have no segment embedding).</param>
/// <param name="SecondStart">
/// Index of the first token that belongs to the second text of a pair (its own special tokens included), or -1 for a
/// single text. Needed because a decoder's types are all 0 and cannot tell where the second text begins.
/// </param>
public sealed record EncodedText(int[] Ids, int[] TypeIds, int SecondStart = -1)
{
    /// <summary>Number of tokens.</summary>
    public int Length => Ids.Length;
}
