using SkTuning.Gpu.Engine;
using SkTuning.Gpu.Import;
using SkTuning.Gpu.Onnx;
using SkTuning.Gpu.Tests.Support;

namespace SkTuning.Gpu.Tests.Engine;

public class TransformerEngineTests
{
    private static readonly BertFixtureOptions Tiny = new(Layers: 2, Hidden: 16, Heads: 2, FfnSize: 32, VocabSize: 40, MaxPositions: 12, Seed: 7);

    internal static TokenBatch RandomBatch(Random rng, int batch, int seqLen, int vocab)
    {
        var ids = new int[batch * seqLen]; var types = new int[batch * seqLen]; var mask = new float[batch * seqLen];
        for (int b = 0; b < batch; b++)
        {
            int len = b == 0 ? seqLen : rng.Next(2, seqLen + 1); // the first example fills the batch, others pad
            for (int t = 0; t < seqLen; t++)
            {
                ids[b * seqLen + t] = t < len ? rng.Next(1, vocab) : 0;
                types[b * seqLen + t] = t < len && t > len / 2 ? 1 : 0;
                mask[b * seqLen + t] = t < len ? 1 : 0;
            }
        }
        return new TokenBatch(batch, seqLen, ids, types, mask);
    }

    private static float[] Download(Backend backend, DeviceView<float> v)
    {
        var host = new float[v.Length];
        backend.Download(v, host);
        return host;
    }

    private static DeviceArray<float> Upload(Backend backend, float[] host)
    {
        var a = backend.Allocate(host.Length);
        backend.Upload(host, a.All);
        return a;
    }

    [Theory]
    [InlineData(0, 0)]
    [InlineData(3, 0)]
    [InlineData(0, 4)]
    [InlineData(2, 3)]
    public void ForwardMatchesTheFp64Reference(int promptLen, int prefixLen)
    {
        var weights = FixtureModels.RandomBertWeights(Tiny);
        var rng = new Random(11 + promptLen * 7 + prefixLen);
        var batch = RandomBatch(rng, 3, 6, Tiny.VocabSize);
        var prompt = TestData.Random(rng, promptLen * Tiny.Hidden);
        var prefix = TestData.Random(rng, 2 * Tiny.Layers * prefixLen * Tiny.Hidden);
        using var backend = new CpuBackend();
        using var engine = new TransformerEngine(backend, weights.Spec, weights);
        using var p = Upload(backend, prompt);
        using var k = Upload(backend, prefix);
        var hidden = Download(backend, engine.Forward(batch, p.All, k.All));
        var expected = EngineReference.Forward(weights, batch, TestData.ToDouble(prompt), TestData.ToDouble(prefix));
        Assert.Equal(expected.Length, hidden.Length);
        Assert.True(TestData.MaxRelError(hidden, expected) <= 1e-4, $"max relative error {TestData.MaxRelError(hidden, expected):E2}");
    }

    [Theory]
    [InlineData(3, 0)]
    [InlineData(0, 4)]
    [InlineData(2, 3)]
    public void PromptAndPrefixGradientsMatchFiniteDifferencesOfTheReference(int promptLen, int prefixLen)
    {
        var weights = FixtureModels.RandomBertWeights(Tiny);
        var rng = new Random(5 + promptLen * 3 + prefixLen);
        var batch = RandomBatch(rng, 3, 5, Tiny.VocabSize);
        var prompt = TestData.Random(rng, promptLen * Tiny.Hidden);
        var prefix = TestData.Random(rng, 2 * Tiny.Layers * prefixLen * Tiny.Hidden);
        int rows = batch.Batch * (promptLen + batch.SeqLen);
        var lossWeights = TestData.Random(rng, rows * Tiny.Hidden);
        var w64 = TestData.ToDouble(lossWeights);

        using var backend = new CpuBackend();
        using var engine = new TransformerEngine(backend, weights.Spec, weights);
        using var p = Upload(backend, prompt);
        using var k = Upload(backend, prefix);
        using var dHidden = Upload(backend, lossWeights); // d(Σ w∘hidden)/d(hidden) = w
        var g0Prompt = TestData.Random(rng, prompt.Length, 0.1f);
        var g0Prefix = TestData.Random(rng, prefix.Length, 0.1f);
        using var dp = Upload(backend, g0Prompt);
        using var dk = Upload(backend, g0Prefix);
        engine.Forward(batch, p.All, k.All);
        engine.Backward(dHidden.All, dp.All, dk.All);
        var gotPrompt = Download(backend, dp.All).Select((g, i) => g - g0Prompt[i]).ToArray();
        var gotPrefix = Download(backend, dk.All).Select((g, i) => g - g0Prefix[i]).ToArray();

        var prompt64 = TestData.ToDouble(prompt);
        var prefix64 = TestData.ToDouble(prefix);
        double Loss() => TestData.Dot(w64, EngineReference.Forward(weights, batch, prompt64, prefix64));
        var fdPrompt = TestData.FiniteDifference(prompt64, Loss);
        var fdPrefix = TestData.FiniteDifference(prefix64, Loss);
        // The fp32 engine (GEMMs and attention accumulate in fp32) against FD of the fp64 reference: measured ≤ 1.1e-4.
        const double tolerance = 3e-4;
        if (promptLen > 0)
            Assert.True(TestData.MaxRelError(gotPrompt, fdPrompt) <= tolerance, $"prompt gradient error {TestData.MaxRelError(gotPrompt, fdPrompt):E2}");
        if (prefixLen > 0)
            Assert.True(TestData.MaxRelError(gotPrefix, fdPrefix) <= tolerance, $"prefix gradient error {TestData.MaxRelError(gotPrefix, fdPrefix):E2}");
    }

    [Fact]
    public void SizesThatDoNotFitTheModelAreNamed()
    {
        var weights = FixtureModels.RandomBertWeights(Tiny);
        using var backend = new CpuBackend();
        using var engine = new TransformerEngine(backend, weights.Spec, weights);
        var tooLong = RandomBatch(new Random(1), 2, Tiny.MaxPositions + 1, Tiny.VocabSize);
        Assert.Contains("13 tokens", Assert.Throws<ArgumentException>(() => engine.Forward(tooLong)).Message);
        var batch = RandomBatch(new Random(1), 2, 4, Tiny.VocabSize);
        using var badPrefix = backend.Allocate(2 * Tiny.Layers * Tiny.Hidden * 3 + 5);
        Assert.Contains("2·L·kvDim", Assert.Throws<ArgumentException>(() => engine.Forward(batch, default, badPrefix.All)).Message);
        using var badPrompt = backend.Allocate(Tiny.Hidden + 1);
        Assert.Contains("d = 16", Assert.Throws<ArgumentException>(() => engine.Forward(batch, badPrompt.All)).Message);
        Assert.Contains("B·T", Assert.Throws<ArgumentException>(() => new TokenBatch(2, 4, new int[8], new int[7], new float[8])).Message);
    }
}
