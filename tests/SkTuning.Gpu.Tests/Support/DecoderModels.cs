using SkTuning.Gpu.Engine;
using SkTuning.Gpu.Import;

namespace SkTuning.Gpu.Tests.Support;

/// <summary>Sizes of a tiny random decoder (<see cref="DecoderModels.Random"/>).</summary>
internal sealed record DecoderOptions(ModelFamily Family, int Layers = 2, int Hidden = 16, int Heads = 4, int KvHeads = 4, int FfnSize = 24,
    int VocabSize = 40, int MaxPositions = 32, bool QkvBias = true, int RotaryDim = 0, float RopeTheta = 10000f, int Seed = 1,
    bool SharedNorm = false)
{
    /// <summary>GPT-2-like: pre-LayerNorm, GELU-tanh, absolute positions, biases everywhere.</summary>
    public static DecoderOptions Gpt2(int seed = 1) => new(ModelFamily.Gpt2, Seed: seed);

    /// <summary>LLaMA-like: pre-RMSNorm, SwiGLU, RoPE (θ small so that tiny positions turn visibly), GQA with 2 KV heads of 4.</summary>
    public static DecoderOptions Llama(bool qkvBias = false, int seed = 1) =>
        new(ModelFamily.Llama, KvHeads: 2, QkvBias: qkvBias, RotaryDim: 4, RopeTheta: 100f, Seed: seed);

    /// <summary>
    /// Falcon-like: parallel block, LayerNorm, exact GELU, RoPE, no linear biases; 7B layout (one shared norm, one KV head
    /// of 4) or the new decoder architecture (a norm per branch, 2 KV groups).
    /// </summary>
    public static DecoderOptions Falcon(bool newArchitecture, int seed = 1) =>
        new(ModelFamily.Falcon, KvHeads: newArchitecture ? 2 : 1, QkvBias: false, RotaryDim: 4, RopeTheta: 100f, Seed: seed, SharedNorm: !newArchitecture);

    /// <summary>Phi-like: parallel block from one LayerNorm, GELU-tanh, biases, partial rotary (4 of 8 dimensions per head).</summary>
    public static DecoderOptions Phi(int seed = 1) =>
        new(ModelFamily.Phi, Heads: 2, KvHeads: 2, RotaryDim: 4, RopeTheta: 100f, Seed: seed, SharedNorm: true);
    /// <summary>BLOOM-like: embedding LayerNorm, pre-LayerNorm, GELU-tanh, ALiBi over 6 heads (the extra-slopes branch), biases everywhere.</summary>
    public static DecoderOptions Bloom(int seed = 1) => new(ModelFamily.Bloom, Hidden: 24, Heads: 6, KvHeads: 6, FfnSize: 32, Seed: seed);
}

/// <summary>
/// Tiny random decoder weights built in C# (the ONNX fixture writer only writes BERT) for GPT-2, LLaMA, BLOOM, Falcon and Phi: what the engine and the fp64
/// reference run in the decoder tests. Norm γ around 1, β small, projections ~1/√fan-in, so activations stay O(1).
/// </summary>
internal static class DecoderModels
{
    public static ModelWeights Random(DecoderOptions o)
    {
        var rng = new Random(o.Seed);
        bool llama = o.Family == ModelFamily.Llama, bloom = o.Family == ModelFamily.Bloom, rotary = o.Family is ModelFamily.Llama or ModelFamily.Falcon or ModelFamily.Phi;
        bool parallel = o.Family is ModelFamily.Falcon or ModelFamily.Phi, otherBiases = o.Family is ModelFamily.Gpt2 or ModelFamily.Phi or ModelFamily.Bloom;
        int d = o.Hidden, f = o.FfnSize, hd = d / o.Heads, kv = o.KvHeads * hd;
        float[] Rand(int n, double scale, double center = 0)
        {
            var a = new float[n];
            for (int i = 0; i < n; i++) a[i] = (float)(center + (rng.NextDouble() * 2 - 1) * scale);
            return a;
        }
        float[] Opt(bool present, int n, double scale) => present ? Rand(n, scale) : [];
        double sd = 1 / Math.Sqrt(d), sf = 1 / Math.Sqrt(f);
        var embeddings = new EmbeddingWeights
        {
            Word = Rand(o.VocabSize * d, 1),
            Position = rotary || bloom ? [] : Rand(o.MaxPositions * d, 0.5),
            TokenType = [], NormGamma = Opt(bloom, d, 0.2).Select(g => g + 1).ToArray(), NormBeta = Opt(bloom, d, 0.2),
        };
        var layers = Enumerable.Range(0, o.Layers).Select(_ => new LayerWeights
        {
            Wq = Rand(d * d, 2 * sd), Bq = Opt(o.QkvBias, d, 0.1),
            Wk = Rand(d * kv, 2 * sd), Bk = Opt(o.QkvBias, kv, 0.1),
            Wv = Rand(d * kv, sd), Bv = Opt(o.QkvBias, kv, 0.1),
            Wo = Rand(d * d, sd), Bo = Opt(otherBiases, d, 0.1),
            AttentionNormGamma = Rand(d, 0.2, 1), AttentionNormBeta = Opt(!llama, d, 0.2),
            WGate = llama ? Rand(d * f, 2 * sd) : [],
            W1 = Rand(d * f, 2 * sd), B1 = Opt(otherBiases, f, 0.1),
            W2 = Rand(f * d, sf), B2 = Opt(otherBiases, d, 0.1),
            FfnNormGamma = o.SharedNorm ? [] : Rand(d, 0.2, 1), FfnNormBeta = Opt(!llama && !o.SharedNorm, d, 0.2),
        }).ToList();
        var spec = new ModelSpec
        {
            Family = o.Family,
            Layers = o.Layers,
            Hidden = d,
            Heads = o.Heads,
            KvHeads = o.KvHeads,
            HeadSize = hd,
            FfnSize = f,
            Norm = llama ? NormKind.RmsNorm : NormKind.LayerNorm,
            NormPlacement = parallel ? NormPlacement.Parallel : NormPlacement.Pre,
            SharedNorm = o.SharedNorm,
            Epsilon = 1e-5f,
            Activation = llama ? ActivationKind.SwiGlu : o.Family == ModelFamily.Falcon ? ActivationKind.GeluErf : ActivationKind.GeluTanh,
            Positions = rotary ? PositionKind.Rope : bloom ? PositionKind.Alibi : PositionKind.Absolute,
            Causal = true,
            VocabSize = o.VocabSize,
            MaxPositions = o.MaxPositions,
            TypeVocabSize = 0,
            MaskValue = float.MinValue,
            EmbeddingNorm = bloom,
            RopeTheta = o.RopeTheta,
            RotaryDim = rotary ? o.RotaryDim : 0,
            QkvBias = o.QkvBias,
            OtherBiases = otherBiases,
            ParameterCount = 0,
        };
        var finalGamma = Rand(d, 0.2, 1);
        var finalBeta = llama ? [] : Rand(d, 0.2);
        var w = new ModelWeights { Spec = spec, Embeddings = embeddings, Layers = layers, FinalNormGamma = finalGamma, FinalNormBeta = finalBeta };
        return new ModelWeights { Spec = spec with { ParameterCount = w.Count }, Embeddings = embeddings, Layers = layers, FinalNormGamma = finalGamma, FinalNormBeta = finalBeta };
    }

    /// <summary>
    /// A batch of <paramref name="lengths"/>.Length examples padded to the longest, on the left or the right; padding
    /// ids are 0, real ids random in 1..V−1; types all 0 (decoders have none).
    /// </summary>
    public static TokenBatch Batch(Random rng, int[] lengths, int vocab, bool left)
    {
        int B = lengths.Length, T = lengths.Max();
        var ids = new int[B * T]; var mask = new float[B * T];
        for (int b = 0; b < B; b++)
        {
            int pad = T - lengths[b];
            for (int i = 0; i < lengths[b]; i++)
            {
                int t = left ? pad + i : i;
                ids[b * T + t] = rng.Next(1, vocab);
                mask[b * T + t] = 1;
            }
        }
        return new TokenBatch(B, T, ids, new int[B * T], mask);
    }

    /// <summary>The rows of example b's real tokens in a [B, m_p + T, d] output (prompt rows excluded).</summary>
    public static IEnumerable<int> RealRows(TokenBatch batch, int promptLen, int b) =>
        Enumerable.Range(0, batch.SeqLen).Where(t => batch.Mask[b * batch.SeqLen + t] != 0).Select(t => b * (promptLen + batch.SeqLen) + promptLen + t);
}
