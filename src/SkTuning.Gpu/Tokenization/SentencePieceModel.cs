using Microsoft.ML.Tokenizers;

namespace SkTuning.Gpu.Tokenization;

/// <summary>A SentencePiece <c>tokenizer.model</c> (Llama-2, Mistral, TinyLlama), encoded by Microsoft.ML.Tokenizers.</summary>
internal sealed class SentencePieceModel : ITokenModel
{
    public SentencePieceModel(string path)
    {
        using var stream = InputFile.OpenRead(path);
        // Special tokens are added by TextTokenizer from tokenizer_config.json, so the model adds none itself.
        Sp = SentencePieceTokenizer.Create(stream, false, false);
    }

    /// <summary>The underlying tokenizer (its BOS/EOS ids are the defaults).</summary>
    public SentencePieceTokenizer Sp { get; }

    public string Kind => "sentencepiece";

    public int VocabularySize => Sp.Vocabulary.Count;

    public IReadOnlyList<int> Encode(string text) => Sp.EncodeToIds(text, addBeginningOfSentence: false, addEndOfSentence: false);

    public string Decode(IEnumerable<int> ids) => Sp.Decode(ids) ?? "";

    public int? IdOf(string token) => Sp.Vocabulary.TryGetValue(token, out var id) ? id : null;
}
