using System.Text.Json;
using System.Text.Json.Nodes;
using SkTuning.Gpu.Import;
using SkTuning.Gpu.Tests.Data;
using SkTuning.Gpu.Tests.Support;
using SkTuning.Gpu.Tokenization;

namespace SkTuning.Gpu.Tests.Tokenization;

/// <summary>
/// RoBERTa's tokenizer (vocab.json + merges.txt with &lt;s&gt; &lt;pad&gt; &lt;/s&gt; &lt;unk&gt; … &lt;mask&gt;) against the ids
/// tokenizers.js gives with RobertaProcessing, and XLM-R's (sentencepiece.bpe.model, unigram) against SentencePiece's ids
/// with fairseq's offset (Fixtures/tokenizers/{roberta-bpe,xlmr-unigram}/reference.json, written by
/// tests/fixtures/make_encoder_fixtures.py): single texts <c>&lt;s&gt; a &lt;/s&gt;</c> and pairs <c>&lt;s&gt; a &lt;/s&gt;&lt;/s&gt; b &lt;/s&gt;</c>.
/// </summary>
public class RobertaTokenizerTests
{
    private static readonly string Dir = Fixture("roberta-bpe");

    private static string Fixture(string name) => Path.Combine(AppContext.BaseDirectory, "Fixtures", "tokenizers", name);

    private static int[] Ids(JsonElement c) => c.GetProperty("ids").EnumerateArray().Select(e => e.GetInt32()).ToArray();

    [Theory]
    [InlineData("roberta-bpe", "bpe")]
    [InlineData("xlmr-unigram", "sentencepiece-fairseq")]
    public void TextsAndPairsMatchTheReferenceTokenForToken(string name, string kind)
    {
        var tok = TextTokenizer.Load(Fixture(name));
        Assert.True(tok.IsRoberta);
        Assert.Equal(kind, tok.Kind);
        var r = JsonDocument.Parse(File.ReadAllText(Path.Combine(Fixture(name), "reference.json"))).RootElement;
        var failures = new List<string>();
        var cases = r.GetProperty("cases").EnumerateArray().ToList();
        var pairs = r.GetProperty("pairs").EnumerateArray().ToList();
        Assert.True(cases.Count >= 20 && pairs.Count >= 4);
        foreach (var c in cases.Concat(pairs))
        {
            var text = c.GetProperty("text").GetString()!;
            var pair = c.TryGetProperty("pair", out var p) ? p.GetString() : null;
            var encoded = tok.Encode(text, pair);
            if (!Ids(c).SequenceEqual(encoded.Ids))
                failures.Add($"{JsonSerializer.Serialize(text)} / {JsonSerializer.Serialize(pair)}: expected [{string.Join(",", Ids(c))}], got [{string.Join(",", encoded.Ids)}]");
            // One token type: RoBERTa's table has a single row.
            Assert.All(encoded.TypeIds, t => Assert.Equal(0, t));
        }
        Assert.True(failures.Count == 0, string.Join("\n", failures));
    }

    [Theory]
    [InlineData("roberta-bpe")]
    [InlineData("xlmr-unigram")]
    public void SpecialTokensArePaddingOneAndThePairSeparatorIsDoubled(string name)
    {
        var tok = TextTokenizer.Load(Fixture(name));
        Assert.Equal((0, 2, 1), (tok.BosId, tok.EosId, tok.PadId));
        Assert.True(tok.HasPadToken);
        var a = tok.Encode("hello").Ids;
        var pair = tok.Encode("hello", "world");
        Assert.Equal(0, a[0]);
        Assert.Equal(2, a[^1]);
        Assert.Equal([2, 2], pair.Ids[(a.Length - 1)..(a.Length + 1)]);
        Assert.Equal(a.Length + 1, pair.SecondStart);
        // The GPT-2 vocabulary (no <s>/<pad>/<mask>) keeps the decoder format.
        Assert.False(TextTokenizer.Load(Fixture("gpt2-bpe")).IsRoberta);
    }

    [Fact]
    public void ATokenizerJsonWithRobertaProcessingEncodesAsVocabJsonAndMergesDo()
    {
        // roberta-base ships both; tokenizer.json is read first, and its RobertaProcessing selects RoBERTa's specials.
        using var dir = new TempDir();
        var vocab = JsonNode.Parse(File.ReadAllText(Path.Combine(Dir, "vocab.json")))!;
        var merges = new JsonArray(File.ReadLines(Path.Combine(Dir, "merges.txt")).Where(l => l.Length > 0 && !l.StartsWith("#version"))
            .Select(l => (JsonNode)JsonValue.Create(l)).ToArray());
        var json = new JsonObject
        {
            ["added_tokens"] = new JsonArray(new[] { "<s>", "<pad>", "</s>", "<unk>", "<mask>" }.Select(t => (JsonNode)new JsonObject
            {
                ["id"] = vocab[t]!.GetValue<int>(), ["content"] = t, ["special"] = true,
            }).ToArray()),
            ["pre_tokenizer"] = new JsonObject { ["type"] = "ByteLevel", ["add_prefix_space"] = false, ["use_regex"] = true },
            ["post_processor"] = new JsonObject { ["type"] = "RobertaProcessing", ["sep"] = new JsonArray("</s>", 2), ["cls"] = new JsonArray("<s>", 0) },
            ["model"] = new JsonObject { ["type"] = "BPE", ["vocab"] = vocab.DeepClone(), ["merges"] = merges },
        };
        File.WriteAllText(Path.Combine(dir.Path, "tokenizer.json"), json.ToJsonString());
        TextTokenizer fromJson = TextTokenizer.Load(dir.Path), fromFiles = TextTokenizer.Load(Dir);
        Assert.True(fromJson.IsRoberta);
        Assert.Equal(fromFiles.PadId, fromJson.PadId);
        foreach (var (a, b) in new[] { ("Hello world", (string?)null), ("It's a small world, isn't it?", "numbers 12345") })
            Assert.Equal(fromFiles.Encode(a, b).Ids, fromJson.Encode(a, b).Ids);
    }

    [Fact]
    public void XlmrIdsAreSentencePieceIdsPlusOneWithFairseqSpecials()
    {
        var tok = TextTokenizer.Load(Fixture("xlmr-unigram"));
        // 183 SentencePiece pieces + fairseq's offset + <mask>; <unk> is 3 (SentencePiece's 0), and a word with no piece takes it.
        Assert.Equal(183 + 2, tok.VocabularySize);
        Assert.Equal([3], tok.EncodeWordPieces(""));
        Assert.Equal("hello world", tok.Decode(tok.Encode("hello world").Ids).Trim());
    }

    [Fact]
    public void ATokenizerWithAnotherPaddingIdIsRefusedForARobertaModel()
    {
        // Positions count from the graph's padding id: a tokenizer padding with another id would shift them all.
        using var dir = new TempDir();
        File.Copy(EncoderFixtures.OnnxPath("roberta_opset14"), Path.Combine(dir.Path, "model.onnx"));
        foreach (var f in new[] { "vocab.json", "merges.txt" }) File.Copy(Path.Combine(Dir, f), Path.Combine(dir.Path, f));
        File.WriteAllText(Path.Combine(dir.Path, "tokenizer_config.json"), """{"pad_token": "</s>"}""");
        var e = Assert.Throws<SkTuningException>(() => FrozenModel.Load(dir.Path));
        Assert.Contains($"{dir.Path}: the tokenizer's padding id is 2, the model counts positions from padding id 1", e.Message);
    }
}
