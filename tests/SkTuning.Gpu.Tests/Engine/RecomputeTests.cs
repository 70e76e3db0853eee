using SkTuning.Gpu.Engine;
using SkTuning.Gpu.Import;
using SkTuning.Gpu.Kernels.Gpu;
using SkTuning.Gpu.Onnx;
using SkTuning.Gpu.Tests.Support;

namespace SkTuning.Gpu.Tests.Engine;

/// <summary>
/// Activation recomputation (<see cref="TransformerEngine.Recompute"/>): the same hidden states and bit-identical prompt
/// and prefix gradients as the step that keeps every layer's activations — post-norm (BERT), pre-norm (LLaMA) and parallel
/// (Falcon) blocks, on the CPU backend and on the ILGPU simulator (the engine is written once over the backend) — with
/// less activation memory.
/// </summary>
public class RecomputeTests
{
    private sealed record Run(float[] Hidden, float[] DPrompt, float[] DPrefix, long ActivationBytes);

    private static ModelWeights Model(string name) => name switch
    {
        "bert" => FixtureModels.RandomBertWeights(new BertFixtureOptions(Layers: 3, Hidden: 16, Heads: 2, FfnSize: 32, VocabSize: 40, MaxPositions: 16, Seed: 5)),
        "llama" => DecoderModels.Random(DecoderOptions.Llama(seed: 6) with { Layers = 3 }),
        _ => DecoderModels.Random(DecoderOptions.Falcon(newArchitecture: true, seed: 7) with { Layers = 3 }),
    };

    private static Run ForwardBackward(Backend backend, ModelWeights weights, bool recompute)
    {
        var spec = weights.Spec;
        var rng = new Random(12);
        var batch = spec.Causal ? DecoderModels.Batch(rng, [5, 3, 4], spec.VocabSize, left: true) : TransformerEngineTests.RandomBatch(rng, 3, 5, spec.VocabSize);
        int promptLen = 2, prefixLen = 3;
        var prompt = TestData.Random(rng, promptLen * spec.Hidden);
        var prefix = TestData.Random(rng, 2 * spec.Layers * prefixLen * spec.KvDim);
        var dHidden = TestData.Random(rng, batch.Batch * (promptLen + batch.SeqLen) * spec.Hidden);
        using var engine = new TransformerEngine(backend, spec, weights) { Recompute = recompute };
        using var p = backend.UploadNew(prompt);
        using var k = backend.UploadNew(prefix);
        using var dh = backend.UploadNew(dHidden);
        using var dp = backend.Allocate(prompt.Length);
        using var dk = backend.Allocate(prefix.Length);
        var hidden = backend.ToHost(engine.Forward(batch, p.All, k.All, training: true, seed: 3));
        engine.Backward(dh.All, dp.All, dk.All);
        return new Run(hidden, backend.ToHost(dp.All), backend.ToHost(dk.All), engine.ActivationBytes);
    }

    private static void AssertSameGradients(Func<Backend> backend, string model)
    {
        var weights = Model(model);
        using var b1 = backend();
        var kept = ForwardBackward(b1, weights, recompute: false);
        using var b2 = backend();
        var recomputed = ForwardBackward(b2, weights, recompute: true);
        Assert.Equal(kept.Hidden, recomputed.Hidden);
        Assert.Equal(kept.DPrompt, recomputed.DPrompt);
        Assert.Equal(kept.DPrefix, recomputed.DPrefix);
        Assert.Contains(kept.DPrefix, g => g != 0f);
        Assert.True(recomputed.ActivationBytes < kept.ActivationBytes, $"{recomputed.ActivationBytes} vs {kept.ActivationBytes} bytes");
    }

    [Theory]
    [InlineData("bert")]
    [InlineData("llama")]
    [InlineData("falcon")]
    public void CpuGradientsAreBitIdentical(string model) => AssertSameGradients(() => new CpuBackend(), model);

    [Theory]
    [InlineData("bert")]
    [InlineData("llama")]
    public void SimulatorGradientsAreBitIdentical(string model) => AssertSameGradients(() => new GpuBackend(GpuDevice.CreateCpuSimulator()), model);

    [Fact]
    public void SharedPromptKeysAreRefusedUnderRecomputation()
    {
        var weights = Model("llama");
        using var backend = new CpuBackend();
        using var engine = new TransformerEngine(backend, weights.Spec, weights) { Recompute = true };
        using var prompt = backend.UploadNew(TestData.Random(new Random(1), 2 * weights.Spec.Hidden));
        engine.Forward(new TokenBatch(1, 1, [3], [0], [1f]), prompt.All);
        using var kv = backend.Allocate(2 * weights.Spec.Layers * 2 * weights.Spec.KvDim);
        Assert.Throws<InvalidOperationException>(() => engine.PromptKeyValues(kv.All));
    }
}
