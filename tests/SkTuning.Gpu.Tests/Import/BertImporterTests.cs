using SkTuning.Gpu.Import;
using SkTuning.Gpu.Onnx;
using SkTuning.Gpu.Onnx.Proto;
using SkTuning.Gpu.Tests.Support;

namespace SkTuning.Gpu.Tests.Import;

public sealed class BertImporterTests : IDisposable
{
    private static readonly Lazy<ImportedModel> MiniLm = new(() => BertImporter.Import(ModelCatalog.Resolve("minilm").OnnxPath));

    private readonly string _dir = Path.Combine(Path.GetTempPath(), "sktune-import-tests", Guid.NewGuid().ToString("N"));

    public BertImporterTests() => Directory.CreateDirectory(_dir);

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public void MiniLmImportsAsBert()
    {
        var s = MiniLm.Value.Spec;
        Assert.Equal(ModelFamily.Bert, s.Family);
        Assert.Equal(6, s.Layers);
        Assert.Equal(384, s.Hidden);
        Assert.Equal(12, s.Heads);
        Assert.Equal(12, s.KvHeads);
        Assert.Equal(32, s.HeadSize);
        Assert.Equal(1536, s.FfnSize);
        Assert.Equal(1e-12f, s.Epsilon);
        Assert.Equal(30_522, s.VocabSize);
        Assert.Equal(512, s.MaxPositions);
        Assert.Equal(2, s.TypeVocabSize);
        Assert.Equal(-10000f, s.MaskValue);
        Assert.Equal(NormKind.LayerNorm, s.Norm);
        Assert.Equal(NormPlacement.Post, s.NormPlacement);
        Assert.Equal(ActivationKind.GeluErf, s.Activation);
        Assert.Equal(PositionKind.Absolute, s.Positions);
        Assert.False(s.Causal);
        Assert.True(s.HasPooler);
        Assert.InRange(s.ParameterCount, 22_600_000, 22_800_000);
        Assert.Equal(s.ParameterCount, MiniLm.Value.Weights.Count);
        Assert.Equal(7, MiniLm.Value.HiddenStateNames.Count);
        Assert.Equal("last_hidden_state", MiniLm.Value.HiddenStateNames[^1]);
        Assert.Equal(("input_ids", "attention_mask", "token_type_ids"),
            (MiniLm.Value.InputIdsName, MiniLm.Value.AttentionMaskName, MiniLm.Value.TokenTypeIdsName));
        Assert.Contains("6 layers, d 384, 12 heads", s.Describe());
        Assert.DoesNotContain('\n', MiniLm.Value.ToString());
    }

    [Fact]
    public void MiniLmWeightsComeFromTheRenamedInitializers()
    {
        var m = OnnxModel.Load(ModelCatalog.Resolve("minilm").OnnxPath);
        var l0 = MiniLm.Value.Weights.Layers[0];
        Assert.Equal(m.Initializers["927"].ToFloats(), l0.Wq);
        Assert.Equal(m.Initializers["928"].ToFloats(), l0.Wk);
        Assert.Equal(m.Initializers["931"].ToFloats(), l0.Wv);
        Assert.Equal(m.Initializers["937"].ToFloats(), l0.Wo);
        Assert.Equal(m.Initializers["938"].ToFloats(), l0.W1);
        Assert.Equal(m.Initializers["939"].ToFloats(), l0.W2);
        Assert.Equal(m.Initializers["encoder.layer.0.attention.self.value.bias"].ToFloats(), l0.Bv);
        Assert.Equal(m.Initializers["encoder.layer.5.output.LayerNorm.weight"].ToFloats(), MiniLm.Value.Weights.Layers[5].FfnNormGamma);
    }

    [Fact]
    public void ArcticXsImportsAsBert()
    {
        var imported = BertImporter.Import(ModelCatalog.Resolve("arctic-xs").OnnxPath);
        var s = imported.Spec;
        Assert.Equal(ModelFamily.Bert, s.Family);
        Assert.Equal((6, 384, 12, 32, 1536), (s.Layers, s.Hidden, s.Heads, s.HeadSize, s.FfnSize));
        Assert.Equal((30_522, 512, 2), (s.VocabSize, s.MaxPositions, s.TypeVocabSize));
        Assert.Equal(1e-12f, s.Epsilon);
        Assert.Equal(float.MinValue, s.MaskValue); // a newer export: (1 − mask)·finfo(float32).min
        Assert.False(s.HasPooler);
        Assert.Equal(22_565_376, s.ParameterCount);
    }

    [Fact]
    public void FixtureRoundTripsWithExactlyTheSameWeights()
    {
        var o = new BertFixtureOptions(Layers: 3, Hidden: 24, Heads: 3, FfnSize: 40, VocabSize: 33, MaxPositions: 10, Seed: 11, TypeVocabSize: 3, Epsilon: 1e-5f);
        var path = Path.Combine(_dir, "fixture.onnx");
        var written = FixtureModels.WriteBert(path, o);
        var imported = BertImporter.Import(path);
        Assert.Equal(written.Spec, imported.Spec);
        var w = imported.Weights;
        Assert.Equal(written.Embeddings.Word, w.Embeddings.Word);
        Assert.Equal(written.Embeddings.Position, w.Embeddings.Position);
        Assert.Equal(written.Embeddings.TokenType, w.Embeddings.TokenType);
        Assert.Equal(written.Embeddings.NormGamma, w.Embeddings.NormGamma);
        Assert.Equal(written.Embeddings.NormBeta, w.Embeddings.NormBeta);
        Assert.Equal(3, w.Layers.Count);
        for (int l = 0; l < 3; l++)
        {
            var (a, b) = (written.Layers[l], w.Layers[l]);
            Assert.Equal(a.Wq, b.Wq); Assert.Equal(a.Bq, b.Bq);
            Assert.Equal(a.Wk, b.Wk); Assert.Equal(a.Bk, b.Bk);
            Assert.Equal(a.Wv, b.Wv); Assert.Equal(a.Bv, b.Bv);
            Assert.Equal(a.Wo, b.Wo); Assert.Equal(a.Bo, b.Bo);
            Assert.Equal(a.AttentionNormGamma, b.AttentionNormGamma); Assert.Equal(a.AttentionNormBeta, b.AttentionNormBeta);
            Assert.Equal(a.W1, b.W1); Assert.Equal(a.B1, b.B1);
            Assert.Equal(a.W2, b.W2); Assert.Equal(a.B2, b.B2);
            Assert.Equal(a.FfnNormGamma, b.FfnNormGamma); Assert.Equal(a.FfnNormBeta, b.FfnNormBeta);
        }
        Assert.Equal(written.Pooler!.W, w.Pooler!.W);
        Assert.Equal(written.Pooler.B, w.Pooler.B);
        Assert.Equal(written.Count, imported.Spec.ParameterCount);
    }

    [Fact]
    public void FusedQkvPutsQueryKeyValueSideBySide()
    {
        var l = FixtureModels.RandomBertWeights(new BertFixtureOptions(Hidden: 8, Heads: 2)).Layers[0];
        var w = l.FusedQkvWeight(8);
        var b = l.FusedQkvBias();
        Assert.Equal(8 * 24, w.Length);
        for (int i = 0; i < 8; i++)
            for (int j = 0; j < 8; j++)
            {
                Assert.Equal(l.Wq[i * 8 + j], w[i * 24 + j]);
                Assert.Equal(l.Wk[i * 8 + j], w[i * 24 + 8 + j]);
                Assert.Equal(l.Wv[i * 8 + j], w[i * 24 + 16 + j]);
            }
        Assert.Equal([.. l.Bq, .. l.Bk, .. l.Bv], b);
    }

    [Fact]
    public void ReferenceForwardOfImportedFixtureMatchesOnnxRuntime()
    {
        var o = new BertFixtureOptions(Layers: 2, Hidden: 32, Heads: 4, FfnSize: 64, VocabSize: 50, MaxPositions: 16, Seed: 5);
        var bytes = FixtureModels.BertBytes(o);
        var imported = BertImporter.Import(OnnxModel.Parse(bytes, "fixture.onnx"));
        long[,] ids = { { 2, 9, 13, 21, 44, 3 }, { 2, 30, 7, 3, 0, 0 } };
        long[,] mask = { { 1, 1, 1, 1, 1, 1 }, { 1, 1, 1, 1, 0, 0 } };
        long[,] types = { { 0, 0, 0, 1, 1, 1 }, { 0, 1, 1, 1, 0, 0 } };
        var (ort, _) = OrtRunner.LastHiddenState(bytes, ids, mask, types);
        var reference = BertReference.Forward(imported.Weights, ids, mask, types);
        Assert.InRange(ErrorRelativeToScale(ort, reference), 0, 1e-4);

        // Control: swapping query and key weights of one layer must break the match.
        var l0 = imported.Weights.Layers[0];
        var swapped = new ModelWeights
        {
            Spec = imported.Spec,
            Embeddings = imported.Weights.Embeddings,
            Layers = [new LayerWeights
            {
                Wq = l0.Wk, Bq = l0.Bk, Wk = l0.Wq, Bk = l0.Bq, Wv = l0.Wv, Bv = l0.Bv, Wo = l0.Wo, Bo = l0.Bo,
                AttentionNormGamma = l0.AttentionNormGamma, AttentionNormBeta = l0.AttentionNormBeta,
                W1 = l0.W1, B1 = l0.B1, W2 = l0.W2, B2 = l0.B2, FfnNormGamma = l0.FfnNormGamma, FfnNormBeta = l0.FfnNormBeta,
            }, imported.Weights.Layers[1]],
        };
        Assert.True(ErrorRelativeToScale(ort, BertReference.Forward(swapped, ids, mask, types)) > 1e-2);
    }

    [Theory]
    [InlineData("minilm")]
    [InlineData("arctic-xs")]
    public void ReferenceForwardOfImportedCatalogModelMatchesOnnxRuntime(string name)
    {
        var path = ModelCatalog.Resolve(name).OnnxPath;
        var weights = name == "minilm" ? MiniLm.Value.Weights : BertImporter.Import(path).Weights;
        long[,] ids = { { 101, 7592, 2088, 102 }, { 101, 2088, 102, 0 } };
        long[,] mask = { { 1, 1, 1, 1 }, { 1, 1, 1, 0 } };
        long[,] types = { { 0, 0, 0, 0 }, { 0, 0, 1, 0 } };
        var (ort, dims) = OrtRunner.LastHiddenState(File.ReadAllBytes(path), ids, mask, types);
        Assert.Equal([2, 4, 384], dims);
        var reference = BertReference.Forward(weights, ids, mask, types);
        Assert.InRange(ErrorRelativeToScale(ort, reference), 0, 1e-4);
    }

    /// <summary>max |a − b| / max |b|: fp32 ORT vs the fp64 reference differ by ~1e-6 absolute on MiniLM (scale ≈ 6).</summary>
    private static double ErrorRelativeToScale(float[] actual, double[] expected)
    {
        Assert.Equal(expected.Length, actual.Length);
        double worst = 0, scale = 0;
        for (int i = 0; i < actual.Length; i++)
        {
            Assert.True(float.IsFinite(actual[i]));
            worst = Math.Max(worst, Math.Abs(actual[i] - expected[i]));
            scale = Math.Max(scale, Math.Abs(expected[i]));
        }
        return worst / scale;
    }

    [Theory]
    [InlineData("tanh", ActivationKind.GeluTanh)]
    [InlineData("none", ActivationKind.GeluErf)]
    public void FusedGeluIsReadWithItsApproximation(string approximate, ActivationKind expected)
    {
        // Replace each Erf GELU (x/√2, Erf, +1, ·x, ·0.5) of a fixture by one opset-20 Gelu node: a BERT exported with
        // gelu_new must import as GELU-tanh, not silently as erf.
        var proto = OnnxModel.Parse(FixtureModels.BertBytes(new BertFixtureOptions()), "gelu.onnx").Proto.Clone();
        var nodes = proto.Graph.Node;
        NodeProto Consumer(string value) => nodes.First(n => n.Input.Contains(value));
        foreach (var erf in nodes.Where(n => n.OpType == "Erf").ToList())
        {
            var scale = nodes.First(n => n.Output.Contains(erf.Input[0]));
            var add = Consumer(erf.Output[0]);
            var timesX = Consumer(add.Output[0]);
            var half = Consumer(timesX.Output[0]);
            var gelu = new NodeProto { OpType = "Gelu", Name = "gelu" + nodes.IndexOf(erf) };
            gelu.Input.Add(scale.Input[0]);
            gelu.Output.Add(half.Output[0]);
            gelu.Attribute.Add(new AttributeProto { Name = "approximate", Type = AttributeProto.Types.AttributeType.String, S = Google.Protobuf.ByteString.CopyFromUtf8(approximate) });
            nodes.Insert(nodes.IndexOf(scale), gelu);
            foreach (var n in new[] { scale, erf, add, timesX, half }) nodes.Remove(n);
        }
        proto.OpsetImport.First(o => o.Domain is "" or "ai.onnx").Version = 20;
        var imported = ModelImporter.Import(OnnxModel.FromProto(proto, "gelu.onnx"));
        Assert.Equal(ModelFamily.Bert, imported.Spec.Family);
        Assert.Equal(expected, imported.Spec.Activation);
    }

    [Fact]
    public void LoneMatMulIsAnUnsupportedGraph()
    {
        var path = Path.Combine(_dir, "matmul.onnx");
        FixtureModels.WriteLoneMatMul(path);
        var e = Assert.Throws<SkTuningException>(() => BertImporter.Import(path));
        Assert.StartsWith($"{path}: unsupported graph: ", e.Message);
        Assert.Contains("embedding", e.Message);
        Assert.DoesNotContain('\n', e.Message);
    }

    [Fact]
    public void EmbeddingsWithoutLayersAreAnUnsupportedGraph()
    {
        // Keep only the embedding part of a fixture: cut the graph at the first MatMul.
        var m = OnnxModel.Parse(FixtureModels.BertBytes(new BertFixtureOptions(Layers: 1, Pooler: false)), "cut.onnx");
        var proto = m.Proto.Clone();
        int first = proto.Graph.Node.ToList().FindIndex(n => n.OpType == "MatMul");
        while (proto.Graph.Node.Count > first) proto.Graph.Node.RemoveAt(first);
        var e = Assert.Throws<SkTuningException>(() => BertImporter.Import(OnnxModel.FromProto(proto, "cut.onnx")));
        Assert.StartsWith("cut.onnx: unsupported graph: ", e.Message);
        Assert.Contains("no transformer layer", e.Message);
    }

    [Fact]
    public void SpecDescriptionIsOneLine()
    {
        var spec = FixtureModels.RandomBertWeights(new BertFixtureOptions()).Spec;
        Assert.DoesNotContain('\n', spec.ToString());
        Assert.Contains("bert: 2 layers, d 32, 4 heads × 8, FFN 64", spec.ToString());
    }
}
