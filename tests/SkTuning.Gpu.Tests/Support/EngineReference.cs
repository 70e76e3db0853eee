using SkTuning.Gpu.Engine;
using SkTuning.Gpu.Import;
using SkTuning.Gpu.Kernels;

namespace SkTuning.Gpu.Tests.Support;

/// <summary>
/// The engine's forward in fp64, composed only of the kernels' fp64 references (llm.c style): the ground truth
/// for the fast engine's forward and, through finite differences, for its prompt/prefix gradients.
/// </summary>
internal static class EngineReference
{
    /// <summary>Final hidden states [B, m_p + T, d] with an optional prompt [m_p, d] and prefix [L, 2, m, d].</summary>
    public static double[] Forward(ModelWeights w, TokenBatch batch, double[] prompt, double[] prefix)
    {
        var s = w.Spec;
        int d = s.Hidden, F = s.FfnSize, B = batch.Batch, T = batch.SeqLen, mp = prompt.Length / d, m = prefix.Length / (2 * s.Layers * d);
        int S = mp + T, rows = B * S;
        double[] D(float[] a) => Array.ConvertAll(a, x => (double)x);
        var emb = new double[B * T * d];
        Embedding.ForwardReference(batch.Ids, batch.Types, D(w.Embeddings.Word), D(w.Embeddings.Position), D(w.Embeddings.TokenType), emb, B, T, d);
        var x0 = new double[B * T * d];
        LayerNorm.ForwardReference(emb, D(w.Embeddings.NormGamma), D(w.Embeddings.NormBeta), x0, new double[B * T], new double[B * T], B * T, d, s.Epsilon);
        var x = new double[rows * d];
        if (mp > 0) Prepend.ForwardReference(prompt, x0, x, B, mp, T, d);
        else x = x0;
        var mask = new double[rows];
        for (int b = 0; b < B; b++)
            for (int t = 0; t < S; t++) mask[b * S + t] = t < mp ? 1 : batch.Mask[b * T + t - mp];
        var shape = new AttentionShape(B, S, s.Heads, s.HeadSize, m);
        for (int l = 0; l < s.Layers; l++)
        {
            var lw = w.Layers[l];
            var qkv = new double[rows * 3 * d];
            Gemm.NNReference(rows, 3 * d, d, x, D(lw.FusedQkvWeight()), qkv, D(lw.FusedQkvBias()));
            var pk = prefix.AsSpan(2 * l * m * d, m * d).ToArray();
            var pv = prefix.AsSpan((2 * l + 1) * m * d, m * d).ToArray();
            var ctx = new double[rows * d];
            Attention.ForwardReference(qkv, pk, pv, mask, ctx, new double[shape.ProbsLength], shape, s.MaskValue, s.Causal);
            var a = new double[rows * d];
            Gemm.NNReference(rows, d, d, ctx, D(lw.Wo), a, D(lw.Bo));
            for (int i = 0; i < a.Length; i++) a[i] += x[i];
            var h = new double[rows * d];
            LayerNorm.ForwardReference(a, D(lw.AttentionNormGamma), D(lw.AttentionNormBeta), h, new double[rows], new double[rows], rows, d, s.Epsilon);
            var up = new double[rows * F];
            Gemm.NNReference(rows, F, d, h, D(lw.W1), up, D(lw.B1));
            var g = new double[rows * F];
            Gelu.ForwardReference(up, g);
            var down = new double[rows * d];
            Gemm.NNReference(rows, d, F, g, D(lw.W2), down, D(lw.B2));
            for (int i = 0; i < down.Length; i++) down[i] += h[i];
            x = new double[rows * d];
            LayerNorm.ForwardReference(down, D(lw.OutputNormGamma), D(lw.OutputNormBeta), x, new double[rows], new double[rows], rows, d, s.Epsilon);
        }
        return x;
    }
}
