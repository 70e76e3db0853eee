using ILGPU;
using ILGPU.Runtime;
using SkTuning.Gpu.Kernels;
using SkTuning.Gpu.Kernels.Gpu;
using SkTuning.Gpu.Tests.Support;

namespace SkTuning.Gpu.Tests.Kernels;

public class GemmTests
{
    public enum Form { NN, NT, TN }

    private delegate void CpuGemm(int m, int n, int k, ReadOnlySpan<float> a, ReadOnlySpan<float> b, Span<float> c,
        ReadOnlySpan<float> bias, bool accumulate);

    private static CpuGemm Fast(Form f) => f switch
    {
        Form.NN => Gemm.NN,
        Form.NT => Gemm.NT,
        _ => Gemm.TN,
    };

    private static Action<int, int, int, double[], double[], double[], double[]?, bool> Reference(Form f) => f switch
    {
        Form.NN => Gemm.NNReference,
        Form.NT => Gemm.NTReference,
        _ => Gemm.TNReference,
    };

    /// <summary>Fresh random A, B (in the form's storage layout), bias, C0 (random when accumulating, else NaN) and the fp64 expectation.</summary>
    internal static (float[] a, float[] b, float[] bias, float[] c, double[] expected) Case(Form f, int m, int n, int k,
        bool withBias, bool accumulate, int seed)
    {
        var rng = new Random(seed);
        var a = TestData.Random(rng, m * k);
        var b = TestData.Random(rng, k * n);
        var bias = withBias ? TestData.Random(rng, n) : Array.Empty<float>();
        var c = accumulate ? TestData.Random(rng, m * n) : TestData.Poisoned(m * n);
        var expected = accumulate ? TestData.ToDouble(c) : new double[m * n];
        Reference(f)(m, n, k, TestData.ToDouble(a), TestData.ToDouble(b), expected, withBias ? TestData.ToDouble(bias) : null, accumulate);
        return (a, b, bias, c, expected);
    }

    /// <summary>
    /// The fast path's error is that of a sequential fp32 FMA sum: within a K chunk (up to 384 terms) it computes exactly
    /// that, bit for bit (<see cref="FastPathIsTheSequentialFmaSumWithinAKChunk"/>). MaxRelError floors |expected| at
    /// 1e-3·max, so a near-zero element is judged against ~1e-7·max, the rounding noise of a sum of K terms of size ~max,
    /// which grows like √K: over 40 seeds at M×N = 130×96 a sequential FMA loop reaches at most 1.3e-4 (K = 100),
    /// 1.7e-4 (128), 2.5e-4 (200), 3.4e-4 (300-385), 3.9e-4 (769); the bound is 2e-4 up to K = 64, then 2e-4·√(K/64)
    /// (2.8e-4, 3.5e-4, 4.9e-4, 6.9e-4 at those K).
    /// </summary>
    internal static double Tolerance(int k) => 2e-4 * Math.Max(1.0, Math.Sqrt(k / 64.0));

    public static TheoryData<Form, int, int, int, bool, bool> CpuCases()
    {
        var data = new TheoryData<Form, int, int, int, bool, bool>();
        // (1101, 100, 769): 9 row blocks of 128 evened out to 10 on two cores, M not a multiple of 8, K in 3 chunks of 257/256/256.
        var sizes = new[] { (1, 1, 1), (3, 5, 7), (67, 131, 45), (130, 257, 385), (9, 100, 300), (1101, 100, 769) };
        foreach (var f in Enum.GetValues<Form>())
            foreach (var (m, n, k) in sizes)
                foreach (var bias in new[] { false, true })
                    foreach (var acc in new[] { false, true })
                        data.Add(f, m, n, k, bias, acc);
        return data;
    }

    [Theory]
    [MemberData(nameof(CpuCases))]
    public void CpuMatchesReference(Form f, int m, int n, int k, bool withBias, bool accumulate)
    {
        var (a, b, bias, c, expected) = Case(f, m, n, k, withBias, accumulate, seed: m * 7919 + n * 31 + k);
        Fast(f)(m, n, k, a, b, c, bias, accumulate);
        Assert.True(TestData.MaxRelError(c, expected) <= Tolerance(k), $"{f} {m}x{n}x{k}: rel err {TestData.MaxRelError(c, expected)}");
    }

    [Theory]
    [InlineData(Form.NN)]
    [InlineData(Form.NT)]
    [InlineData(Form.TN)]
    public void Vector256FallbackMatchesReference(Form f)
    {
        Gemm.ForceVector256 = true;
        try
        {
            foreach (var (m, n, k) in new[] { (3, 5, 7), (67, 131, 45), (1101, 100, 769) })
            {
                var (a, b, bias, c, expected) = Case(f, m, n, k, withBias: true, accumulate: true, seed: 5);
                Fast(f)(m, n, k, a, b, c, bias, true);
                Assert.True(TestData.MaxRelError(c, expected) <= Tolerance(k), $"{f} {m}x{n}x{k}: rel err {TestData.MaxRelError(c, expected)}");
            }
        }
        finally
        {
            Gemm.ForceVector256 = false;
        }
    }

    /// <summary>
    /// Within one K chunk the blocked GEMM is the plain sequential FMA sum over p = 0..K-1, bit for bit (the 512-bit kernel
    /// and the 256-bit fallback): the accumulation order is the reference's, only in fp32.
    /// </summary>
    [Theory]
    [InlineData(false, 1)]
    [InlineData(false, 300)]
    [InlineData(false, 384)]
    [InlineData(true, 300)]
    public void FastPathIsTheSequentialFmaSumWithinAKChunk(bool vector256, int k)
    {
        const int m = 67, n = 131;
        var rng = new Random(k + (vector256 ? 1 : 0));
        var a = TestData.Random(rng, m * k);
        var b = TestData.Random(rng, k * n);
        var c = TestData.Poisoned(m * n);
        Gemm.ForceVector256 = vector256;
        try
        {
            Gemm.NN(m, n, k, a, b, c);
        }
        finally
        {
            Gemm.ForceVector256 = false;
        }
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++)
            {
                float s = 0;
                for (int p = 0; p < k; p++) s = MathF.FusedMultiplyAdd(a[i * k + p], b[p * n + j], s);
                Assert.True(s == c[i * n + j], $"C[{i},{j}] = {c[i * n + j]}, the sequential FMA sum is {s}");
            }
    }

    /// <summary>K is cut into the fewest chunks of at most 384, as equal as possible: one pass over C for K ≤ 384.</summary>
    [Theory]
    [InlineData(1, 1)]
    [InlineData(384, 384)]
    [InlineData(385, 193)]
    [InlineData(769, 257)]
    [InlineData(1536, 384)]
    [InlineData(2432, 348)]
    public void KChunksAreFewAndEven(int k, int chunk)
    {
        Assert.Equal(chunk, Gemm.KChunk(k));
        Assert.Equal((k + Gemm.MaxKC - 1) / Gemm.MaxKC, (k + chunk - 1) / chunk);
    }

    /// <summary>
    /// The work items cover every (row, panel) of C exactly once, row blocks hold whole 8-row micro-panels (the last may be
    /// short), at most MC rows; where rows alone are split (many row blocks), their number is a multiple of the cores and
    /// their sizes differ by at most one micro-panel, so the cores finish together.
    /// </summary>
    [Theory]
    [InlineData(1, 1, 1)]
    [InlineData(7, 100, 300)]
    [InlineData(129, 1152, 384)]
    [InlineData(1101, 100, 769)]
    [InlineData(2048, 1536, 384)]
    [InlineData(2432, 1152, 384)]
    [InlineData(2432, 384, 1536)]
    [InlineData(5003, 48, 64)]
    public void WorkSplitCoversCOnceInBalancedBlocks(int m, int n, int k)
    {
        int panels = (n + Gemm.NR - 1) / Gemm.NR;
        var split = Gemm.Split(m, n, k, panels);
        var covered = new int[m, panels];
        var rowsPerBlock = new HashSet<int>();
        for (int item = 0; item < split.Items; item++)
        {
            split.Block(item, out int i0, out int mc, out int jp0, out int jp1);
            Assert.True(mc >= 1 && mc <= Gemm.MC && i0 % Gemm.MR == 0, $"item {item}: rows {i0}+{mc}");
            Assert.True(i0 + mc == m || mc % Gemm.MR == 0, $"item {item}: a short block {i0}+{mc} before the end");
            if (i0 + mc < m) rowsPerBlock.Add(mc);
            for (int i = i0; i < i0 + mc; i++)
                for (int jp = jp0; jp < jp1; jp++) covered[i, jp]++;
        }
        foreach (int count in covered) Assert.Equal(1, count);
        if (split.Parallel && split.NBlocks == 1)
        {
            Assert.Equal(0, split.Items % Environment.ProcessorCount);
            Assert.True(rowsPerBlock.Count == 0 || rowsPerBlock.Max() - rowsPerBlock.Min() <= Gemm.MR, string.Join(",", rowsPerBlock));
        }
    }

    [Fact]
    public void NaiveMatchesReference()
    {
        var (a, b, bias, c, expected) = Case(Form.NN, 37, 45, 29, withBias: true, accumulate: true, seed: 3);
        Gemm.NNNaive(37, 45, 29, a, b, c, bias, accumulate: true);
        Assert.True(TestData.MaxRelError(c, expected) <= 1e-4);
    }

    [Fact]
    public void ZeroInnerDimensionGivesBias()
    {
        var c = TestData.Poisoned(6);
        Gemm.NN(2, 3, 0, [], [], c, [1f, 2f, 3f]);
        Assert.Equal(new[] { 1f, 2f, 3f, 1f, 2f, 3f }, c);
    }

    [Fact]
    public void ReferencesMatchHandComputed2x2()
    {
        // A = [1 2; 3 4], B = [5 6; 7 8]: A·B = [19 22; 43 50], A·Bᵀ = [17 23; 39 53], Aᵀ·B = [26 30; 38 44].
        double[] a = [1, 2, 3, 4], b = [5, 6, 7, 8];
        var c = new double[4];
        Gemm.NNReference(2, 2, 2, a, b, c);
        Assert.Equal(new double[] { 19, 22, 43, 50 }, c);
        Gemm.NTReference(2, 2, 2, a, b, c);
        Assert.Equal(new double[] { 17, 23, 39, 53 }, c);
        Gemm.TNReference(2, 2, 2, a, b, c);
        Assert.Equal(new double[] { 26, 30, 38, 44 }, c);
        // bias and accumulate: C = [26 30; 38 44] + Aᵀ·B + [1 -1] per row.
        Gemm.TNReference(2, 2, 2, a, b, c, [1, -1], accumulate: true);
        Assert.Equal(new double[] { 53, 59, 77, 87 }, c);
    }

    [Fact]
    public void BadSizesThrowNamingTheSizes()
    {
        var ex = Assert.Throws<ArgumentException>(() => Gemm.NN(8, 4, 16, new float[100], new float[64], new float[32]));
        Assert.Contains("a has 100 elements, expected m*k = 128", ex.Message);
        ex = Assert.Throws<ArgumentException>(() => Gemm.NT(8, 4, 16, new float[128], new float[63], new float[32]));
        Assert.Contains("b has 63 elements, expected n*k = 64", ex.Message);
        ex = Assert.Throws<ArgumentException>(() => Gemm.TN(8, 4, 16, new float[128], new float[64], new float[31]));
        Assert.Contains("c has 31 elements, expected m*n = 32", ex.Message);
        ex = Assert.Throws<ArgumentException>(() => Gemm.NN(8, 4, 16, new float[128], new float[64], new float[32], new float[3]));
        Assert.Contains("bias has 3 elements, expected n = 4", ex.Message);
        ex = Assert.Throws<ArgumentException>(() => Gemm.NN(-1, 4, 16, [], new float[64], []));
        Assert.Contains("m=-1", ex.Message);
    }

    // ---------------------------------------------------------------- ILGPU

    [Fact]
    public void GpuKernelCompilesToPtx()
    {
        using var ptx = new PtxCompiler();
        var text = ptx.CompileExplicitlyGrouped(GemmGpu.KernelMethod);
        Assert.Contains(".entry", text);
        Assert.Contains(".shared", text);
    }

    [Fact]
    public void FirstTierMatchesReferenceOnSimulator()
    {
        using var device = GpuDevice.CreateCpuSimulator();
        // Tiny sizes: the simulator runs barriers very slowly. 70 rows span two 64-row tiles.
        foreach (var (f, m, n, k, withBias, accumulate) in new[]
        {
            (Form.NN, 70, 29, 23, true, false), (Form.NN, 5, 3, 17, false, true),
            (Form.NT, 37, 29, 23, false, false), (Form.NT, 5, 66, 4, true, true),
            (Form.TN, 37, 29, 23, true, true), (Form.TN, 3, 5, 33, false, false),
        })
        {
            var (a, b, bias, c, expected) = Case(f, m, n, k, withBias, accumulate, seed: m + n + k);
            using var da = device.Accelerator.Allocate1D(a);
            using var db = device.Accelerator.Allocate1D(b);
            using var dc = device.Accelerator.Allocate1D(c);
            using var dbias = device.Accelerator.Allocate1D<float>(Math.Max(bias.Length, 1));
            if (withBias) dbias.CopyFromCPU(bias);
            var biasView = withBias ? dbias.View : default;
            switch (f)
            {
                case Form.NN: GemmGpu.NN(device, m, n, k, da.View, db.View, dc.View, biasView, accumulate, GemmTier.Tiled64); break;
                case Form.NT: GemmGpu.NT(device, m, n, k, da.View, db.View, dc.View, biasView, accumulate, GemmTier.Tiled64); break;
                default: GemmGpu.TN(device, m, n, k, da.View, db.View, dc.View, biasView, accumulate, GemmTier.Tiled64); break;
            }
            device.Synchronize();
            var got = dc.GetAsArray1D();
            Assert.True(TestData.MaxRelError(got, expected) <= 1e-4, $"{f} {m}x{n}x{k}: rel err {TestData.MaxRelError(got, expected)}");
        }
    }

    [Fact]
    public void GpuLauncherRejectsBadSizes()
    {
        using var device = GpuDevice.CreateCpuSimulator();
        using var a = device.Accelerator.Allocate1D<float>(10);
        using var b = device.Accelerator.Allocate1D<float>(12);
        using var c = device.Accelerator.Allocate1D<float>(6);
        var ex = Assert.Throws<ArgumentException>(() => GemmGpu.NN(device, 2, 3, 4, a.View, b.View, c.View));
        Assert.Contains("a has 10 elements, expected m*k = 8", ex.Message);
    }
}
