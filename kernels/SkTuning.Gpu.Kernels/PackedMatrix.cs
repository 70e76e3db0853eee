namespace SkTuning.Gpu.Kernels;

/// <summary>
/// A frozen fp32 weight matrix W [rows, columns] (stored [in, out]: y = x·W) kept in the CPU GEMM's B-panel layout, packed
/// once at load: panels of <see cref="PanelWidth"/> columns, each [rows][48] floats, the last panel zero-padded. The
/// forward GEMM (<see cref="Gemm.NNPacked"/>) reads the panels as they lie — a GEMM with few rows (one sentence) would
/// otherwise spend more time packing W per call than multiplying; the input-gradient GEMM (<see cref="Gemm.NTPacked"/>,
/// dY·Wᵀ) repacks from them per call. Bytes: 4 per value plus the padding.
/// </summary>
public sealed unsafe class PackedMatrix
{
    /// <summary>Columns per panel: the micro-kernel's tile width.</summary>
    internal const int PanelWidth = Gemm.PanelWidth;

    private readonly float[] _values;

    private PackedMatrix(int rows, int columns)
    {
        Rows = rows;
        Columns = columns;
        // Pinned (and never moved): the GEMMs read it through a pointer. Zeroed: the last panel's padding.
        _values = GC.AllocateArray<float>(Math.Max(1, checked(Panels * rows * PanelWidth)), pinned: true);
    }

    /// <summary>Rows of W (the input width of x·W).</summary>
    public int Rows { get; }

    /// <summary>Columns of W (the output width of x·W).</summary>
    public int Columns { get; }

    /// <summary>Floats held, padding included.</summary>
    public int Length => _values.Length;

    internal int Panels => (Columns + PanelWidth - 1) / PanelWidth;

    /// <summary>The first value of panel 0; panel q starts <c>q·Rows·PanelWidth</c> floats further.</summary>
    internal float* Values => (float*)System.Runtime.CompilerServices.Unsafe.AsPointer(ref _values[0]);

    /// <summary>W [rows, columns] row-major, packed.</summary>
    /// <exception cref="ArgumentException">The length is not rows·columns.</exception>
    public static PackedMatrix Pack(ReadOnlySpan<float> w, int rows, int columns)
    {
        if (rows < 0 || columns < 0 || w.Length != (long)rows * columns)
            throw new ArgumentException($"PackedMatrix.Pack: {w.Length} values, expected rows*columns = {(long)rows * columns} (rows={rows}, columns={columns})");
        var packed = new PackedMatrix(rows, columns);
        if (w.Length > 0)
            fixed (float* source = w)
                Gemm.PackPanels(rows, columns, source, packed.Values);
        return packed;
    }

    /// <summary>W[row, column] as stored, for tests and references.</summary>
    public float this[int row, int column]
    {
        get
        {
            if ((uint)row >= (uint)Rows || (uint)column >= (uint)Columns)
                throw new ArgumentOutOfRangeException(nameof(row), $"({row}, {column}) outside [{Rows}, {Columns}]");
            return _values[(column / PanelWidth) * Rows * PanelWidth + row * PanelWidth + column % PanelWidth];
        }
    }
}
