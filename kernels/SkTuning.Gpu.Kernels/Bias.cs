using System.Numerics.Tensors;
using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Runtime;
using SkTuning.Gpu.Kernels.Gpu;

namespace SkTuning.Gpu.Kernels;

/// <summary>Row-broadcast bias: <c>y[r,:] += bias</c> in place; backward <c>dBias += Σ_r dy[r,:]</c>.</summary>
public static class Bias
{
    private static void Validate(long y, long bias, int rows, int dim, string yName, string biasName)
    {
        OpsCheck.Positive(rows, nameof(rows));
        OpsCheck.Positive(dim, nameof(dim));
        OpsCheck.Length(y, (long)rows * dim, yName, $"rows·d = {rows}·{dim}");
        OpsCheck.Length(bias, dim, biasName, "d");
    }

    /// <summary>fp64 reference forward (in place).</summary>
    public static void ForwardReference(Span<double> y, ReadOnlySpan<double> bias, int rows, int dim)
    {
        Validate(y.Length, bias.Length, rows, dim, nameof(y), nameof(bias));
        for (int r = 0; r < rows; r++)
            for (int c = 0; c < dim; c++) y[r * dim + c] += bias[c];
    }

    /// <summary>fp64 reference backward: <c>dBias += Σ_r dy[r,:]</c>.</summary>
    public static void BackwardReference(ReadOnlySpan<double> dy, Span<double> dBias, int rows, int dim)
    {
        for (int r = 0; r < rows; r++)
            for (int c = 0; c < dim; c++) dBias[c] += dy[r * dim + c];
    }

    /// <summary>CPU forward: <c>y[r,:] += bias</c> in place.</summary>
    /// <exception cref="ArgumentException">Sizes disagree.</exception>
    public static unsafe void Forward(Span<float> y, ReadOnlySpan<float> bias, int rows, int dim)
    {
        Validate(y.Length, bias.Length, rows, dim, nameof(y), nameof(bias));
        fixed (float* py = y, pb = bias)
        {
            var Y = new OpsPtr<float>(py); var Bi = new OpsPtr<float>(pb);
            OpsParallel.For(rows, (long)rows * dim, r =>
            {
                var row = Y.Span((long)r * dim, dim);
                TensorPrimitives.Add(row, Bi.Span(0, dim), row);
            });
        }
    }

    /// <summary>CPU backward: <c>dBias += Σ_r dy[r,:]</c>, deterministic (fixed row chunks reduced in order).</summary>
    /// <exception cref="ArgumentException">Sizes disagree.</exception>
    public static unsafe void Backward(ReadOnlySpan<float> dy, Span<float> dBias, int rows, int dim)
    {
        Validate(dy.Length, dBias.Length, rows, dim, nameof(dy), nameof(dBias));
        fixed (float* pd = dy)
        {
            var Dy = new OpsPtr<float>(pd);
            OpsParallel.ReduceRows(rows, dim, dim, dBias, (start, end, acc) =>
            {
                for (int r = start; r < end; r++) TensorPrimitives.Add(acc, Dy.Span((long)r * dim, dim), acc);
            });
        }
    }

    internal static void ForwardKernel(Index1D i, ArrayView<float> y, ArrayView<float> bias, int dim) => y[i] += bias[i % dim];

    /// <summary>Rows per block of the column sums' first stage (MiniLM's 2048 rows × 384 columns: 64 blocks, 24576 threads).</summary>
    internal const int RowsPerBlock = 32;

    /// <summary>
    /// Column sums, stage 1, one thread per (row block, column), consecutive threads on consecutive columns (coalesced):
    /// sums its block's rows in order into <c>target[block, c]</c>, or with <paramref name="accumulate"/> adds to it
    /// (a single block goes straight into dBias).
    /// </summary>
    internal static void ColumnSumsKernel(Index1D index, ArrayView<float> dy, ArrayView<float> target, int rows, int dim, int accumulate)
    {
        int block = index / dim, c = index - block * dim;
        int r0 = block * RowsPerBlock, r1 = XMath.Min(rows, r0 + RowsPerBlock);
        float s = 0;
        for (int r = r0; r < r1; r++) s += dy[(long)r * dim + c];
        target[index] = accumulate != 0 ? target[index] + s : s;
    }

    /// <summary>Column sums, stage 2, one thread per column: adds the blocks' partial sums in block order into dBias.</summary>
    internal static void ReducePartialsKernel(Index1D c, ArrayView<float> partials, ArrayView<float> dBias, int blocks)
    {
        int dim = (int)dBias.Length;
        float s = 0;
        for (int b = 0; b < blocks; b++) s += partials[(long)b * dim + c];
        dBias[c] += s;
    }

    /// <summary>GPU forward: <c>y[r,:] += bias</c> in place.</summary>
    public static void Forward(GpuDevice device, ArrayView<float> y, ArrayView<float> bias, int rows, int dim)
    {
        Validate(y.Length, bias.Length, rows, dim, nameof(y), nameof(bias));
        var k = device.Kernel("Bias.Forward", a => a.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>, int>(ForwardKernel));
        k((int)y.Length, y, bias, dim);
    }

    /// <summary>
    /// GPU backward: <c>dBias += Σ_r dy[r,:]</c> in two deterministic stages (no atomics, identical run to run): per block of
    /// <see cref="RowsPerBlock"/> rows a partial sum per column into a workspace, then the partials in block order; one
    /// thread per column alone would keep only d threads busy, each reading a strided column of all rows.
    /// </summary>
    public static void Backward(GpuDevice device, ArrayView<float> dy, ArrayView<float> dBias, int rows, int dim)
    {
        Validate(dy.Length, dBias.Length, rows, dim, nameof(dy), nameof(dBias));
        var sums = device.Kernel("Bias.ColumnSums", a =>
            a.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>, int, int, int>(ColumnSumsKernel));
        int blocks = (rows + RowsPerBlock - 1) / RowsPerBlock;
        if (blocks == 1)
        {
            sums(dim, dy, dBias, rows, dim, 1);
            return;
        }
        var partials = device.Workspace("Bias.ColumnSums", (long)blocks * dim);
        sums(blocks * dim, dy, partials, rows, dim, 0);
        var reduce = device.Kernel("Bias.ReducePartials", a =>
            a.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>, int>(ReducePartialsKernel));
        reduce(dim, partials, dBias, blocks);
    }
}
