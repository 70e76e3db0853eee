using SkTuning.Gpu.Benchmarking;
using SkTuning.Gpu.Engine;
using SkTuning.Gpu.Import;
using SkTuning.Gpu.Kernels.Gpu;
using SkTuning.Gpu.Onnx;
using SkTuning.Gpu.Tests.Support;
using SkTuning.Gpu.Training;

namespace SkTuning.Gpu.Tests.Engine;

/// <summary>LoRA on query and value: gradients against finite differences of the fp64 reference, B = 0 is the frozen model, backends agree.</summary>
public class LoraTests
{
    private static readonly BertFixtureOptions Tiny = WeightGradientTests.Tiny;
    private const int Rank = 4;

    /// <summary>LoRA parameters with A from <see cref="EngineParameters.InitializeLora"/> and, unless <paramref name="zeroB"/>, B random too.</summary>
    private static TrainableParameters LoraParameters(Backend backend, ModelSpec spec, int seed, bool zeroB)
    {
        var p = new TrainableParameters(backend, EngineParameters.LoraTensors(spec, Rank));
        var rng = new Random(seed);
        EngineParameters.InitializeLora(spec, Rank, p, rng);
        if (!zeroB)
            for (int l = 0; l < spec.Layers; l++)
            {
                var (_, qb, _, vb) = EngineParameters.LoraNames(l);
                p.Set(p[qb], TestData.Random(rng, p[qb].Length, 0.3f));
                p.Set(p[vb], TestData.Random(rng, p[vb].Length, 0.3f));
            }
        return p;
    }

    [Theory]
    [InlineData(0f, false, 0, 0)]
    [InlineData(0.25f, true, 2, 3)]
    [InlineData(0.25f, false, 0, 2)]
    public void LoraGradientsMatchFiniteDifferencesOfTheReference(float dropout, bool training, int promptLen, int prefixLen)
    {
        var weights = FixtureModels.RandomBertWeights(Tiny);
        var spec = weights.Spec;
        var rng = new Random(17 + promptLen + prefixLen);
        var batch = TransformerEngineTests.RandomBatch(rng, 3, 5, Tiny.VocabSize);
        var prompt = TestData.Random(rng, promptLen * Tiny.Hidden);
        var prefix = TestData.Random(rng, 2 * Tiny.Layers * prefixLen * Tiny.Hidden);
        var lossWeights = TestData.Random(rng, batch.Batch * (promptLen + batch.SeqLen) * Tiny.Hidden);
        var options = new LoraOptions(Rank, Alpha: 8, Dropout: dropout);
        const ulong seed = 1234;
        using var backend = new CpuBackend();
        using var p = LoraParameters(backend, spec, 5, zeroB: false);
        var g0 = TestData.Random(rng, p.Count, 0.1f);
        backend.Upload(g0, p.Gradients.All);
        using var engine = new TransformerEngine(backend, spec, weights, p, options);
        var got = WeightGradientTests.ForwardBackward(backend, engine, batch, prompt, prefix, lossWeights, p, g0, training, seed);

        var lora = p.Export(p.Values).ToDictionary(kv => kv.Key, kv => TestData.ToDouble(kv.Value));
        var reference = new LoraReference(lora, Rank, options.Scale, training ? dropout : 0f, seed);
        var tensors = EngineReference.Tensors(weights);
        double[] w64 = TestData.ToDouble(lossWeights), prompt64 = TestData.ToDouble(prompt), prefix64 = TestData.ToDouble(prefix);
        var expectedHidden = EngineReference.Forward(spec, tensors, batch, prompt64, prefix64, reference);
        Assert.True(TestData.MaxRelError(got.Hidden, expectedHidden) <= 1e-4, $"forward {TestData.MaxRelError(got.Hidden, expectedHidden):E2}");
        double Loss() => TestData.Dot(w64, EngineReference.Forward(spec, tensors, batch, prompt64, prefix64, reference));
        var failures = new List<string>();
        foreach (var (name, _) in EngineParameters.LoraTensors(spec, Rank))
        {
            var fd = TestData.FiniteDifference(lora[name], Loss);
            double err = TestData.MaxRelError(got.Gradients[name], fd);
            if (!(err <= 1e-3)) failures.Add($"{name}: {err:E2}");
        }
        Assert.True(failures.Count == 0, "LoRA gradient errors: " + string.Join("; ", failures));
        // LoRA's path back to the input: the prompt and prefix gradients include it.
        if (promptLen > 0)
        {
            var fd = TestData.FiniteDifference(prompt64, Loss);
            Assert.True(TestData.MaxRelError(got.DPrompt, fd) <= 1e-3, $"prompt gradient {TestData.MaxRelError(got.DPrompt, fd):E2}");
        }
        if (prefixLen > 0)
        {
            var fd = TestData.FiniteDifference(prefix64, Loss);
            Assert.True(TestData.MaxRelError(got.DPrefix, fd) <= 1e-3, $"prefix gradient {TestData.MaxRelError(got.DPrefix, fd):E2}");
        }
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void WithBZeroTheForwardIsTheFrozenModels(bool training)
    {
        var weights = FixtureModels.RandomBertWeights(Tiny);
        var rng = new Random(3);
        var batch = TransformerEngineTests.RandomBatch(rng, 3, 6, Tiny.VocabSize);
        var prefix = TestData.Random(rng, 2 * Tiny.Layers * 2 * Tiny.Hidden);
        using var backend = new CpuBackend();
        using var k = backend.UploadNew(prefix);
        using var frozen = new TransformerEngine(backend, weights.Spec, weights);
        var expected = backend.ToHost(frozen.Forward(batch, default, k.All));
        using var p = LoraParameters(backend, weights.Spec, 9, zeroB: true);
        using var lora = new TransformerEngine(backend, weights.Spec, weights, p, new LoraOptions(Rank, 16, 0.1f));
        Assert.Equal(expected, backend.ToHost(lora.Forward(batch, default, k.All, training, seed: 77)));
        Assert.False(lora.TrainsWeights);
        Assert.Equal(Rank, lora.Lora!.Rank);
    }

    [Fact]
    public void InitializationIsPeftsKaimingUniformAAndZeroB()
    {
        var weights = FixtureModels.RandomBertWeights(Tiny);
        using var backend = new CpuBackend();
        using var p = new TrainableParameters(backend, EngineParameters.LoraTensors(weights.Spec, Rank));
        EngineParameters.InitializeLora(weights.Spec, Rank, p, new Random(1));
        var values = p.Export(p.Values);
        double bound = 1 / Math.Sqrt(Tiny.Hidden);
        foreach (var (name, v) in values)
        {
            if (name.EndsWith(".b", StringComparison.Ordinal)) Assert.All(v, x => Assert.Equal(0f, x));
            else
            {
                Assert.All(v, x => Assert.InRange(Math.Abs(x), 0, bound));
                Assert.True(v.Max(Math.Abs) > bound / 2);
            }
        }
        using var q = new TrainableParameters(backend, EngineParameters.LoraTensors(weights.Spec, Rank));
        EngineParameters.InitializeLora(weights.Spec, Rank, q, new Random(1));
        Assert.Equal(backend.ToHost(p.Values.All), backend.ToHost(q.Values.All));
    }

    [Fact]
    public void SimulatorGivesTheCpuLoraGradients()
    {
        var weights = FixtureModels.RandomBertWeights(Tiny);
        var rng = new Random(12);
        var batch = TransformerEngineTests.RandomBatch(rng, 2, 5, Tiny.VocabSize);
        var prompt = TestData.Random(rng, 2 * Tiny.Hidden);
        var lossWeights = TestData.Random(rng, batch.Batch * (2 + batch.SeqLen) * Tiny.Hidden);
        var options = new LoraOptions(Rank, 8, 0.2f);
        WeightGradientTests.Result Run(Backend backend)
        {
            using var p = LoraParameters(backend, weights.Spec, 21, zeroB: false);
            var g0 = new float[p.Count];
            using var engine = new TransformerEngine(backend, weights.Spec, weights, p, options);
            return WeightGradientTests.ForwardBackward(backend, engine, batch, prompt, [], lossWeights, p, g0, training: true, seed: 5);
        }
        using var cpu = new CpuBackend();
        var expected = Run(cpu);
        using var gpu = new GpuBackend(GpuDevice.CreateCpuSimulator());
        var actual = Run(gpu);
        Assert.True(TestData.MaxRelError(actual.Hidden, TestData.ToDouble(expected.Hidden)) <= 1e-4);
        Assert.True(TestData.MaxRelError(actual.DPrompt, TestData.ToDouble(expected.DPrompt)) <= 1e-4);
        foreach (var (name, g) in expected.Gradients)
        {
            double err = DeviceCheck.Normwise(actual.Gradients[name], g), elementwise = TestData.MaxRelError(actual.Gradients[name], TestData.ToDouble(g));
            Assert.True(err <= 1e-4 && elementwise <= 1e-3, $"{name}: simulator vs CPU {err:E2} normwise, {elementwise:E2} element-wise");
        }
    }

    [Theory]
    [InlineData(1)]
    [InlineData(8)]
    public void LoraParameterCountIsTwoLayersTimesTwoRankTimesD(int rank)
    {
        var spec = FixtureModels.RandomBertWeights(Tiny).Spec;
        long registered = EngineParameters.LoraTensors(spec, rank).Sum(t => (long)t.Shape.Aggregate(1, (a, b) => a * b));
        Assert.Equal(2L * Tiny.Layers * 2 * rank * Tiny.Hidden, EngineParameters.LoraParameterCount(spec, rank));
        Assert.Equal(registered, EngineParameters.LoraParameterCount(spec, rank));
    }

    [Fact]
    public void MissingTensorsAndBadOptionsAreNamed()
    {
        var weights = FixtureModels.RandomBertWeights(Tiny);
        using var backend = new CpuBackend();
        using var p = new TrainableParameters(backend, EngineParameters.LoraTensors(weights.Spec, Rank).Where(t => t.Name != "layer1.lora.value.b"));
        Assert.Contains("layer1.lora.value.b",
            Assert.Throws<SkTuningException>(() => new TransformerEngine(backend, weights.Spec, weights, p, new LoraOptions(Rank, 8, 0))).Message);
        Assert.Contains("[16,4]",
            Assert.Throws<SkTuningException>(() => new TransformerEngine(backend, weights.Spec, weights, p, new LoraOptions(2, 8, 0))).Message);
        Assert.Contains("dropout", Assert.Throws<ArgumentException>(() => new TransformerEngine(backend, weights.Spec, weights, p, new LoraOptions(Rank, 8, 1f))).Message);
        Assert.Contains("rank", Assert.Throws<ArgumentException>(() => EngineParameters.LoraTensors(weights.Spec, 0).ToList()).Message);
    }
}
