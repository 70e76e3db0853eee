using SkTuning.Gpu.Data;
using SkTuning.Gpu.Engine;
using SkTuning.Gpu.Onnx;
using SkTuning.Gpu.Tests.Engine;
using SkTuning.Gpu.Tests.Support;
using SkTuning.Gpu.Training;

namespace SkTuning.Gpu.Tests.Training;

/// <summary>
/// End to end on a tiny fixture model: every trainable tensor's gradient (adapter and head), back through the
/// whole frozen model, against central finite differences of the fp64 reference.
/// </summary>
public class SkTuningModelGradientTests
{
    private static readonly BertFixtureOptions Tiny = new(Layers: 2, Hidden: 16, Heads: 2, FfnSize: 32, VocabSize: 40, MaxPositions: 12, Seed: 9);

    [Theory]
    [InlineData(AdapterKind.Prefix, AdapterMode.Token, TaskKind.Classification)]
    [InlineData(AdapterKind.Prefix, AdapterMode.Pooled, TaskKind.Classification)]
    [InlineData(AdapterKind.Prefix, AdapterMode.PerLayer, TaskKind.Regression)]
    [InlineData(AdapterKind.Prompt, AdapterMode.Token, TaskKind.Classification)]
    [InlineData(AdapterKind.Prompt, AdapterMode.Pooled, TaskKind.TokenClassification)]
    [InlineData(AdapterKind.Prefix, AdapterMode.Token, TaskKind.TokenClassification)]
    public void GradientsOfEveryTrainableTensorMatchFiniteDifferences(AdapterKind kind, AdapterMode mode, TaskKind task)
    {
        var weights = FixtureModels.RandomBertWeights(Tiny);
        var rng = new Random((int)kind * 10 + (int)mode * 3 + (int)task);
        int m = 3, d = Tiny.Hidden, classes = 3;
        var batch = TransformerEngineTests.RandomBatch(rng, 3, 5, Tiny.VocabSize);
        var shape = new AdapterShape(kind, mode, m, d, Tiny.Layers);
        var sources = Enumerable.Range(0, mode == AdapterMode.PerLayer ? Tiny.Layers : 1).Select(_ => TestData.Random(rng, m * d)).ToList();
        var targets = task switch
        {
            TaskKind.Regression => new HeadTargets(Values: [0.5f, -1.2f, 2f]),
            TaskKind.TokenClassification => new HeadTargets(TokenLabels: batch.Mask.Select((mk, i) => mk == 0 || i % 4 == 0 ? -100 : rng.Next(classes)).ToArray()),
            _ => new HeadTargets(Classes: [0, 2, 1]),
        };

        using var backend = new CpuBackend();
        var adapter = new SemanticAdapter(backend, shape, sources, dropout: 0f);
        var head = new TaskHead(backend, task, Pooling.Mean, d, classes, dropout: 0f);
        using var model = new SkTuningModel(backend, weights.Spec, weights, adapter, head);
        model.Initialize(3);
        // Larger random head/bias values than the init so every gradient is well away from zero.
        foreach (var info in model.Parameters.Infos) model.Parameters.Set(info, TestData.Random(rng, info.Length, 0.5f));
        float loss = model.ForwardBackward(batch, targets, seed: 1).Read();
        var grads = model.Parameters.Export(model.Parameters.Gradients);
        var values = model.Parameters.Export(model.Parameters.Values).ToDictionary(kv => kv.Key, kv => TestData.ToDouble(kv.Value));

        var sources64 = sources.Select(TestData.ToDouble).ToList();
        double Loss() => SkModelReference.Loss(weights, batch, shape, sources64, task, classes, targets, values);
        Assert.True(Math.Abs(Loss() - loss) <= 1e-4 * Math.Max(1, Math.Abs(Loss())), $"loss {loss} vs reference {Loss()}");
        foreach (var info in model.Parameters.Infos)
            TestData.AssertSampledGradient($"{info.Name}", values[info.Name], grads[info.Name], Loss, rng);
    }
}
