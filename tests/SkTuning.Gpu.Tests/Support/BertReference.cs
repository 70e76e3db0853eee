using SkTuning.Gpu.Import;

namespace SkTuning.Gpu.Tests.Support;

/// <summary>
/// A plain fp64 BERT forward from imported weights (post-LayerNorm, GELU-erf, additive mask
/// (1 − mask)·MaskValue): the ground truth that proves the importer mapped every weight.
/// </summary>
internal static class BertReference
{
    /// <summary>last_hidden_state [B, T, d] for ids/mask/types of shape [B, T].</summary>
    public static double[] Forward(ModelWeights w, long[,] ids, long[,] mask, long[,] types)
    {
        var s = w.Spec;
        int batch = ids.GetLength(0), seq = ids.GetLength(1), d = s.Hidden, f = s.FfnSize, dh = s.HeadSize;
        var result = new double[batch * seq * d];
        for (int b = 0; b < batch; b++)
        {
            var x = new double[seq, d];
            for (int t = 0; t < seq; t++)
                for (int j = 0; j < d; j++)
                    x[t, j] = (double)w.Embeddings.Word[ids[b, t] * d + j] + w.Embeddings.Position[t * d + j]
                              + w.Embeddings.TokenType[types[b, t] * d + j];
            LayerNorm(x, w.Embeddings.NormGamma, w.Embeddings.NormBeta, s.Epsilon);
            foreach (var l in w.Layers)
            {
                var q = Linear(x, l.Wq, l.Bq, d, d);
                var k = Linear(x, l.Wk, l.Bk, d, d);
                var v = Linear(x, l.Wv, l.Bv, d, d);
                var ctx = new double[seq, d];
                for (int h = 0; h < s.Heads; h++)
                    for (int i = 0; i < seq; i++)
                    {
                        var p = new double[seq];
                        double max = double.NegativeInfinity;
                        for (int j = 0; j < seq; j++)
                        {
                            double dot = 0;
                            for (int e = 0; e < dh; e++) dot += q[i, h * dh + e] * k[j, h * dh + e];
                            // The graph computes (1 − mask)·value in float, then adds it to the float score.
                            p[j] = dot / Math.Sqrt(dh) + (1 - mask[b, j]) * (double)s.MaskValue;
                            max = Math.Max(max, p[j]);
                        }
                        double z = 0;
                        for (int j = 0; j < seq; j++) z += p[j] = Math.Exp(p[j] - max);
                        for (int j = 0; j < seq; j++)
                            for (int e = 0; e < dh; e++) ctx[i, h * dh + e] += p[j] / z * v[j, h * dh + e];
                    }
                var o = Linear(ctx, l.Wo, l.Bo, d, d);
                Add(o, x);
                LayerNorm(o, l.AttentionNormGamma, l.AttentionNormBeta, s.Epsilon);
                var up = Linear(o, l.W1, l.B1, d, f);
                for (int t = 0; t < seq; t++)
                    for (int j = 0; j < f; j++) up[t, j] = 0.5 * up[t, j] * (1 + Erf(up[t, j] / Math.Sqrt(2)));
                var down = Linear(up, l.W2, l.B2, f, d);
                Add(down, o);
                LayerNorm(down, l.FfnNormGamma, l.FfnNormBeta, s.Epsilon);
                x = down;
            }
            for (int t = 0; t < seq; t++)
                for (int j = 0; j < d; j++) result[(b * seq + t) * d + j] = x[t, j];
        }
        return result;
    }

    private static double[,] Linear(double[,] x, float[] w, float[] bias, int n, int m)
    {
        int rows = x.GetLength(0);
        var y = new double[rows, m];
        for (int t = 0; t < rows; t++)
            for (int j = 0; j < m; j++)
            {
                double acc = bias[j];
                for (int i = 0; i < n; i++) acc += x[t, i] * w[i * m + j];
                y[t, j] = acc;
            }
        return y;
    }

    private static void Add(double[,] y, double[,] x)
    {
        for (int t = 0; t < y.GetLength(0); t++)
            for (int j = 0; j < y.GetLength(1); j++) y[t, j] += x[t, j];
    }

    private static void LayerNorm(double[,] x, float[] gamma, float[] beta, double eps)
    {
        int n = x.GetLength(1);
        for (int t = 0; t < x.GetLength(0); t++)
        {
            double mean = 0, variance = 0;
            for (int j = 0; j < n; j++) mean += x[t, j];
            mean /= n;
            for (int j = 0; j < n; j++) variance += (x[t, j] - mean) * (x[t, j] - mean);
            variance /= n;
            double inv = 1 / Math.Sqrt(variance + eps);
            for (int j = 0; j < n; j++) x[t, j] = (x[t, j] - mean) * inv * gamma[j] + beta[j];
        }
    }

    /// <summary>erf to ~1e-15: Maclaurin series below 2.5, the erfc continued fraction above.</summary>
    public static double Erf(double x)
    {
        double ax = Math.Abs(x);
        if (ax < 2.5)
        {
            double term = ax, sum = ax, x2 = ax * ax;
            for (int n = 1; n < 100 && Math.Abs(term) > 1e-17 * Math.Abs(sum); n++)
            {
                term *= -x2 / n;
                sum += term / (2 * n + 1);
            }
            return Math.Sign(x) * 2 / Math.Sqrt(Math.PI) * sum;
        }
        // erfc(x) = exp(−x²)/√π · 1/(x + (1/2)/(x + 1/(x + (3/2)/(x + 2/(x + …))))).
        double frac = ax;
        for (int k = 80; k >= 1; k--) frac = ax + k / 2.0 / frac;
        double erfc = Math.Exp(-ax * ax) / Math.Sqrt(Math.PI) / frac;
        return Math.Sign(x) * (1 - erfc);
    }
}
