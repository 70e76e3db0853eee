using System.Runtime.Intrinsics;

namespace SkTuning.Gpu.Kernels;

/// <summary>
/// A frozen weight matrix W [rows, columns] (stored [in, out]: y = x·W) in bf16, rounded to nearest even once and kept in
/// the bf16 GEMM kernel's B layout, so the forward GEMM reads it as it lies: panels of 48 columns, each [rows/2][48]
/// 32-bit words holding the pair (W[2p, j], W[2p+1, j]) — low half the even row — with the columns padded to a multiple
/// of 48 and an odd row count padded by a zero row. The backward GEMM (dY·Wᵀ) and the widening fallback repack from it
/// per call (<see cref="Gemm.NNBf16"/>, <see cref="Gemm.NTBf16"/>). Bytes: 2 per value plus that padding.
/// </summary>
public sealed unsafe class PackedBf16Matrix : PanelMatrix<uint>
{
    /// <summary>Columns per panel: the kernel's tile width (<see cref="Bf16DotKernel.NR"/>).</summary>
    internal const int PanelWidth = Bf16DotKernel.NR;

    private PackedBf16Matrix(int rows, int columns) : base(rows, columns, PanelWidth, (rows + 1) / 2) { }

    /// <summary>Bytes held, padding included.</summary>
    public long Bytes => Elements.Length * 4L;

    internal int RowPairs => (Rows + 1) / 2;

    /// <summary>The first word of panel 0; panel q starts <c>q·RowPairs·PanelWidth</c> words further.</summary>
    internal uint* Words => Start;

    /// <summary>W [rows, columns] row-major, rounded to bf16 (nearest even) and packed.</summary>
    /// <exception cref="ArgumentException">The length is not rows·columns.</exception>
    public static PackedBf16Matrix Pack(ReadOnlySpan<float> w, int rows, int columns)
    {
        CheckSource(nameof(PackedBf16Matrix), w.Length, rows, columns);
        var packed = new PackedBf16Matrix(rows, columns);
        uint* words = packed.Words;
        int rowPairs = packed.RowPairs;
        fixed (float* source = w)
        {
            float* src = source;
            // One panel per iteration: a 1B model's matrices are ~1e9 values, packed once at load on all cores.
            Parallel.For(0, packed.Panels, KernelParallelism.Options, q =>
            {
                int j0 = q * PanelWidth, width = Math.Min(PanelWidth, columns - j0);
                uint* panel = words + (long)q * rowPairs * PanelWidth;
                for (int p = 0; p < rows; p++)
                {
                    float* row = src + (long)p * columns + j0;
                    uint* d = panel + (p / 2) * PanelWidth;
                    int shift = 16 * (p & 1);
                    for (int j = 0; j < width; j++) d[j] |= (uint)BFloat16.FromFloat(row[j]) << shift;
                }
            });
        }
        return packed;
    }

    /// <summary>W[row, column] as stored (the bf16 value widened to fp32), for tests and references.</summary>
    public float this[int row, int column]
    {
        get
        {
            CheckIndex(row, column);
            uint word = Elements[(column / PanelWidth) * RowPairs * PanelWidth + (row / 2) * PanelWidth + column % PanelWidth];
            return BFloat16.ToFloat((ushort)(word >> (16 * (row & 1))));
        }
    }

    /// <summary>
    /// Row <paramref name="row"/> of W within the panel starting at <paramref name="panel"/> (48 values, zero past the last
    /// column), each bf16 value in the low half of a lane: the building block of the vdpbf16ps path's transposed repack
    /// (AVX-512 hardware only).
    /// </summary>
    internal static void PanelRow(uint* panel, int row, out Vector512<uint> v0, out Vector512<uint> v1, out Vector512<uint> v2)
    {
        uint* src = panel + (row / 2) * PanelWidth;
        int shift = 16 * (row & 1);
        var low = Vector512.Create(0xFFFFu);
        v0 = (Vector512.Load(src) >> shift) & low;
        v1 = (Vector512.Load(src + 16) >> shift) & low;
        v2 = (Vector512.Load(src + 32) >> shift) & low;
    }
}
