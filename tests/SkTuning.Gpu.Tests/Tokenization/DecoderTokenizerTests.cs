using System.Text.Json;
using SkTuning.Gpu.Tests.Data;
using SkTuning.Gpu.Tokenization;

namespace SkTuning.Gpu.Tests.Tokenization;

/// <summary>
/// Decoder tokenizers against reference ids: Fixtures/tokenizers/&lt;name&gt;/reference.json was written by
/// SentencePiece itself (sentencepiece) or by HF tokenizers' rules in tokenizers.js (the others); see
/// tests/fixtures/make_tokenizer_fixtures.py.
/// </summary>
public class DecoderTokenizerTests
{
    private static string Fixture(string name) => Path.Combine(AppContext.BaseDirectory, "Fixtures", "tokenizers", name);

    public static TheoryData<string> Fixtures => new() { "gpt2-bpe", "llama3-bpe", "sentencepiece", "llama2-json" };

    [Theory]
    [MemberData(nameof(Fixtures))]
    public void IdsMatchTheReferenceTokenizerTokenForToken(string name)
    {
        var tok = TextTokenizer.Load(Fixture(name));
        using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(Fixture(name), "reference.json")));
        var cases = doc.RootElement.GetProperty("cases").EnumerateArray().ToList();
        Assert.True(cases.Count >= 20);
        var failures = new List<string>();
        foreach (var c in cases)
        {
            var text = c.GetProperty("text").GetString()!;
            var expected = c.GetProperty("ids").EnumerateArray().Select(e => e.GetInt32()).ToArray();
            var actual = tok.Encode(text).Ids;
            if (!expected.SequenceEqual(actual))
                failures.Add($"{JsonSerializer.Serialize(text)}: expected [{string.Join(",", expected)}], got [{string.Join(",", actual)}]");
        }
        Assert.True(failures.Count == 0, string.Join("\n", failures));
        Assert.InRange(tok.VocabularySize, 256, 1000);
    }

    [Theory]
    [InlineData("gpt2-bpe", "bpe", 606, 606, false)]
    [InlineData("llama3-bpe", "bpe", 604, 605, true)]
    [InlineData("sentencepiece", "sentencepiece", 1, 2, true)]
    [InlineData("llama2-json", "sentencepiece-bpe", 1, 2, true)]
    public void SpecialTokensComeFromTheFilesBesideTheModel(string name, string kind, int bos, int eos, bool addsBos)
    {
        var tok = TextTokenizer.Load(Fixture(name));
        Assert.Equal(kind, tok.Kind);
        Assert.Equal(bos, tok.BosId);
        Assert.Equal(eos, tok.EosId);
        Assert.Equal(addsBos, tok.AddsBos);
        Assert.False(tok.AddsEos);
        // None of these decoders has a pad token: padding uses EOS (masked out anyway).
        Assert.False(tok.HasPadToken);
        Assert.Equal(eos, tok.PadId);
        Assert.Equal(addsBos, tok.Encode("hello").Ids[0] == bos);
    }

    [Theory]
    [MemberData(nameof(Fixtures))]
    public void APairIsTheFirstTextEosThenTheSecondAllTypeZero(string name)
    {
        var tok = TextTokenizer.Load(Fixture(name));
        var a = tok.Encode("the fox");
        var b = tok.EncodeWordPieces("the dog");
        var pair = tok.Encode("the fox", "the dog");
        Assert.Equal(a.Ids.Append(tok.EosId!.Value).Concat(b).ToArray(), pair.Ids);
        Assert.Equal(a.Length + 1, pair.SecondStart);
        Assert.All(pair.TypeIds, t => Assert.Equal(0, t));
    }

    [Fact]
    public void AddEosTokenInTheConfigEndsEveryText()
    {
        using var dir = new TempDir();
        foreach (var f in new[] { "tokenizer.model" }) File.Copy(Path.Combine(Fixture("sentencepiece"), f), Path.Combine(dir.Path, f));
        dir.Write("tokenizer_config.json", """{"add_bos_token": false, "add_eos_token": true, "pad_token": "<unk>"}""");
        var tok = TextTokenizer.Load(dir.Path);
        var ids = tok.Encode("hello").Ids;
        Assert.NotEqual(1, ids[0]);
        Assert.Equal(2, ids[^1]);
        Assert.True(tok.HasPadToken);
        Assert.Equal(0, tok.PadId);
    }

    [Fact]
    public void AMalformedTokenizerJsonIsAOneLineErrorNamingTheFile()
    {
        using var dir = new TempDir();
        dir.Write("tokenizer.json", "{ \"model\": ");
        var e = Assert.Throws<SkTuningException>(() => TextTokenizer.Load(dir.Path));
        Assert.Contains(Path.Combine(dir.Path, "tokenizer.json"), e.Message);
        Assert.DoesNotContain('\n', e.Message);
    }

    [Fact]
    public void AnUnknownSpecialTokenInTheConfigNamesTheFolder()
    {
        using var dir = new TempDir();
        File.Copy(Path.Combine(Fixture("llama2-json"), "tokenizer.json"), Path.Combine(dir.Path, "tokenizer.json"));
        dir.Write("tokenizer_config.json", """{"eos_token": "<|nope|>"}""");
        var e = Assert.Throws<SkTuningException>(() => TextTokenizer.Load(dir.Path));
        Assert.Contains("eos_token '<|nope|>'", e.Message);
    }
}
