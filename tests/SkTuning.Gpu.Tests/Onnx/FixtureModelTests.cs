using SkTuning.Gpu.Onnx;
using SkTuning.Gpu.Tests.Support;

namespace SkTuning.Gpu.Tests.Onnx;

public class FixtureModelTests
{
    [Fact]
    public void FixtureRunsInOnnxRuntimeAndMaskedTokensDoNotLeak()
    {
        var o = new BertFixtureOptions(Layers: 2, Hidden: 32, Heads: 4, FfnSize: 48, VocabSize: 40, MaxPositions: 12, Seed: 7);
        var bytes = FixtureModels.BertBytes(o);
        long[,] ids = { { 2, 9, 13, 21, 3 }, { 2, 30, 3, 0, 0 } };
        long[,] mask = { { 1, 1, 1, 1, 1 }, { 1, 1, 1, 0, 0 } };
        long[,] types = { { 0, 0, 1, 1, 1 }, { 0, 0, 0, 0, 0 } };
        var outputs = OrtRunner.Run(bytes, ids, mask, types);
        var (h, dims) = outputs["last_hidden_state"];
        Assert.Equal([2, 5, 32], dims);
        Assert.All(h, x => Assert.True(float.IsFinite(x)));
        Assert.Equal([2, 32], outputs["pooler_output"].Dims);
        // LayerNorm output: each row has mean ≈ mean(β)-ish scale, not constant; rows differ.
        Assert.NotEqual(h[..32], h[32..64]);

        // Change the masked-out tokens (id and type): the real tokens' states must not move.
        long[,] ids2 = { { 2, 9, 13, 21, 3 }, { 2, 30, 3, 17, 5 } };
        long[,] types2 = { { 0, 0, 1, 1, 1 }, { 0, 0, 0, 1, 1 } };
        var (h2, _) = OrtRunner.LastHiddenState(bytes, ids2, mask, types2);
        for (int i = 0; i < 5 * 32; i++) Assert.Equal(h[i], h2[i]);
        for (int i = 5 * 32; i < 5 * 32 + 3 * 32; i++) Assert.Equal(h[i], h2[i], 1e-6f);
        Assert.NotEqual(h[(5 + 3) * 32], h2[(5 + 3) * 32]);

        // Changing a real token does change the others.
        long[,] ids3 = { { 2, 9, 14, 21, 3 }, { 2, 30, 3, 0, 0 } };
        var (h3, _) = OrtRunner.LastHiddenState(bytes, ids3, mask, types);
        Assert.NotEqual(h[0], h3[0]);
    }

    [Fact]
    public void FixtureIsDeterministicInTheSeed()
    {
        Assert.Equal(FixtureModels.BertBytes(new BertFixtureOptions(Seed: 3)), FixtureModels.BertBytes(new BertFixtureOptions(Seed: 3)));
        Assert.NotEqual(FixtureModels.BertBytes(new BertFixtureOptions(Seed: 3)), FixtureModels.BertBytes(new BertFixtureOptions(Seed: 4)));
    }

    [Fact]
    public void FixtureHasTheTorchExportStructure()
    {
        var m = OnnxModel.Parse(FixtureModels.BertBytes(new BertFixtureOptions(Layers: 2)), "fixture");
        Assert.Equal(13, m.Opset);
        var matMulWeights = m.Nodes.Where(n => n.OpType == "MatMul" && m.Initializers.ContainsKey(n.Inputs[1])).Select(n => n.Inputs[1]).ToList();
        Assert.Equal(Enumerable.Range(100, 12).Select(i => i.ToString()), matMulWeights);
        Assert.Contains(m.Nodes, n => n.OpType == "Erf");
        Assert.Contains(m.Nodes, n => n.OpType == "Unsqueeze" && n.Inputs.Count == 2);
        Assert.Equal(2, m.Nodes.Count(n => n.OpType == "Softmax"));
        Assert.Equal(5 * 2, m.Nodes.Count(n => n.OpType == "ReduceMean"));
        Assert.True(m.Initializers.ContainsKey("encoder.layer.1.attention.self.query.bias"));
    }
}
