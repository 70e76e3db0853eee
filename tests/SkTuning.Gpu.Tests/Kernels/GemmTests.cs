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
    /// 1e-4 up to K = 128, growing linearly beyond: MaxRelError floors |expected| at 1e-3·max, so a near-zero element
    /// is judged against ~1e-7·max, which is the rounding noise of an fp32 sum of K terms of size ~max. A plain sequential
    /// fp32 FMA loop already reaches 1.3e-4 … 2e-4 at K = 385 (the blocked kernel's RMS error is lower than that loop's).
    /// </summary>
    private static double Tolerance(int k) => 1e-4 * Math.Max(1.0, k / 128.0);

    public static TheoryData<Form, int, int, int, bool, bool> CpuCases()
    {
        var data = new TheoryData<Form, int, int, int, bool, bool>();
        var sizes = new[] { (1, 1, 1), (3, 5, 7), (67, 131, 45), (130, 257, 385), (9, 100, 300) };
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
            foreach (var (m, n, k) in new[] { (3, 5, 7), (67, 131, 45) })
            {
                var (a, b, bias, c, expected) = Case(f, m, n, k, withBias: true, accumulate: true, seed: 5);
                Fast(f)(m, n, k, a, b, c, bias, true);
                Assert.True(TestData.MaxRelError(c, expected) <= 1e-4);
            }
        }
        finally
        {
            Gemm.ForceVector256 = false;
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
