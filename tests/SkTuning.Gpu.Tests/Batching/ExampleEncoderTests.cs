using SkTuning.Gpu.Data;
using SkTuning.Gpu.Tests.Data;
using SkTuning.Gpu.Tokenization;
using SkTuning.Gpu.Training;

namespace SkTuning.Gpu.Tests.Batching;

/// <summary>A hand-made uncased WordPiece vocabulary: ids are the line numbers.</summary>
internal static class TinyVocab
{
    public const int Pad = 0, Unk = 1, Cls = 2, Sep = 3;
    public const int Play = 5, Ing = 6, A = 7, Guitar = 8, Dot = 9, Un = 10, Believ = 11, Able = 12;
    public const int One = 13, Two = 14, Three = 15, Four = 16, Five = 17, Six = 18;

    private static readonly string[] Tokens =
        ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "play", "##ing", "a", "guitar", ".", "un", "##believ", "##able",
         "one", "two", "three", "four", "five", "six"];

    public static TextTokenizer Load()
    {
        using var dir = new TempDir();
        dir.Write("vocab.txt", string.Join('\n', Tokens));
        return TextTokenizer.Load(dir.Path);
    }
}

public class ExampleEncoderTests
{
    private static readonly TextTokenizer Tok = TinyVocab.Load();

    private static EncodedDataset Encode(TaskKind kind, int max, params TextExample[] examples) =>
        ExampleEncoder.Encode(Tok, examples, kind, max);

    [Fact]
    public void ShortTextsAreKeptWhole()
    {
        var d = Encode(TaskKind.Classification, 16, TextExample.ForClass("one two", null, 1, "f:1"));
        var e = Assert.Single(d.Examples);
        Assert.Equal(new[] { TinyVocab.Cls, TinyVocab.One, TinyVocab.Two, TinyVocab.Sep }, e.Ids);
        Assert.Equal(new int[4], e.TypeIds);
        Assert.Equal(1, e.Label);
        Assert.Equal("f:1", e.Source);
        Assert.False(e.Truncated);
        Assert.Equal(0, d.TruncatedCount);
    }

    [Fact]
    public void SingleTextsKeepTheirFirstTokensAndEndWithSep()
    {
        var d = Encode(TaskKind.Classification, 5,
            TextExample.ForClass("one two three four five six", null, 0),
            TextExample.ForClass("one two three", null, 1));
        var cut = d.Examples[0];
        Assert.Equal(new[] { TinyVocab.Cls, TinyVocab.One, TinyVocab.Two, TinyVocab.Three, TinyVocab.Sep }, cut.Ids);
        Assert.Equal(5, cut.TypeIds.Length);
        Assert.True(cut.Truncated);
        Assert.False(d.Examples[1].Truncated);
        Assert.Equal(5, d.Examples[1].Length);
        Assert.Equal(1, d.TruncatedCount);
    }

    [Theory]
    // a = 6 tokens, b = 2, budget 8 − 3 specials = 5: the longer loses tokens until a = 3.
    [InlineData("one two three four five six", "one two", 8, 3, 2)]
    // 4 + 4 into 5: longest first, the second sentence on ties → a 3, b 2.
    [InlineData("one two three four", "one two three four", 8, 3, 2)]
    // b longer: a = 2 kept, b cut to 3.
    [InlineData("one two", "one two three four five six", 8, 2, 3)]
    public void PairsLoseTokensFromTheLongerSentenceFirst(string a, string b, int max, int keptA, int keptB)
    {
        var d = Encode(TaskKind.Regression, max, TextExample.ForValue(a, b, 2.5, "p:2"));
        var e = d.Examples[0];
        Assert.Equal(max, e.Length);
        Assert.True(e.Truncated);
        Assert.Equal(2.5f, e.Value);
        int[] firstIds = [TinyVocab.One, TinyVocab.Two, TinyVocab.Three, TinyVocab.Four, TinyVocab.Five, TinyVocab.Six];
        int[] expected = [TinyVocab.Cls, .. firstIds[..keptA], TinyVocab.Sep, .. firstIds[..keptB], TinyVocab.Sep];
        Assert.Equal(expected, e.Ids);
        // Types: 0 over [CLS] a [SEP], then 1 over b [SEP], contiguous.
        Assert.Equal(Enumerable.Repeat(0, keptA + 2).Concat(Enumerable.Repeat(1, keptB + 1)), e.TypeIds);
        Assert.Equal(TinyVocab.Sep, e.Ids[^1]);
    }

    [Fact]
    public void TokenLabelsGoOnTheFirstSubTokenOfEachWord()
    {
        string[] words = ["Playing", "a", "unbelievable", "guitar.", "\u0007"];
        int[] labels = [1, 0, 2, 3, 4];
        var d = Encode(TaskKind.TokenClassification, 64, TextExample.ForWords(words, labels, "n:3"));
        var e = d.Examples[0];
        const int I = EncodedExample.IgnoreLabel;
        Assert.Equal(new[]
        {
            TinyVocab.Cls, TinyVocab.Play, TinyVocab.Ing, TinyVocab.A, TinyVocab.Un, TinyVocab.Believ, TinyVocab.Able,
            TinyVocab.Guitar, TinyVocab.Dot, TinyVocab.Unk, TinyVocab.Sep,
        }, e.Ids);
        Assert.Equal(new[] { I, 1, I, 0, 2, I, I, 3, I, 4, I }, e.TokenLabels);
        Assert.Equal(new[] { 1, 3, 4, 7, 9 }, e.WordStarts);
        Assert.Equal(new int[e.Length], e.TypeIds);
        Assert.False(e.Truncated);
        Assert.Equal(TaskKind.TokenClassification, e.Kind);
    }

    [Fact]
    public void TokenClassificationDropsWholeWordsAtTheEnd()
    {
        // Budget 7 − 2 specials = 5: "playing a" (3) fits, "unbelievable" (3) does not, and neither does "a" after it.
        var d = Encode(TaskKind.TokenClassification, 7, TextExample.ForWords(["playing", "a", "unbelievable", "a"], [1, 2, 3, 4]));
        var e = d.Examples[0];
        Assert.Equal(new[] { TinyVocab.Cls, TinyVocab.Play, TinyVocab.Ing, TinyVocab.A, TinyVocab.Sep }, e.Ids);
        Assert.Equal(new[] { -100, 1, -100, 2, -100 }, e.TokenLabels);
        Assert.Equal(new[] { 1, 3 }, e.WordStarts);
        Assert.True(e.Truncated);
        Assert.Equal(1, d.TruncatedCount);
    }

    [Fact]
    public void MissingTargetsAndEmptyTextsNameTheirSource()
    {
        var noLabel = new TextExample { Text = "one", Source = "train.tsv:7" };
        Assert.StartsWith("train.tsv:7: ", Assert.Throws<SkTuningException>(() => Encode(TaskKind.Classification, 8, noLabel)).Message);
        Assert.StartsWith("train.tsv:8: ", Assert.Throws<SkTuningException>(() => Encode(TaskKind.Regression, 8, noLabel with { Source = "train.tsv:8" })).Message);
        Assert.StartsWith("train.tsv:9: ", Assert.Throws<SkTuningException>(() => Encode(TaskKind.Classification, 8, TextExample.ForClass(" ", null, 0, "train.tsv:9"))).Message);
        Assert.StartsWith("x:1: ", Assert.Throws<SkTuningException>(() => Encode(TaskKind.TokenClassification, 8, noLabel with { Source = "x:1" })).Message);
    }

    [Fact]
    public void ABudgetTooSmallForTheSpecialTokensIsRejected()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => Encode(TaskKind.Classification, 2, TextExample.ForClass("one", null, 0)));
        Assert.Throws<ArgumentOutOfRangeException>(() => Encode(TaskKind.Classification, 4, TextExample.ForClass("one", "two", 0)));
        Assert.Equal(5, Encode(TaskKind.Classification, 5, TextExample.ForClass("one two", "three four", 0)).Examples[0].Length);
    }
}
