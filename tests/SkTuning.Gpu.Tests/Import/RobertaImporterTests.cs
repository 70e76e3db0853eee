using System.Text.Json;
using Google.Protobuf;
using SkTuning.Gpu.Import;
using SkTuning.Gpu.Onnx;
using SkTuning.Gpu.Onnx.Proto;
using SkTuning.Gpu.Tests.Cli;
using SkTuning.Gpu.Tests.Data;
using SkTuning.Gpu.Tests.Support;

namespace SkTuning.Gpu.Tests.Import;

/// <summary>
/// The committed RoBERTa-style exports import as <see cref="ModelFamily.Roberta"/> with the padding id their graph
/// computes positions from, the generator's sizes and weights; a graph whose positions do not follow the rule is refused.
/// </summary>
public class RobertaImporterTests
{
    private static JsonElement Reference(string name) =>
        JsonDocument.Parse(File.ReadAllText(Path.Combine(EncoderFixtures.Folder(name), "reference.json"))).RootElement;

    [Fact]
    public void EveryCommittedFixtureIsFound() => Assert.True(Directory.GetDirectories(EncoderFixtures.Root).Length >= 2);

    [Theory]
    [MemberData(nameof(EncoderFixtures.Names), MemberType = typeof(EncoderFixtures))]
    public void FixtureImportsWithTheGeneratorsSpecAndWeights(string name)
    {
        var r = Reference(name);
        var imported = ModelImporter.Import(EncoderFixtures.OnnxPath(name));
        var s = imported.Spec;
        Assert.Equal(ModelFamily.Roberta, s.Family);
        Assert.Equal(r.GetProperty("paddingIdx").GetInt32(), s.PositionPaddingId);
        Assert.Equal(r.GetProperty("maxPositions").GetInt32(), s.MaxPositions);
        Assert.Equal(s.MaxPositions - s.PositionPaddingId!.Value - 1, s.MaxTokens);
        Assert.Equal(r.GetProperty("layers").GetInt32(), s.Layers);
        Assert.Equal(r.GetProperty("hidden").GetInt32(), s.Hidden);
        Assert.Equal(r.GetProperty("heads").GetInt32(), s.Heads);
        Assert.Equal(r.GetProperty("headSize").GetInt32(), s.HeadSize);
        Assert.Equal(r.GetProperty("ffn").GetInt32(), s.FfnSize);
        Assert.Equal((float)r.GetProperty("epsilon").GetDouble(), s.Epsilon);
        Assert.Equal(r.GetProperty("vocab").GetInt32(), s.VocabSize);
        Assert.Equal(r.GetProperty("typeVocab").GetInt32(), s.TypeVocabSize);
        Assert.Equal(r.GetProperty("parameterCount").GetInt64(), s.ParameterCount);
        Assert.Equal((NormPlacement.Post, ActivationKind.GeluErf, PositionKind.Absolute), (s.NormPlacement, s.Activation, s.Positions));
        Assert.False(s.Causal);
        Assert.True(s.EmbeddingNorm && s.HasPooler);
        Assert.Equal(float.MinValue, s.MaskValue);
        Assert.Equal("input_ids", imported.InputIdsName);
        Assert.Equal("attention_mask", imported.AttentionMaskName);
        // Without a token_type_ids input the graph indexes the one-row table by HF's zeros buffer: nothing to feed.
        Assert.Equal(r.GetProperty("tokenTypeIds").GetBoolean() ? "token_type_ids" : null, imported.TokenTypeIdsName);
        Assert.Null(imported.PositionIdsName);

        var w = imported.Weights;
        var tensors = new Dictionary<string, float[]>
        {
            ["Embeddings.Word"] = w.Embeddings.Word, ["Embeddings.Position"] = w.Embeddings.Position,
            ["Embeddings.TokenType"] = w.Embeddings.TokenType, ["Embeddings.NormGamma"] = w.Embeddings.NormGamma,
            ["Embeddings.NormBeta"] = w.Embeddings.NormBeta, ["Pooler.W"] = w.Pooler!.W, ["Pooler.B"] = w.Pooler.B,
        };
        for (int l = 0; l < s.Layers; l++)
        {
            var x = w.Layers[l];
            foreach (var (role, data) in new[] { ("Wq", x.Wq), ("Bq", x.Bq), ("Wk", x.Wk), ("Bk", x.Bk), ("Wv", x.Wv), ("Bv", x.Bv), ("Wo", x.Wo), ("Bo", x.Bo),
                         ("AttentionNormGamma", x.AttentionNormGamma), ("AttentionNormBeta", x.AttentionNormBeta), ("W1", x.W1), ("B1", x.B1),
                         ("W2", x.W2), ("B2", x.B2), ("FfnNormGamma", x.FfnNormGamma), ("FfnNormBeta", x.FfnNormBeta) })
                tensors[$"Layers.{l}.{role}"] = data;
        }
        var checksums = r.GetProperty("checksums").EnumerateObject().ToList();
        Assert.Equal(checksums.Count, tensors.Count);
        foreach (var c in checksums)
        {
            double expected = c.Value.GetDouble(), actual = Checksum(tensors[c.Name]);
            Assert.True(Math.Abs(actual - expected) <= 1e-6 * Math.Max(1, Math.Abs(expected)), $"{c.Name}: checksum {actual}, generator {expected}");
        }
    }

    /// <summary>The generator's checksum: Σ w[i]·((i mod 7) + 1) in fp64 over the row-major [in, out] array.</summary>
    private static double Checksum(float[] a)
    {
        double sum = 0;
        for (int i = 0; i < a.Length; i++) sum += a[i] * (double)(i % 7 + 1);
        return sum;
    }

    [Fact]
    public void ABertGraphKeepsBertPositions()
    {
        using var dir = new TempDir();
        string path = Path.Combine(dir.Path, "bert.onnx");
        FixtureModels.WriteBert(path, new BertFixtureOptions(Layers: 1, Hidden: 8, Heads: 2, FfnSize: 16, VocabSize: 20, MaxPositions: 10, Seed: 1));
        var s = ModelImporter.Import(path).Spec;
        Assert.Equal(ModelFamily.Bert, s.Family);
        Assert.Null(s.PositionPaddingId);
        Assert.Equal(10, s.MaxTokens);
    }

    /// <summary>roberta_opset14 with its position offset (the Add after the CumSum) changed from padding_idx 1 to 2.</summary>
    private static ModelProto WithPositionOffset(long offset)
    {
        var proto = ModelProto.Parser.ParseFrom(File.ReadAllBytes(EncoderFixtures.OnnxPath("roberta_opset14")));
        var add = proto.Graph.Node.Single(n => n.Name == "/model/embeddings/Add");
        var constant = proto.Graph.Node.Single(n => n.Output[0] == add.Input[1]);
        var value = constant.Attribute.Single(a => a.Name == "value").T;
        Assert.Equal(1L, BitConverter.ToInt64(value.RawData.Span));
        value.RawData = ByteString.CopyFrom(BitConverter.GetBytes(offset));
        return proto;
    }

    [Fact]
    public void PositionsThatDoNotCountFromThePaddingIdAreRefusedInOneLine()
    {
        using var dir = new TempDir();
        string path = Path.Combine(dir.Path, "offset2.onnx");
        File.WriteAllBytes(path, WithPositionOffset(2).ToByteArray());
        var e = Assert.Throws<SkTuningException>(() => ModelImporter.Import(path));
        Assert.Contains("offset2.onnx: unsupported graph: position ids count from 2, not from the padding id 1", e.Message);
        Assert.DoesNotContain('\n', e.Message);
        CliErrorTests.AssertOneLineError(CliProcess.Run("verify", "--model", path, "--device", "cpu"), "offset2.onnx", "padding id 1");
    }
}
