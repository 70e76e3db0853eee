using SkTuning.Gpu.Data;
using SkTuning.Gpu.Engine;
using SkTuning.Gpu.Import;
using SkTuning.Gpu.Kernels;
using SkTuning.Gpu.Training;

namespace SkTuning.Gpu.Tests.Support;

/// <summary>The whole SK-Tuning model's loss in fp64 (adapter → frozen model → head), without dropout.</summary>
internal static class SkModelReference
{
    public static double Loss(ModelWeights w, TokenBatch batch, AdapterShape? shape, IReadOnlyList<double[]> sources,
        TaskKind kind, int classes, HeadTargets targets, IReadOnlyDictionary<string, double[]> p)
    {
        int d = w.Spec.Hidden;
        double[] prompt = [], prefix = [];
        if (shape is not null)
        {
            int m = shape.Tokens, n = shape.OutputLength;
            var output = new double[n];
            if (shape.Mode == AdapterMode.Pooled)
            {
                var s = new double[m];
                Gemm.NNReference(m, 1, d, sources[0], p["adapter.pool.weight"], s, p["adapter.pool.bias"]);
                Gemm.NNReference(1, n, m, s, p["adapter.out.weight"], output, p["adapter.out.bias"]);
            }
            else
            {
                for (int g = 0; g < shape.Groups; g++)
                {
                    string name = shape.Kind == AdapterKind.Prompt ? "adapter" : $"adapter.layer{g / 2}.{(g % 2 == 0 ? "key" : "value")}";
                    var block = new double[m * d];
                    Gemm.NNReference(m, d, d, sources[shape.Mode == AdapterMode.PerLayer ? g / 2 : 0], p[name + ".weight"], block, p[name + ".bias"]);
                    block.CopyTo(output, g * m * d);
                }
            }
            if (shape.Kind == AdapterKind.Prompt) prompt = output; else prefix = output;
        }
        return Loss(w, batch, prompt, prefix, kind, classes, targets, p);
    }

    /// <summary>The loss from a given prompt [m, d] or prefix [L, 2, m, d] (empty when absent) through the frozen model and head.</summary>
    public static double Loss(ModelWeights w, TokenBatch batch, double[] prompt, double[] prefix,
        TaskKind kind, int classes, HeadTargets targets, IReadOnlyDictionary<string, double[]> p)
    {
        int d = w.Spec.Hidden;
        var hidden = EngineReference.Forward(w, batch, prompt, prefix);
        int skip = prompt.Length / d, B = batch.Batch, T = batch.SeqLen, S = skip + T, C = kind == TaskKind.Regression ? 1 : classes;
        var W = p["head.weight"]; var bias = p["head.bias"];
        double Logit(double[] x, int offset, int c) { double z = bias[c]; for (int j = 0; j < d; j++) z += x[offset + j] * W[j * C + c]; return z; }
        double CrossEntropy(double[] x, int offset, int label)
        {
            var z = Enumerable.Range(0, C).Select(c => Logit(x, offset, c)).ToArray();
            double max = z.Max(), sum = z.Sum(v => Math.Exp(v - max));
            return Math.Log(sum) + max - z[label];
        }
        if (kind == TaskKind.TokenClassification)
        {
            double loss = 0; int count = 0;
            for (int b = 0; b < B; b++)
                for (int t = 0; t < T; t++)
                {
                    int label = targets.TokenLabels![b * T + t];
                    if (label == -100) continue;
                    loss += CrossEntropy(hidden, (b * S + skip + t) * d, label); count++;
                }
            return loss / count;
        }
        double total = 0;
        for (int b = 0; b < B; b++)
        {
            var pooled = new double[d]; int n = 0;
            for (int t = 0; t < T; t++)
                if (batch.Mask[b * T + t] != 0)
                {
                    n++;
                    for (int j = 0; j < d; j++) pooled[j] += hidden[(b * S + skip + t) * d + j];
                }
            for (int j = 0; j < d; j++) pooled[j] /= n;
            if (kind == TaskKind.Regression) { double e = Logit(pooled, 0, 0) - targets.Values![b]; total += e * e; }
            else total += CrossEntropy(pooled, 0, targets.Classes![b]);
        }
        return total / B;
    }
}
