using SkTuning.Gpu.Tests.Data;
using SkTuning.Gpu.Tokenization;

namespace SkTuning.Gpu.Tests.Tokenization;

public class TextTokenizerTests
{
    [Fact]
    public void VocabTxtGivesAnUncasedWordPieceTokenizer()
    {
        using var dir = new TempDir();
        dir.Write("vocab.txt", string.Join('\n', "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "play", "##ing", "a", "guitar", "."));
        var tok = TextTokenizer.Load(dir.Path);
        Assert.Equal("wordpiece", tok.Kind);
        Assert.Equal(new[] { 2, 5, 6, 7, 8, 9, 3 }, tok.Encode("Playing a GUITAR.").Ids);
    }

    [Fact]
    public void VocabJsonAndMergesGiveAByteLevelBpeTokenizer()
    {
        using var dir = new TempDir();
        // Byte-level BPE: a space is the byte-level symbol 'Ġ'.
        dir.Write("vocab.json", """{"h":0,"e":1,"l":2,"o":3,"Ġ":4,"w":5,"r":6,"d":7,"he":8,"ll":9,"hell":10,"hello":11,"Ġw":12,"or":13,"Ġwor":14,"ld":15,"Ġworld":16}""");
        dir.Write("merges.txt", "#version: 0.2\nh e\nl l\nhe ll\nhell o\nĠ w\no r\nĠw or\nl d\nĠwor ld\n");
        var tok = TextTokenizer.Load(dir.Path);
        Assert.Equal("bpe", tok.Kind);
        Assert.Equal(new[] { 11, 16 }, tok.Encode("hello world").Ids);
        // A decoder has no segment embedding: the pair is all type 0, the second text starts where SecondStart says.
        var pair = tok.Encode("hello", "world");
        Assert.All(pair.TypeIds, t => Assert.Equal(0, t));
        // No EOS in this vocabulary: the texts are joined with no separator.
        Assert.Equal(new[] { 11, 5, 13, 15 }, pair.Ids);
        Assert.Equal(1, pair.SecondStart);
        Assert.False(tok.HasPadToken);
    }

    [Fact]
    public void AFolderWithoutTokenizerFilesIsAOneLineError()
    {
        using var dir = new TempDir();
        var e = Assert.Throws<SkTuningException>(() => TextTokenizer.Load(dir.Path));
        Assert.Contains(dir.Path, e.Message);
        Assert.Contains("no tokenizer file", e.Message);
    }

    [Fact]
    public void EmptyTextIsRejected()
    {
        using var dir = new TempDir();
        dir.Write("vocab.txt", "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\na\n");
        Assert.Contains("empty text", Assert.Throws<SkTuningException>(() => TextTokenizer.Load(dir.Path).Encode("")).Message);
    }
}
