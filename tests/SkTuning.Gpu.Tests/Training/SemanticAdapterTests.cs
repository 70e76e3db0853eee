using SkTuning.Gpu.Engine;
using SkTuning.Gpu.Kernels;
using SkTuning.Gpu.Onnx;
using SkTuning.Gpu.Tests.Support;
using SkTuning.Gpu.Training;

namespace SkTuning.Gpu.Tests.Training;

public class SemanticAdapterTests
{
    private static readonly BertFixtureOptions Tiny = new(Layers: 2, Hidden: 16, Heads: 2, FfnSize: 32, VocabSize: 40, MaxPositions: 12, Seed: 2);

    [Fact]
    public void ModelInitGivesEachLayerTheTextsOwnKeysAndValues()
    {
        var weights = FixtureModels.RandomBertWeights(Tiny);
        var rng = new Random(1);
        int m = 4, d = Tiny.Hidden;
        var sources = Enumerable.Range(0, Tiny.Layers).Select(_ => TestData.Random(rng, m * d)).ToList();
        using var backend = new CpuBackend();
        using var adapter = new SemanticAdapter(backend, new AdapterShape(AdapterKind.Prefix, AdapterMode.PerLayer, m, d, Tiny.Layers), sources,
            dropout: 0.1f, AdapterInit.Model, weights);
        using var p = new TrainableParameters(backend, adapter.Tensors());
        adapter.Initialize(p, new Random(0));
        var prefix = backend.ToHost(adapter.Forward(p, training: false, seed: 0));
        for (int l = 0; l < Tiny.Layers; l++)
        {
            var layer = weights.Layers[l];
            foreach (var (kv, w, b) in new[] { (0, layer.Wk, layer.Bk), (1, layer.Wv, layer.Bv) })
            {
                var expected = new double[m * d];
                Gemm.NNReference(m, d, d, TestData.ToDouble(sources[l]), TestData.ToDouble(w), expected, TestData.ToDouble(b));
                var got = prefix.AsSpan((2 * l + kv) * m * d, m * d).ToArray();
                Assert.True(TestData.MaxRelError(got, expected) <= 1e-4, $"layer {l} {(kv == 0 ? "K" : "V")}: {TestData.MaxRelError(got, expected):E2}");
            }
        }
    }

    [Fact]
    public void ModelInitOfAPromptIsTheTextsOwnStates()
    {
        var rng = new Random(2);
        int m = 3, d = 8;
        var states = TestData.Random(rng, m * d);
        using var backend = new CpuBackend();
        using var adapter = new SemanticAdapter(backend, new AdapterShape(AdapterKind.Prompt, AdapterMode.Token, m, d, 2), [states], 0.1f, AdapterInit.Model);
        using var p = new TrainableParameters(backend, adapter.Tensors());
        adapter.Initialize(p, new Random(0));
        Assert.Equal(states, backend.ToHost(adapter.Forward(p, training: false, seed: 0)));
    }

    [Fact]
    public void DropoutInTrainingZeroesAboutOneInTenAndScalesTheRest()
    {
        var rng = new Random(3);
        int m = 10, d = 64;
        using var backend = new CpuBackend();
        using var adapter = new SemanticAdapter(backend, new AdapterShape(AdapterKind.Prompt, AdapterMode.Token, m, d, 2), [TestData.Random(rng, m * d)], 0.1f, AdapterInit.Model);
        using var p = new TrainableParameters(backend, adapter.Tensors());
        adapter.Initialize(p, new Random(0));
        var clean = backend.ToHost(adapter.Forward(p, training: false, seed: 5));
        var dropped = backend.ToHost(adapter.Forward(p, training: true, seed: 5));
        double zeroFraction = dropped.Count(v => v == 0) / (double)dropped.Length;
        Assert.InRange(zeroFraction, 0.05, 0.15);
        for (int i = 0; i < clean.Length; i++)
            if (dropped[i] != 0) Assert.Equal(clean[i] / 0.9f, dropped[i], 5);
    }
}
