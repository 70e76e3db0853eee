using System.Numerics.Tensors;
using ILGPU;
using ILGPU.Runtime;
using SkTuning.Gpu.Kernels.Gpu;

namespace SkTuning.Gpu.Kernels;

/// <summary>
/// A column block of a row-major matrix: <c>matrix</c> is <c>[rows, columns]</c>, the block <c>[rows, width]</c> covers its
/// columns <c>column0 .. column0 + width − 1</c>. Forward (strided add) <c>matrix[r, column0 + c] += scale·block[r, c]</c>;
/// backward (strided extract, accumulating) <c>dBlock[r, c] += scale·dMatrix[r, column0 + c]</c>.
/// LoRA uses it to add its low-rank update into the query or value part of the fused QKV buffer [rows, 3d].
/// </summary>
public static class ColumnBlock
{
    internal readonly struct Args
    {
        public readonly int Width, Columns, Column0;
        public readonly float Scale;
        public Args(int width, int columns, int column0, float scale) { Width = width; Columns = columns; Column0 = column0; Scale = scale; }
    }

    private static void Validate(long block, long matrix, int rows, int width, int columns, int column0, string blockName, string matrixName)
    {
        OpsCheck.Positive(rows, nameof(rows));
        OpsCheck.Positive(width, nameof(width));
        OpsCheck.NonNegative(column0, nameof(column0));
        if ((long)column0 + width > columns)
            throw new ArgumentException($"column block [{column0}, {column0 + width}) does not fit in {columns} columns", nameof(column0));
        OpsCheck.Length(block, (long)rows * width, blockName, $"rows·width = {rows}·{width}");
        OpsCheck.Length(matrix, (long)rows * columns, matrixName, $"rows·columns = {rows}·{columns}");
    }

    // ---------------------------------------------------------------- fp64 reference

    /// <summary>fp64 reference forward: <c>matrix[r, column0 + c] += scale·block[r, c]</c>.</summary>
    public static void ForwardReference(ReadOnlySpan<double> block, Span<double> matrix, int rows, int width, int columns, int column0, double scale)
    {
        Validate(block.Length, matrix.Length, rows, width, columns, column0, nameof(block), nameof(matrix));
        for (int r = 0; r < rows; r++)
            for (int c = 0; c < width; c++) matrix[r * columns + column0 + c] += scale * block[r * width + c];
    }

    /// <summary>fp64 reference backward: <c>dBlock[r, c] += scale·dMatrix[r, column0 + c]</c>.</summary>
    public static void BackwardReference(ReadOnlySpan<double> dMatrix, Span<double> dBlock, int rows, int width, int columns, int column0, double scale)
    {
        Validate(dBlock.Length, dMatrix.Length, rows, width, columns, column0, nameof(dBlock), nameof(dMatrix));
        for (int r = 0; r < rows; r++)
            for (int c = 0; c < width; c++) dBlock[r * width + c] += scale * dMatrix[r * columns + column0 + c];
    }

    // ---------------------------------------------------------------- CPU

    /// <summary>CPU forward: <c>matrix[r, column0 + c] += scale·block[r, c]</c> (SIMD per row, parallel over rows).</summary>
    /// <exception cref="ArgumentException">Sizes disagree or the block does not fit.</exception>
    public static unsafe void Forward(ReadOnlySpan<float> block, Span<float> matrix, int rows, int width, int columns, int column0, float scale)
    {
        Validate(block.Length, matrix.Length, rows, width, columns, column0, nameof(block), nameof(matrix));
        fixed (float* pb = block, pm = matrix)
        {
            var Bl = new OpsPtr<float>(pb); var M = new OpsPtr<float>(pm);
            OpsParallel.For(rows, (long)rows * width, r =>
            {
                var dst = M.Span((long)r * columns + column0, width);
                TensorPrimitives.MultiplyAdd(Bl.Span((long)r * width, width), scale, dst, dst);
            });
        }
    }

    /// <summary>CPU backward: <c>dBlock[r, c] += scale·dMatrix[r, column0 + c]</c>.</summary>
    /// <exception cref="ArgumentException">Sizes disagree or the block does not fit.</exception>
    public static unsafe void Backward(ReadOnlySpan<float> dMatrix, Span<float> dBlock, int rows, int width, int columns, int column0, float scale)
    {
        Validate(dBlock.Length, dMatrix.Length, rows, width, columns, column0, nameof(dBlock), nameof(dMatrix));
        fixed (float* pb = dBlock, pm = dMatrix)
        {
            var Bl = new OpsPtr<float>(pb); var M = new OpsPtr<float>(pm);
            OpsParallel.For(rows, (long)rows * width, r =>
            {
                var dst = Bl.Span((long)r * width, width);
                TensorPrimitives.MultiplyAdd(M.Span((long)r * columns + column0, width), scale, dst, dst);
            });
        }
    }

    // ---------------------------------------------------------------- ILGPU

    internal static void ForwardKernel(Index1D i, ArrayView<float> block, ArrayView<float> matrix, Args a)
    {
        int r = i / a.Width, c = i - r * a.Width;
        matrix[(long)r * a.Columns + a.Column0 + c] += a.Scale * block[i];
    }

    internal static void BackwardKernel(Index1D i, ArrayView<float> dMatrix, ArrayView<float> dBlock, Args a)
    {
        int r = i / a.Width, c = i - r * a.Width;
        dBlock[i] += a.Scale * dMatrix[(long)r * a.Columns + a.Column0 + c];
    }

    /// <summary>GPU forward: <c>matrix[r, column0 + c] += scale·block[r, c]</c>.</summary>
    /// <exception cref="ArgumentException">Sizes disagree or the block does not fit.</exception>
    public static void Forward(GpuDevice device, ArrayView<float> block, ArrayView<float> matrix, int rows, int width, int columns, int column0, float scale)
    {
        Validate(block.Length, matrix.Length, rows, width, columns, column0, nameof(block), nameof(matrix));
        var k = device.Kernel("ColumnBlock.Forward", acc => acc.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>, Args>(ForwardKernel));
        k(rows * width, block, matrix, new Args(width, columns, column0, scale));
    }

    /// <summary>GPU backward: <c>dBlock[r, c] += scale·dMatrix[r, column0 + c]</c>.</summary>
    /// <exception cref="ArgumentException">Sizes disagree or the block does not fit.</exception>
    public static void Backward(GpuDevice device, ArrayView<float> dMatrix, ArrayView<float> dBlock, int rows, int width, int columns, int column0, float scale)
    {
        Validate(dBlock.Length, dMatrix.Length, rows, width, columns, column0, nameof(dBlock), nameof(dMatrix));
        var k = device.Kernel("ColumnBlock.Backward", acc => acc.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>, Args>(BackwardKernel));
        k(rows * width, dMatrix, dBlock, new Args(width, columns, column0, scale));
    }
}
