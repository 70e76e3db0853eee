using System.Runtime.CompilerServices;

namespace SkTuning.Gpu.Kernels;

/// <summary>
/// A frozen weight matrix W [rows, columns] (stored [in, out]: y = x·W) packed once at load into a GEMM kernel's B-panel
/// layout: panels of a fixed number of columns (the kernel's tile width), the last one zero-padded, held in one pinned
/// array so the GEMMs read it through a pointer. <see cref="PackedMatrix"/> (fp32) and <see cref="PackedBf16Matrix"/>
/// (bf16 row pairs) differ only in what one panel row holds.
/// </summary>
/// <typeparam name="T">The stored element: a float, or a 32-bit word of two bf16 values.</typeparam>
public abstract unsafe class PanelMatrix<T> where T : unmanaged
{
    private readonly int _panelWidth;

    /// <summary>The panels, panel after panel, pinned and zeroed before packing (the padding).</summary>
    private protected readonly T[] Elements;

    /// <param name="rows">Rows of W.</param>
    /// <param name="columns">Columns of W.</param>
    /// <param name="panelWidth">Columns per panel.</param>
    /// <param name="panelRows">Stored rows per panel (rows, or row pairs for bf16).</param>
    private protected PanelMatrix(int rows, int columns, int panelWidth, int panelRows)
    {
        Rows = rows;
        Columns = columns;
        _panelWidth = panelWidth;
        Elements = GC.AllocateArray<T>(Math.Max(1, checked(Panels * panelRows * panelWidth)), pinned: true);
    }

    /// <summary>Rows of W (the input width of x·W).</summary>
    public int Rows { get; }

    /// <summary>Columns of W (the output width of x·W).</summary>
    public int Columns { get; }

    internal int Panels => (Columns + _panelWidth - 1) / _panelWidth;

    /// <summary>The first element of panel 0.</summary>
    private protected T* Start => (T*)Unsafe.AsPointer(ref Elements[0]);

    /// <summary>Refuses a source whose length is not rows·columns, naming <paramref name="type"/>'s Pack.</summary>
    /// <exception cref="ArgumentException">The length is not rows·columns.</exception>
    private protected static void CheckSource(string type, int length, int rows, int columns)
    {
        if (rows < 0 || columns < 0 || length != (long)rows * columns)
            throw new ArgumentException($"{type}.Pack: {length} values, expected rows*columns = {(long)rows * columns} (rows={rows}, columns={columns})");
    }

    /// <summary>Refuses an index outside W.</summary>
    /// <exception cref="ArgumentOutOfRangeException">(row, column) is outside [Rows, Columns].</exception>
    private protected void CheckIndex(int row, int column)
    {
        if ((uint)row >= (uint)Rows || (uint)column >= (uint)Columns)
            throw new ArgumentOutOfRangeException(nameof(row), $"({row}, {column}) outside [{Rows}, {Columns}]");
    }
}
