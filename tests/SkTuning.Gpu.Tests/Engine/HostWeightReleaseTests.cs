using SkTuning.Gpu.Engine;
using SkTuning.Gpu.Import;
using SkTuning.Gpu.Tests.Support;

namespace SkTuning.Gpu.Tests.Engine;

/// <summary>
/// An engine that releases the host weights as it uploads them (<c>releaseHostWeights</c>, as <c>sktune bench</c> loads the
/// 1B model) computes bit for bit what an engine over kept weights computes, in fp32 and bf16; the released
/// <see cref="ModelWeights"/> is empty and refuses a second use with a one-line error.
/// </summary>
public class HostWeightReleaseTests
{
    private static float[] Forward(WeightPrecision precision, ModelWeights weights, bool release)
    {
        using var backend = new CpuBackend(precision);
        var spec = weights.Spec;
        var rng = new Random(4);
        var batch = DecoderModels.Batch(rng, [5, 3], spec.VocabSize, left: true);
        var prefix = TestData.Random(rng, 2 * spec.Layers * 2 * spec.KvDim);
        using var engine = new TransformerEngine(backend, spec, weights, release);
        using var k = backend.UploadNew(prefix);
        return backend.ToHost(engine.Forward(batch, default, k.All));
    }

    [Theory]
    [InlineData(WeightPrecision.Fp32)]
    [InlineData(WeightPrecision.Bf16)]
    public void ReleasingTheHostWeightsChangesNoOutput(WeightPrecision precision)
    {
        var kept = Forward(precision, DecoderModels.Random(DecoderOptions.Llama()), release: false);
        var weights = DecoderModels.Random(DecoderOptions.Llama());
        long before = weights.Count;
        var released = Forward(precision, weights, release: true);
        Assert.Equal(kept, released);
        Assert.True(weights.Released);
        Assert.True(weights.Count < before / 10, $"{weights.Count} of {before} floats still held");
        Assert.All(weights.Layers, l => Assert.Empty(l.W1));
        Assert.Empty(weights.Embeddings.Word);
        var ex = Assert.Throws<SkTuningException>(() => EngineParameters.PretrainedTensors(weights));
        Assert.Contains("released", ex.Message);
    }
}
