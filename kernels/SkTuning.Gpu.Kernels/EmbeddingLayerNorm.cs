using ILGPU;
using ILGPU.Runtime;
using SkTuning.Gpu.Kernels.Gpu;

namespace SkTuning.Gpu.Kernels;

/// <summary>
/// The embedding layer of encoders with an embedding LayerNorm (BERT, RoBERTa, BLOOM): <c>sum = wte[ids] + wpe[positions] +
/// wtt[types]</c> (<see cref="Embedding"/>; saved, the LayerNorm backward reads it) and <c>y = LayerNorm(sum)</c> with mean
/// and rstd saved. On the GPU one launch, one warp per row (<see cref="WarpRows"/>), instead of a gather and a LayerNorm.
/// </summary>
public static class EmbeddingLayerNorm
{
    /// <summary>fp64 reference.</summary>
    public static void ForwardReference(ReadOnlySpan<int> ids, ReadOnlySpan<int> types, ReadOnlySpan<int> positions, ReadOnlySpan<double> wte,
        ReadOnlySpan<double> wpe, ReadOnlySpan<double> wtt, Span<double> sum, ReadOnlySpan<double> gamma, ReadOnlySpan<double> beta, Span<double> y,
        Span<double> mean, Span<double> rstd, int batch, int seqLen, int dim, double eps)
    {
        Embedding.ForwardReference(ids, types, positions, wte, wpe, wtt, sum, batch, seqLen, dim);
        LayerNorm.ForwardReference(sum, gamma, beta, y, mean, rstd, batch * seqLen, dim, eps);
    }

    /// <summary>CPU: the embedding gather, then the SIMD LayerNorm (the two passes the CPU backend always made).</summary>
    public static void Forward(ReadOnlySpan<int> ids, ReadOnlySpan<int> types, ReadOnlySpan<int> positions, ReadOnlySpan<float> wte,
        ReadOnlySpan<float> wpe, ReadOnlySpan<float> wtt, Span<float> sum, ReadOnlySpan<float> gamma, ReadOnlySpan<float> beta, Span<float> y,
        Span<float> mean, Span<float> rstd, int batch, int seqLen, int dim, float eps)
    {
        Embedding.Forward(ids, types, positions, wte, wpe, wtt, sum, batch, seqLen, dim);
        LayerNorm.Forward(sum, gamma, beta, y, mean, rstd, batch * seqLen, dim, eps);
    }

    /// <summary>One warp per token row: the lanes gather their columns of the three tables, then the row's LayerNorm.</summary>
    internal static void ForwardKernel(ArrayView<int> ids, ArrayView<int> types, ArrayView<int> positions, ArrayView<float> wte, ArrayView<float> wpe,
        ArrayView<float> wtt, ArrayView<float> sum, ArrayView<float> gamma, ArrayView<float> beta, ArrayView<float> y, ArrayView<float> mean,
        ArrayView<float> rstd, LayerNorm.Args a)
    {
        int r = WarpRows.Row();
        if (r >= a.Rows) return;   // whole warps leave together
        long o = (long)r * a.Dim, word = (long)ids[r] * a.Dim;
        long position = wpe.Length != 0 ? (long)positions[r] * a.Dim : 0, type = wtt.Length != 0 && types.Length != 0 ? (long)types[r] * a.Dim : 0;
        float laneSum = 0;
        for (int c = Warp.LaneIdx; c < a.Dim; c += Warp.WarpSize)
        {
            float v = wte[word + c];
            if (wpe.Length != 0) v += wpe[position + c];
            if (wtt.Length != 0) v += wtt[type + c];
            sum[o + c] = v;
            laneSum += v;
        }
        LayerNorm.NormalizeWarpRow(r, laneSum, sum, gamma, beta, y, mean, rstd, a);
    }

    /// <summary>GPU: one launch.</summary>
    public static void Forward(GpuDevice device, ArrayView<int> ids, ArrayView<int> types, ArrayView<int> positions, ArrayView<float> wte,
        ArrayView<float> wpe, ArrayView<float> wtt, ArrayView<float> sum, ArrayView<float> gamma, ArrayView<float> beta, ArrayView<float> y,
        ArrayView<float> mean, ArrayView<float> rstd, int batch, int seqLen, int dim, float eps)
    {
        Embedding.ValidateGpu(ids.Length, types.Length, positions.Length, wpe.Length != 0, sum.Length, nameof(sum), batch, seqLen, dim);
        Embedding.TableRows(wte.Length, dim, nameof(wte), required: true);
        Embedding.TableRows(wpe.Length, dim, nameof(wpe), required: false);
        Embedding.TableRows(wtt.Length, dim, nameof(wtt), required: false);
        int rows = batch * seqLen;
        LayerNorm.ValidateForward(sum.Length, gamma.Length, beta.Length, y.Length, mean.Length, rstd.Length, rows, dim);
        var k = device.Kernel("EmbeddingLayerNorm.Forward", acc => acc.LoadStreamKernel<ArrayView<int>, ArrayView<int>, ArrayView<int>, ArrayView<float>,
            ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>,
            LayerNorm.Args>(ForwardKernel));
        k(WarpRows.Config(device, rows), ids, types, positions, wte, wpe, wtt, sum, gamma, beta, y, mean, rstd, new LayerNorm.Args(rows, dim, eps));
    }
}
