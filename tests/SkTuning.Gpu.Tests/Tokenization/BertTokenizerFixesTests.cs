using SkTuning.Gpu.Import;
using SkTuning.Gpu.Tokenization;

namespace SkTuning.Gpu.Tests.Tokenization;

/// <summary>BERT BasicTokenizer behaviour on MiniLM's real uncased vocabulary (found wrong on SST-2).</summary>
public class BertTokenizerFixesTests
{
    private static readonly Lazy<string> Dir = new(() => ModelCatalog.Resolve("minilm").TokenizerDirectory);
    private static readonly Lazy<TextTokenizer> MiniLm = new(() => TextTokenizer.Load(Dir.Value));
    private static readonly Lazy<string[]> Vocab = new(() => File.ReadAllLines(Path.Combine(Dir.Value, "vocab.txt")));

    // The vocabulary strings ("##eme" keeps its prefix, which Decode would drop).
    private static string[] Tokens(TextTokenizer tok, string text) => tok.Encode(text).Ids.Select(id => Vocab.Value[id]).ToArray();

    [Fact]
    public void BackticksArePunctuationNotDropped()
    {
        var tok = MiniLm.Value;
        var ids = tok.Encode("`` a").Ids;
        Assert.Equal(5, ids.Length); // [CLS] ` ` a [SEP]
        Assert.Equal(ids[1], ids[2]);
        Assert.Equal(new[] { "`", "`", "a" }, Tokens(tok, "`` a")[1..^1]);
    }

    [Fact]
    public void OtherAsciiSymbolsSplitLikeBert()
    {
        Assert.Equal(new[] { "a", "+", "b", "=", "c", "$", "5", "|", "~", "^", "<", ">" }, Tokens(MiniLm.Value, "a+b=c $5|~^<>")[1..^1]);
    }

    [Fact]
    public void AccentsAreStrippedForAnUncasedVocabulary()
    {
        Assert.Equal(new[] { "cr", "##eme", "br", "##ule", "##e" }, Tokens(MiniLm.Value, "crème brûlée")[1..^1]);
    }
}
