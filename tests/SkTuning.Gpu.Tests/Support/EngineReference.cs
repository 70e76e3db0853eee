using SkTuning.Gpu.Engine;
using SkTuning.Gpu.Import;
using SkTuning.Gpu.Kernels;

namespace SkTuning.Gpu.Tests.Support;

/// <summary>LoRA for the fp64 reference: A/B tensors by engine name, α/r, and the training-mode dropout (p, seed).</summary>
internal sealed record LoraReference(IReadOnlyDictionary<string, double[]> Tensors, int Rank, double Scale, float Dropout = 0f, ulong Seed = 0);

/// <summary>
/// The engine's forward in fp64, composed only of the kernels' fp64 references (llm.c style): the ground truth
/// for the fast engine's forward and, through finite differences, for its prompt/prefix/weight/LoRA gradients.
/// </summary>
internal static class EngineReference
{
    /// <summary>Final hidden states [B, m_p + T, d] with an optional prompt [m_p, d] and prefix [L, 2, m, d].</summary>
    public static double[] Forward(ModelWeights w, TokenBatch batch, double[] prompt, double[] prefix) =>
        Forward(w.Spec, Tensors(w), batch, prompt, prefix);

    /// <summary>The model's weights in fp64, named as <see cref="EngineParameters.WeightTensors"/> (perturb these for finite differences).</summary>
    public static Dictionary<string, double[]> Tensors(ModelWeights w) =>
        EngineParameters.PretrainedTensors(w).ToDictionary(kv => kv.Key, kv => TestData.ToDouble(kv.Value));

    /// <summary>The forward from named fp64 weights, with optional LoRA on query/value.</summary>
    public static double[] Forward(ModelSpec s, IReadOnlyDictionary<string, double[]> t, TokenBatch batch, double[] prompt, double[] prefix,
        LoraReference? lora = null)
    {
        int d = s.Hidden, F = s.FfnSize, B = batch.Batch, T = batch.SeqLen, mp = prompt.Length / d, m = prefix.Length / (2 * s.Layers * d);
        int S = mp + T, rows = B * S;
        var emb = new double[B * T * d];
        Embedding.ForwardReference(batch.Ids, batch.Types, Enumerable.Range(0, B * T).Select(r => r % T).ToArray(), t[EngineParameters.WordEmbeddings], t[EngineParameters.PositionEmbeddings],
            t[EngineParameters.TokenTypeEmbeddings], emb, B, T, d);
        var x0 = new double[B * T * d];
        LayerNorm.ForwardReference(emb, t[EngineParameters.EmbeddingNormGamma], t[EngineParameters.EmbeddingNormBeta], x0,
            new double[B * T], new double[B * T], B * T, d, s.Epsilon);
        var x = new double[rows * d];
        if (mp > 0) Prepend.ForwardReference(prompt, x0, x, B, mp, T, d);
        else x = x0;
        var mask = new double[rows];
        for (int b = 0; b < B; b++)
            for (int p = 0; p < S; p++) mask[b * S + p] = p < mp ? 1 : batch.Mask[b * T + p - mp];
        var shape = new AttentionShape(B, S, s.Heads, s.HeadSize, m, s.KvHeads);
        for (int l = 0; l < s.Layers; l++)
        {
            var n = EngineParameters.LayerNames(l);
            var qkv = new double[rows * 3 * d];
            Gemm.NNReference(rows, 3 * d, d, x, t[n.QkvWeight], qkv, t[n.QkvBias]);
            if (lora is not null) AddLora(s, lora, l, rows, x, qkv);
            var pk = prefix.AsSpan(2 * l * m * d, m * d).ToArray();
            var pv = prefix.AsSpan((2 * l + 1) * m * d, m * d).ToArray();
            var ctx = new double[rows * d];
            Attention.ForwardReference(qkv, pk, pv, mask, ctx, new double[shape.ProbsLength], shape, s.MaskValue, s.Causal);
            var a = new double[rows * d];
            Gemm.NNReference(rows, d, d, ctx, t[n.AttentionOutputWeight], a, t[n.AttentionOutputBias]);
            for (int i = 0; i < a.Length; i++) a[i] += x[i];
            var h = new double[rows * d];
            LayerNorm.ForwardReference(a, t[n.AttentionNormGamma], t[n.AttentionNormBeta], h, new double[rows], new double[rows], rows, d, s.Epsilon);
            var up = new double[rows * F];
            Gemm.NNReference(rows, F, d, h, t[n.FfnUpWeight], up, t[n.FfnUpBias]);
            var g = new double[rows * F];
            Gelu.ForwardReference(up, g);
            var down = new double[rows * d];
            Gemm.NNReference(rows, d, F, g, t[n.FfnDownWeight], down, t[n.FfnDownBias]);
            for (int i = 0; i < down.Length; i++) down[i] += h[i];
            x = new double[rows * d];
            LayerNorm.ForwardReference(down, t[n.FfnNormGamma], t[n.FfnNormBeta], x, new double[rows], new double[rows], rows, d, s.Epsilon);
        }
        return x;
    }

    /// <summary>qkv[:, q | v columns] += scale·dropout(x)·A·B, the dropout masks drawn as the engine draws them.</summary>
    private static void AddLora(ModelSpec s, LoraReference lora, int l, int rows, double[] x, double[] qkv)
    {
        int d = s.Hidden, r = lora.Rank;
        var (qa, qb, va, vb) = EngineParameters.LoraNames(l);
        foreach (var (j, a, b) in new[] { (0, qa, qb), (1, va, vb) })
        {
            var input = x;
            if (lora.Dropout > 0)
            {
                input = new double[x.Length];
                var (seed, offset) = Sublayers.LoraDropoutStream(lora.Seed, l, j, rows, d);
                Dropout.ForwardReference(x, input, lora.Dropout, seed, offset);
            }
            var tt = new double[rows * r];
            Gemm.NNReference(rows, r, d, input, lora.Tensors[a], tt);
            var u = new double[rows * d];
            Gemm.NNReference(rows, d, r, tt, lora.Tensors[b], u);
            ColumnBlock.ForwardReference(u, qkv, rows, d, 3 * d, j == 0 ? 0 : 2 * d, lora.Scale);
        }
    }
}
