namespace SkTuning.Gpu.Kernels;

// The GEMMs whose B is a frozen weight packed once at load (PackedMatrix): the forward reads the panels in place.
public static unsafe partial class Gemm
{
    /// <summary>Columns of one packed B panel (the micro-kernel's tile width), the layout <see cref="PackedMatrix"/> stores.</summary>
    internal const int PanelWidth = NR;

    /// <summary>
    /// <see cref="NN"/> with B = W [K,N] a frozen weight [in, out] packed at load: no per-call packing of B, so a product with
    /// few rows costs its multiply, not a copy of W.
    /// </summary>
    public static void NNPacked(int m, int n, int k, ReadOnlySpan<float> a, PackedMatrix w, Span<float> c,
        ReadOnlySpan<float> bias = default, bool accumulate = false)
    {
        CheckPacked("Gemm.NNPacked", m, n, k, a.Length, w, k, n, c.Length, bias.Length);
        fixed (float* pa = a) fixed (float* pc = c) fixed (float* pbias = bias)
            Run(m, n, k, pa, k, 1, null, 0, 0, null, w, false, pc, pbias, accumulate);
    }

    /// <summary><see cref="NT"/> with B = W [N,K] a packed frozen weight [in, out] (dX = dY·Wᵀ); B is repacked from it per call.</summary>
    public static void NTPacked(int m, int n, int k, ReadOnlySpan<float> a, PackedMatrix w, Span<float> c,
        ReadOnlySpan<float> bias = default, bool accumulate = false)
    {
        CheckPacked("Gemm.NTPacked", m, n, k, a.Length, w, n, k, c.Length, bias.Length);
        fixed (float* pa = a) fixed (float* pc = c) fixed (float* pbias = bias)
            Run(m, n, k, pa, k, 1, null, 0, 0, null, w, true, pc, pbias, accumulate);
    }

    private static void CheckPacked(string op, int m, int n, int k, int aLen, PackedMatrix w, int rows, int columns, int cLen, int biasLen)
    {
        if (w.Rows != rows || w.Columns != columns)
            throw new ArgumentException($"{op}: the weight is [{w.Rows}, {w.Columns}], expected [{rows}, {columns}] (m={m}, n={n}, k={k})");
        Check(op, m, n, k, aLen, (int)((long)rows * columns), cLen, biasLen, "m*k", "-");
    }

    /// <summary>Packs a row-major B [k, n] into <paramref name="dst"/> (zeroed: the last panel's padding) as the GEMM packs it per call.</summary>
    internal static void PackPanels(int k, int n, float* b, float* dst)
    {
        int panels = (n + NR - 1) / NR;
        var job = new Job { K = k, N = n, B = b, RsB = n, CsB = 1, Bp = dst, Panels = panels };
        for (int jp = 0; jp < panels; jp++) job.PackBPanel(jp);
    }
}
