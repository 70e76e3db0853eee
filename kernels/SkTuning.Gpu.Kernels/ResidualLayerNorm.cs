using System.Numerics.Tensors;
using ILGPU;
using ILGPU.Runtime;
using SkTuning.Gpu.Kernels.Gpu;

namespace SkTuning.Gpu.Kernels;

/// <summary>
/// A residual sum and the LayerNorm of it, the seam of every post-norm sublayer (and of the pre-norm block's middle):
/// <c>sum = x + residual</c> (saved: it is what the LayerNorm backward reads), <c>y = LayerNorm(sum)</c> with mean and
/// rstd saved as <see cref="LayerNorm"/> does. <c>sum</c> may alias <c>x</c>. The backward is <see cref="LayerNorm"/>'s (the
/// sum passes the gradient to both operands unchanged). On the GPU one launch instead of a residual kernel and a
/// LayerNorm kernel (one warp per row reads the operands once, the sum stays in the warp's lanes).
/// </summary>
public static class ResidualLayerNorm
{
    private static void Validate(long x, long residual, long sum, int rows, int dim)
    {
        string shape = $"rows·d = {rows}·{dim}";
        OpsCheck.Length(x, (long)rows * dim, nameof(x), shape);
        OpsCheck.Length(residual, (long)rows * dim, nameof(residual), shape);
        OpsCheck.Length(sum, (long)rows * dim, nameof(sum), shape);
    }

    /// <summary>fp64 reference.</summary>
    public static void ForwardReference(ReadOnlySpan<double> x, ReadOnlySpan<double> residual, Span<double> sum, ReadOnlySpan<double> gamma,
        ReadOnlySpan<double> beta, Span<double> y, Span<double> mean, Span<double> rstd, int rows, int dim, double eps)
    {
        Validate(x.Length, residual.Length, sum.Length, rows, dim);
        for (int i = 0; i < sum.Length; i++) sum[i] = x[i] + residual[i];
        LayerNorm.ForwardReference(sum, gamma, beta, y, mean, rstd, rows, dim, eps);
    }

    /// <summary>
    /// CPU: one pass per row (parallel over rows): the row's residual sum, then its LayerNorm while the row is in L1
    /// (instead of a residual pass over the whole tensor and a LayerNorm pass reading it back).
    /// </summary>
    public static unsafe void Forward(ReadOnlySpan<float> x, ReadOnlySpan<float> residual, Span<float> sum, ReadOnlySpan<float> gamma,
        ReadOnlySpan<float> beta, Span<float> y, Span<float> mean, Span<float> rstd, int rows, int dim, float eps)
    {
        Validate(x.Length, residual.Length, sum.Length, rows, dim);
        LayerNorm.ValidateForward(sum.Length, gamma.Length, beta.Length, y.Length, mean.Length, rstd.Length, rows, dim);
        fixed (float* px = x, pr = residual, psum = sum, pg = gamma, pb = beta, py = y, pm = mean, ps = rstd)
        {
            var X = new OpsPtr<float>(px); var R = new OpsPtr<float>(pr); var Sum = new OpsPtr<float>(psum);
            var G = new OpsPtr<float>(pg); var Be = new OpsPtr<float>(pb); var Y = new OpsPtr<float>(py);
            var M = new OpsPtr<float>(pm); var S = new OpsPtr<float>(ps);
            OpsParallel.For(rows, (long)rows * dim * 5, r =>
            {
                long o = (long)r * dim;
                TensorPrimitives.Add(X.Span(o, dim), R.Span(o, dim), Sum.Span(o, dim));
                LayerNorm.ForwardRow(Sum, G, Be, Y, o, dim, eps, out M[r], out S[r]);
            });
        }
    }

    /// <summary>One warp per row (<see cref="WarpRows"/>): each lane sums its columns, then the row's statistics by shuffles.</summary>
    internal static void ForwardKernel(ArrayView<float> x, ArrayView<float> residual, ArrayView<float> sum, ArrayView<float> gamma,
        ArrayView<float> beta, ArrayView<float> y, ArrayView<float> mean, ArrayView<float> rstd, LayerNorm.Args a)
    {
        int r = WarpRows.Row();
        if (r >= a.Rows) return;   // whole warps leave together
        long o = (long)r * a.Dim;
        float laneSum = 0;
        for (int c = Warp.LaneIdx; c < a.Dim; c += Warp.WarpSize)
        {
            float s = x[o + c] + residual[o + c];
            sum[o + c] = s;
            laneSum += s;
        }
        LayerNorm.NormalizeWarpRow(r, laneSum, sum, gamma, beta, y, mean, rstd, a);
    }

    /// <summary>GPU: one launch.</summary>
    public static void Forward(GpuDevice device, ArrayView<float> x, ArrayView<float> residual, ArrayView<float> sum, ArrayView<float> gamma,
        ArrayView<float> beta, ArrayView<float> y, ArrayView<float> mean, ArrayView<float> rstd, int rows, int dim, float eps)
    {
        Validate(x.Length, residual.Length, sum.Length, rows, dim);
        LayerNorm.ValidateForward(sum.Length, gamma.Length, beta.Length, y.Length, mean.Length, rstd.Length, rows, dim);
        var k = device.Kernel("ResidualLayerNorm.Forward", acc => acc.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>,
            ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, LayerNorm.Args>(ForwardKernel));
        k(WarpRows.Config(device, rows), x, residual, sum, gamma, beta, y, mean, rstd, new LayerNorm.Args(rows, dim, eps));
    }
}
