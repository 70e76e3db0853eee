namespace SkTuning.Gpu.Tokenization;

/// <summary>One tokenizer's text → ids rule, without special tokens (TextTokenizer adds those the same way for all).</summary>
internal interface ITokenModel
{
    /// <summary>"wordpiece", "bpe", "sentencepiece", "sentencepiece-bpe" or "sentencepiece-fairseq".</summary>
    string Kind { get; }

    /// <summary>One more than the largest id (the embedding rows the model needs).</summary>
    int VocabularySize { get; }

    /// <summary>The ids of <paramref name="text"/>, no special token added.</summary>
    IReadOnlyList<int> Encode(string text);

    /// <summary>The text of <paramref name="ids"/>.</summary>
    string Decode(IEnumerable<int> ids);

    /// <summary>The id of a token string (added tokens included), or null.</summary>
    int? IdOf(string token);
}
