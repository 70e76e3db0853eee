namespace SkTuning.Gpu.Kernels;

/// <summary>
/// A frozen fp32 weight matrix W [rows, columns] (stored [in, out]: y = x·W) kept in the CPU GEMM's B-panel layout, packed
/// once at load: panels of <see cref="PanelWidth"/> columns, each [rows][48] floats, the last panel zero-padded. The
/// forward GEMM (<see cref="Gemm.NNPacked"/>) reads the panels as they lie — a GEMM with few rows (one sentence) would
/// otherwise spend more time packing W per call than multiplying; the input-gradient GEMM (<see cref="Gemm.NTPacked"/>,
/// dY·Wᵀ) repacks from them per call. Bytes: 4 per value plus the padding.
/// </summary>
public sealed unsafe class PackedMatrix : PanelMatrix<float>
{
    /// <summary>Columns per panel: the micro-kernel's tile width.</summary>
    internal const int PanelWidth = Gemm.PanelWidth;

    // Zeroed at allocation: the last panel's padding.
    private PackedMatrix(int rows, int columns) : base(rows, columns, PanelWidth, rows) { }

    /// <summary>Floats held, padding included.</summary>
    public int Length => Elements.Length;

    /// <summary>The first value of panel 0; panel q starts <c>q·Rows·PanelWidth</c> floats further.</summary>
    internal float* Values => Start;

    /// <summary>W [rows, columns] row-major, packed.</summary>
    /// <exception cref="ArgumentException">The length is not rows·columns.</exception>
    public static PackedMatrix Pack(ReadOnlySpan<float> w, int rows, int columns)
    {
        CheckSource(nameof(PackedMatrix), w.Length, rows, columns);
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
            CheckIndex(row, column);
            return Elements[(column / PanelWidth) * Rows * PanelWidth + row * PanelWidth + column % PanelWidth];
        }
    }
}
