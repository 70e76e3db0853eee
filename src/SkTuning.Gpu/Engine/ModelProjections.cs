using SkTuning.Gpu.Import;
using SkTuning.Gpu.Kernels;

namespace SkTuning.Gpu.Engine;

/// <summary>
/// The family-specific maps that adapters start from, so that nothing in training knows a family: what a layer's
/// attention projects (the branch input — normed first in pre-norm models), its key/value projection, and the embedding
/// layer's output for given tokens. Host-side and fp64 inside: these run once per run on a few rows.
/// </summary>
public static class ModelProjections
{
    /// <summary>
    /// What layer l's key/value projection reads, for each of <paramref name="statesEnteringLayers"/> (layer l's input
    /// states [m, d] from the zero-shot pass): the states themselves in post-norm models (BERT's layer input is already
    /// normed), AttnNorm_l(states) in pre-norm models.
    /// </summary>
    public static IReadOnlyList<float[]> AttentionInputs(ModelWeights weights, IReadOnlyList<float[]> statesEnteringLayers)
    {
        var spec = weights.Spec;
        if (statesEnteringLayers.Count != spec.Layers)
            throw new ArgumentException($"{statesEnteringLayers.Count} state matrices for {spec.Layers} layers");
        if (spec.NormPlacement == NormPlacement.Post) return statesEnteringLayers;
        return statesEnteringLayers.Select((h, l) =>
            Normalize(spec, h, weights.Layers[l].AttentionNormGamma, weights.Layers[l].AttentionNormBeta)).ToArray();
    }

    /// <summary>
    /// Layer <paramref name="layer"/>'s key and value projections [d, kvDim] and biases [kvDim] (zeros where the model
    /// has none): applied to <see cref="AttentionInputs"/> they give the layer's own (unrotated) keys and values.
    /// </summary>
    public static (float[] Wk, float[] Bk, float[] Wv, float[] Bv) KeyValue(ModelWeights weights, int layer)
    {
        var l = weights.Layers[layer];
        int kv = weights.Spec.KvDim;
        return (l.Wk, l.Bk.Length == 0 ? new float[kv] : l.Bk, l.Wv, l.Bv.Length == 0 ? new float[kv] : l.Bv);
    }

    /// <summary>
    /// The embedding layer's output [n, d] for tokens <paramref name="ids"/> at positions 0..n−1 (type 0): word
    /// (+ position + type) embeddings, then the embedding norm where the model has one.
    /// </summary>
    public static float[] EmbedTokens(ModelWeights weights, IReadOnlyList<int> ids)
    {
        var spec = weights.Spec;
        var e = weights.Embeddings;
        int d = spec.Hidden, n = ids.Count;
        var rows = new float[n * d];
        for (int i = 0; i < n; i++)
            for (int c = 0; c < d; c++)
            {
                float v = e.Word[ids[i] * d + c];
                if (e.Position.Length > 0) v += e.Position[i * d + c];
                if (e.TokenType.Length > 0) v += e.TokenType[c];
                rows[i * d + c] = v;
            }
        return spec.EmbeddingNorm ? Normalize(spec, rows, e.NormGamma, e.NormBeta) : rows;
    }

    /// <summary>The model's norm (LayerNorm or RMSNorm) of each row, in fp64.</summary>
    private static float[] Normalize(ModelSpec spec, float[] x, float[] gamma, float[] beta)
    {
        int d = spec.Hidden, rows = x.Length / d;
        var y = new double[x.Length];
        var xd = Array.ConvertAll(x, v => (double)v);
        var g = Array.ConvertAll(gamma, v => (double)v);
        if (spec.Norm == NormKind.LayerNorm)
            LayerNorm.ForwardReference(xd, g, beta.Length == 0 ? new double[d] : Array.ConvertAll(beta, v => (double)v), y,
                new double[rows], new double[rows], rows, d, spec.Epsilon);
        else
            RmsNorm.ForwardReference(xd, g, y, new double[rows], rows, d, spec.Epsilon);
        return Array.ConvertAll(y, v => (float)v);
    }
}
