using SkTuning.Gpu.Benchmarking;
using SkTuning.Gpu.Engine;
using SkTuning.Gpu.Import;
using SkTuning.Gpu.Kernels.Gpu;
using SkTuning.Gpu.Onnx;
using SkTuning.Gpu.Tests.Support;
using SkTuning.Gpu.Training;

namespace SkTuning.Gpu.Tests.Engine;

/// <summary>Full fine-tuning: every weight's gradient against finite differences of the fp64 reference, and the backends against each other.</summary>
public class WeightGradientTests
{
    internal static readonly BertFixtureOptions Tiny = new(Layers: 2, Hidden: 16, Heads: 2, FfnSize: 32, VocabSize: 40, MaxPositions: 12, Seed: 7);

    internal sealed record Result(float[] Hidden, Dictionary<string, float[]> Gradients, float[] DPrompt, float[] DPrefix);

    /// <summary>
    /// One forward/backward in full fine-tuning mode with loss Σ w∘hidden; gradients start at random values g0 and
    /// are returned minus g0 (so accumulation is checked too).
    /// </summary>
    internal static Result RunFull(Backend backend, ModelWeights weights, TokenBatch batch, float[] prompt, float[] prefix, float[] lossWeights, int seed)
    {
        using var p = new TrainableParameters(backend, EngineParameters.WeightTensors(weights.Spec));
        EngineParameters.CopyPretrained(weights, p);
        var g0 = TestData.Random(new Random(seed), p.Count, 0.1f);
        backend.Upload(g0, p.Gradients.All);
        using var engine = new TransformerEngine(backend, weights.Spec, p);
        Assert.True(engine.TrainsWeights);
        return ForwardBackward(backend, engine, batch, prompt, prefix, lossWeights, p, g0, training: false, seed: 0);
    }

    internal static Result ForwardBackward(Backend backend, TransformerEngine engine, TokenBatch batch, float[] prompt, float[] prefix,
        float[] lossWeights, TrainableParameters p, float[] g0, bool training, ulong seed)
    {
        using var pa = backend.UploadNew(prompt);
        using var ka = backend.UploadNew(prefix);
        using var dh = backend.UploadNew(lossWeights);
        using var dp = backend.Allocate(prompt.Length);
        using var dk = backend.Allocate(prefix.Length);
        var hidden = backend.ToHost(engine.Forward(batch, pa.Slice(0, prompt.Length), ka.Slice(0, prefix.Length), training, seed));
        engine.Backward(dh.All, dp.Slice(0, prompt.Length), dk.Slice(0, prefix.Length));
        var all = backend.ToHost(p.Gradients.All);
        var grads = p.Infos.ToDictionary(i => i.Name, i => all.AsSpan(i.Offset, i.Length).ToArray().Select((g, k) => g - g0[i.Offset + k]).ToArray());
        return new Result(hidden, grads, backend.ToHost(dp.Slice(0, prompt.Length)), backend.ToHost(dk.Slice(0, prefix.Length)));
    }

    /// <summary>~<paramref name="count"/> indices of a tensor; for the embedding tables, mostly entries of rows the batch uses (plus one unused word row).</summary>
    internal static int[] SampleIndices(Random rng, string name, int length, ModelSpec spec, TokenBatch batch, int count = 10)
    {
        int d = spec.Hidden;
        int[] rows = name switch
        {
            EngineParameters.WordEmbeddings => batch.Ids.Distinct().ToArray(),
            EngineParameters.PositionEmbeddings => Enumerable.Range(0, batch.SeqLen).ToArray(),
            EngineParameters.TokenTypeEmbeddings => batch.Types.Distinct().ToArray(),
            _ => [],
        };
        var result = new HashSet<int>();
        if (rows.Length > 0)
        {
            foreach (var r in rows.Take(3)) result.Add(r * d + rng.Next(d)); // always the first used rows
            while (result.Count < count) result.Add(rows[rng.Next(rows.Length)] * d + rng.Next(d));
            if (name == EngineParameters.WordEmbeddings)
            {
                int unused = Enumerable.Range(0, spec.VocabSize).First(v => !batch.Ids.Contains(v));
                result.Add(unused * d + rng.Next(d)); // gets no gradient, in the engine and the reference
            }
        }
        else
        {
            while (result.Count < Math.Min(count, length)) result.Add(rng.Next(length));
        }
        return result.Order().ToArray();
    }

    [Theory]
    [InlineData(0, 0)]
    [InlineData(2, 3)]
    public void EveryWeightGradientMatchesFiniteDifferencesOfTheReference(int promptLen, int prefixLen)
    {
        var weights = FixtureModels.RandomBertWeights(Tiny);
        var spec = weights.Spec;
        var rng = new Random(31 + promptLen * 5 + prefixLen);
        var batch = TransformerEngineTests.RandomBatch(rng, 3, 5, Tiny.VocabSize);
        var prompt = TestData.Random(rng, promptLen * Tiny.Hidden);
        var prefix = TestData.Random(rng, 2 * Tiny.Layers * prefixLen * Tiny.Hidden);
        var lossWeights = TestData.Random(rng, batch.Batch * (promptLen + batch.SeqLen) * Tiny.Hidden);
        using var backend = new CpuBackend();
        var got = RunFull(backend, weights, batch, prompt, prefix, lossWeights, seed: 3);

        var tensors = EngineReference.Tensors(weights);
        double[] w64 = TestData.ToDouble(lossWeights), prompt64 = TestData.ToDouble(prompt), prefix64 = TestData.ToDouble(prefix);
        double Loss() => TestData.Dot(w64, EngineReference.Forward(spec, tensors, batch, prompt64, prefix64));
        var failures = new List<string>();
        foreach (var (name, shape) in EngineParameters.WeightTensors(spec))
        {
            var values = tensors[name];
            var idx = SampleIndices(rng, name, values.Length, spec, batch);
            var fd = idx.Select(i => TestData.CentralDifference(values, i, Loss)).ToArray();
            var engine = idx.Select(i => got.Gradients[name][i]).ToArray();
            Assert.Contains(fd, g => g != 0); // the sample reaches the loss
            double err = TestData.MaxRelError(engine, fd);
            if (!(err <= 1e-3)) failures.Add($"{name}: {err:E2}");
        }
        Assert.True(failures.Count == 0, "gradient errors: " + string.Join("; ", failures));
        // The activation gradients are unchanged by weight training.
        if (promptLen > 0)
        {
            var fdPrompt = TestData.FiniteDifference(prompt64, Loss);
            Assert.True(TestData.MaxRelError(got.DPrompt, fdPrompt) <= 1e-3, $"prompt gradient {TestData.MaxRelError(got.DPrompt, fdPrompt):E2}");
        }
    }

    [Fact]
    public void FullModeForwardEqualsTheFrozenForwardAndReadsTheCurrentValues()
    {
        var weights = FixtureModels.RandomBertWeights(Tiny);
        var rng = new Random(2);
        var batch = TransformerEngineTests.RandomBatch(rng, 2, 6, Tiny.VocabSize);
        using var backend = new CpuBackend();
        using var frozen = new TransformerEngine(backend, weights.Spec, weights);
        var expected = backend.ToHost(frozen.Forward(batch));
        Assert.False(frozen.TrainsWeights);
        using var p = new TrainableParameters(backend, EngineParameters.WeightTensors(weights.Spec));
        EngineParameters.CopyPretrained(weights, p);
        using var full = new TransformerEngine(backend, weights.Spec, p);
        Assert.Equal(expected, backend.ToHost(full.Forward(batch)));
        // An update of the parameter buffer (as AdamW does) is what the next forward uses.
        var info = p[EngineParameters.LayerNames(1).FfnNormBeta];
        p.Set(info, Enumerable.Repeat(0.5f, info.Length).ToArray());
        Assert.NotEqual(expected, backend.ToHost(full.Forward(batch)));
    }

    [Fact]
    public void SimulatorGivesTheCpuWeightGradients()
    {
        var weights = FixtureModels.RandomBertWeights(Tiny);
        var rng = new Random(8);
        var batch = TransformerEngineTests.RandomBatch(rng, 2, 5, Tiny.VocabSize);
        var prompt = TestData.Random(rng, 2 * Tiny.Hidden);
        var prefix = TestData.Random(rng, 2 * Tiny.Layers * 3 * Tiny.Hidden);
        var lossWeights = TestData.Random(rng, batch.Batch * (2 + batch.SeqLen) * Tiny.Hidden);
        using var cpu = new CpuBackend();
        var expected = RunFull(cpu, weights, batch, prompt, prefix, lossWeights, seed: 4);
        using var gpu = new GpuBackend(GpuDevice.CreateCpuSimulator());
        var actual = RunFull(gpu, weights, batch, prompt, prefix, lossWeights, seed: 4);
        var failures = new List<string>();
        foreach (var (name, g) in expected.Gradients)
        {
            double err = DeviceCheck.Normwise(actual.Gradients[name], g), elementwise = TestData.MaxRelError(actual.Gradients[name], TestData.ToDouble(g));
            if (!(err <= 1e-4 && elementwise <= 1e-3)) failures.Add($"{name}: {err:E2} normwise, {elementwise:E2} element-wise");
        }
        Assert.True(failures.Count == 0, "simulator vs CPU: " + string.Join("; ", failures));
        Assert.True(TestData.MaxRelError(actual.DPrefix, TestData.ToDouble(expected.DPrefix)) <= 1e-4);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void FullParameterCountIsTheModelWithoutThePoolerAndMatchesTheTensors(bool pooler)
    {
        var weights = FixtureModels.RandomBertWeights(Tiny with { Pooler = pooler });
        var spec = weights.Spec;
        long registered = EngineParameters.WeightTensors(spec).Sum(t => (long)t.Shape.Aggregate(1, (a, b) => a * b));
        Assert.Equal(registered, EngineParameters.FullParameterCount(spec));
        Assert.Equal(spec.ParameterCount - (pooler ? Tiny.Hidden * Tiny.Hidden + Tiny.Hidden : 0), registered);
        using var backend = new CpuBackend();
        using var p = new TrainableParameters(backend, EngineParameters.WeightTensors(spec));
        Assert.Equal(registered, p.Count);
        Assert.Equal(spec.Layers * 12 + 5, p.Infos.Count);
    }

    [Fact]
    public void MissingOrMisshapedTensorsAreNamed()
    {
        var weights = FixtureModels.RandomBertWeights(Tiny);
        using var backend = new CpuBackend();
        var tensors = EngineParameters.WeightTensors(weights.Spec).ToList();
        using (var p = new TrainableParameters(backend, tensors.Where(t => t.Name != "layer1.ffn.up.bias")))
            Assert.Contains("layer1.ffn.up.bias", Assert.Throws<SkTuningException>(() => new TransformerEngine(backend, weights.Spec, p)).Message);
        using (var p = new TrainableParameters(backend, tensors.Select(t => t.Name == "layer0.qkv.weight" ? (t.Name, new[] { 16, 16 }) : t)))
            Assert.Contains("[16,48]", Assert.Throws<SkTuningException>(() => new TransformerEngine(backend, weights.Spec, p)).Message);
    }
}
