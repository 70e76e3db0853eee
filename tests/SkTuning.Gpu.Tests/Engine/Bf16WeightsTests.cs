using SkTuning.Gpu.Engine;
using SkTuning.Gpu.Import;
using SkTuning.Gpu.Kernels;
using SkTuning.Gpu.Tests.Support;

namespace SkTuning.Gpu.Tests.Engine;

/// <summary>
/// Frozen weights in bf16 on the CPU backend (<see cref="WeightPrecision.Bf16"/>): on the widening GEMM path the engine
/// computes exactly what the fp32 engine computes on the bf16-rounded projection matrices and word table (forward and the prompt/prefix
/// gradients, bit for bit — the fp32 engine itself is checked against the fp64 reference elsewhere); on the
/// <c>vdpbf16ps</c> path the GEMM inputs are rounded to bf16 too, which moves results by about bf16's rounding; either
/// stays within bf16's error of the unrounded model, and stores those matrices in 2 bytes per value (plus panel padding) and the word table in 2.
/// </summary>
public class Bf16WeightsTests
{
    private static readonly int[] Lengths = [5, 3, 4];

    /// <summary>The weights with the four projection matrices (q, k, v, o, gate, up, down) and the word table rounded to bf16.</summary>
    private static ModelWeights RoundedMatrices(ModelWeights w) => new()
    {
        Spec = w.Spec, Pooler = w.Pooler, FinalNormGamma = w.FinalNormGamma, FinalNormBeta = w.FinalNormBeta,
        Embeddings = new EmbeddingWeights
        {
            Word = BFloat16.Round(w.Embeddings.Word), Position = w.Embeddings.Position, TokenType = w.Embeddings.TokenType,
            NormGamma = w.Embeddings.NormGamma, NormBeta = w.Embeddings.NormBeta,
        },
        Layers = w.Layers.Select(l => new LayerWeights
        {
            Wq = BFloat16.Round(l.Wq), Bq = l.Bq, Wk = BFloat16.Round(l.Wk), Bk = l.Bk, Wv = BFloat16.Round(l.Wv), Bv = l.Bv,
            Wo = BFloat16.Round(l.Wo), Bo = l.Bo, AttentionNormGamma = l.AttentionNormGamma, AttentionNormBeta = l.AttentionNormBeta,
            WGate = BFloat16.Round(l.WGate), W1 = BFloat16.Round(l.W1), B1 = l.B1, W2 = BFloat16.Round(l.W2), B2 = l.B2,
            FfnNormGamma = l.FfnNormGamma, FfnNormBeta = l.FfnNormBeta,
        }).ToList(),
    };

    private sealed record Run(float[] Hidden, float[] DPrompt, float[] DPrefix, long WeightBytes);

    private static Run ForwardBackward(WeightPrecision precision, ModelWeights weights, int seed, Bf16GemmPath path = Bf16GemmPath.Auto)
    {
        using var backend = new CpuBackend(precision) { Bf16Path = path };
        var spec = weights.Spec;
        var rng = new Random(seed);
        var batch = DecoderModels.Batch(rng, Lengths, spec.VocabSize, left: true);
        int promptLen = 2, prefixLen = 3;
        var prompt = TestData.Random(rng, promptLen * spec.Hidden);
        var prefix = TestData.Random(rng, 2 * spec.Layers * prefixLen * spec.KvDim);
        var dHidden = TestData.Random(rng, batch.Batch * (promptLen + batch.SeqLen) * spec.Hidden);
        using var engine = new TransformerEngine(backend, spec, weights);
        using var p = backend.UploadNew(prompt);
        using var k = backend.UploadNew(prefix);
        using var dh = backend.UploadNew(dHidden);
        using var dp = backend.Allocate(prompt.Length);
        using var dk = backend.Allocate(prefix.Length);
        var hidden = backend.ToHost(engine.Forward(batch, p.All, k.All));
        engine.Backward(dh.All, dp.All, dk.All);
        return new Run(hidden, backend.ToHost(dp.All), backend.ToHost(dk.All), engine.FrozenWeightBytes);
    }

    [Theory]
    [InlineData("llama")]
    [InlineData("gpt2")]
    public void EqualsTheFp32EngineOnRoundedWeights(string variant)
    {
        var weights = DecoderModels.Random(DecoderEngineTests.Options(variant));
        var bf16 = ForwardBackward(WeightPrecision.Bf16, weights, seed: 9, Bf16GemmPath.Widening);
        var rounded = ForwardBackward(WeightPrecision.Fp32, RoundedMatrices(weights), seed: 9);
        Assert.Equal(rounded.Hidden, bf16.Hidden);
        Assert.Equal(rounded.DPrompt, bf16.DPrompt);
        Assert.Equal(rounded.DPrefix, bf16.DPrefix);
    }

    /// <summary>
    /// The <c>vdpbf16ps</c> path against the widening path: GEMM activations rounded to bf16 (relative error ≤ 2⁻⁹ each) move
    /// the outputs and gradients by a little — measured ~1e-3 normwise — and not by nothing (the kernel really ran).
    /// Where the CPU has no AVX512-BF16 the default path is the widening one and the two agree bit for bit.
    /// </summary>
    [Fact]
    public void DotProductPathStaysWithinActivationRoundingOfTheWideningPath()
    {
        var weights = DecoderModels.Random(DecoderEngineTests.Options("llama"));
        var dot = ForwardBackward(WeightPrecision.Bf16, weights, seed: 11);
        var widened = ForwardBackward(WeightPrecision.Bf16, weights, seed: 11, Bf16GemmPath.Widening);
        foreach (var (name, a, b) in new[] { ("hidden", dot.Hidden, widened.Hidden), ("dPrompt", dot.DPrompt, widened.DPrompt), ("dPrefix", dot.DPrefix, widened.DPrefix) })
        {
            double err = TestData.Normwise(a, TestData.ToDouble(b));
            if (Gemm.DefaultBf16Path == Bf16GemmPath.Widening) Assert.Equal(0, err);
            else Assert.True(err is > 0 and < 1e-2, $"{name}: normwise difference {err}");
        }
    }

    /// <summary>
    /// Against the unrounded model: each weight moves by ≤ 2⁻⁸ relative, so outputs move by about that times √(fan-in)
    /// averaging — the documented bf16 tolerance is 2e-2 normwise (<see cref="SkTuning.Gpu.Verification.ModelVerifier"/>);
    /// and the error is not zero (the weights really were rounded). Matrices take 2 bytes per value plus the panels' padding.
    /// </summary>
    [Fact]
    public void StaysWithinBf16ErrorOfFp32AndStoresTheMatricesInPackedBf16()
    {
        var weights = DecoderModels.Random(DecoderEngineTests.Options("llama"));
        var bf16 = ForwardBackward(WeightPrecision.Bf16, weights, seed: 10);
        var fp32 = ForwardBackward(WeightPrecision.Fp32, weights, seed: 10);
        foreach (var (name, a, b) in new[] { ("hidden", bf16.Hidden, fp32.Hidden), ("dPrompt", bf16.DPrompt, fp32.DPrompt), ("dPrefix", bf16.DPrefix, fp32.DPrefix) })
        {
            double err = TestData.Normwise(a, TestData.ToDouble(b));
            Assert.True(err is > 1e-5 and < 2e-2, $"{name}: normwise error {err}");
        }
        // Both in the CPU GEMM's panels, columns padded to 48: fp32 at 4 bytes per value (PackedMatrix), bf16 at 2, rows
        // padded to even. This tiny model's widths (64, 128, 176) pad by up to 50%; real models' (384, 1152, 1536, 2048,
        // 3072, 8192) by 0-0.8%.
        var shapes = EngineParameters.WeightTensors(weights.Spec).ToDictionary(t => t.Name, t => t.Shape);
        long Packed(Func<int, int, long> bytes) => Enumerable.Range(0, weights.Spec.Layers).Sum(l =>
        {
            var n = EngineParameters.LayerNames(l);
            return new[] { n.QkvWeight, n.AttentionOutputWeight, n.FfnUpWeight, n.FfnDownWeight }
                .Sum(name => bytes(shapes[name][0], (shapes[name][1] + 47) / 48 * 48));
        });
        long fp32Bytes = Packed((rows, columns) => rows * columns * 4L), bf16Bytes = Packed((rows, columns) => (rows + 1) / 2 * columns * 4L);
        Assert.Equal(fp32.WeightBytes - fp32Bytes + bf16Bytes - 2L * weights.Embeddings.Word.Length, bf16.WeightBytes);
    }

    [Fact]
    public void WeightGradientOfABf16MatrixIsRefused()
    {
        using var backend = new CpuBackend(WeightPrecision.Bf16);
        using var w = backend.UploadBf16(TestData.Random(new Random(1), 6), 3, 2);
        using var a = backend.Allocate(6);
        using var c = backend.Allocate(4);
        var ex = Assert.Throws<ArgumentException>(() => backend.Gemm(GemmOp.TN, 2, 2, 3, a.All, new WeightMatrix(default, w.All), c.All));
        Assert.Contains("frozen weights take no gradient", ex.Message);
        Assert.Throws<InvalidOperationException>(() => new CpuBackend().UploadBf16([1f], 1, 1));
    }
}
