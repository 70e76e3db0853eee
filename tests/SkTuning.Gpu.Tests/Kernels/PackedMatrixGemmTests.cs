using SkTuning.Gpu.Kernels;
using SkTuning.Gpu.Tests.Support;

namespace SkTuning.Gpu.Tests.Kernels;

/// <summary>The GEMMs whose B operand is a frozen fp32 weight packed once at load (<see cref="PackedMatrix"/>).</summary>
public class PackedMatrixGemmTests
{
    public static TheoryData<bool, int, int, int, bool, bool> Cases()
    {
        var data = new TheoryData<bool, int, int, int, bool, bool>();
        foreach (var nt in new[] { false, true })
            // Few rows (one or two sentences: the latency shapes, run on the caller's thread), odd sizes with a partial
            // last panel, and one well past the parallel threshold (2·m·n·k > 2e6: work items over row blocks and panels).
            foreach (var (m, n, k) in new[] { (1, 48, 16), (8, 96, 64), (12, 144, 384), (24, 50, 37), (3, 5, 7), (67, 131, 45), (300, 480, 128) })
            {
                data.Add(nt, m, n, k, false, false);
                data.Add(nt, m, n, k, true, true);
            }
        return data;
    }

    /// <summary>
    /// Against the fp64 reference on fresh random inputs (C poisoned unless accumulating), element by element within the
    /// worst-case bound of an fp32 sum of K + 2 terms in any order, (K + 2)·2⁻²⁴·Σ|terms| (so it holds at every size
    /// without a tolerance to tune), and bit-identical to the GEMM that packs the same row-major weight per call: the
    /// prepacked panels are the same panels.
    /// </summary>
    [Theory]
    [MemberData(nameof(Cases))]
    public void MatchesReferenceAndThePerCallPackingGemm(bool nt, int m, int n, int k, bool withBias, bool accumulate)
    {
        var rng = new Random(m * 131 + n * 17 + k + (nt ? 5 : 0));
        var a = TestData.Random(rng, m * k);
        var w = TestData.Random(rng, k * n);
        var packed = nt ? PackedMatrix.Pack(w, n, k) : PackedMatrix.Pack(w, k, n);
        var bias = withBias ? TestData.Random(rng, n) : [];
        var c = accumulate ? TestData.Random(rng, m * n) : TestData.Poisoned(m * n);
        var expected = accumulate ? TestData.ToDouble(c) : new double[m * n];
        var magnitude = accumulate ? Abs(TestData.ToDouble(c)) : new double[m * n];
        var perCall = (float[])c.Clone();
        var reference = nt ? (Action<int, int, int, double[], double[], double[], double[]?, bool>)Gemm.NTReference : Gemm.NNReference;
        reference(m, n, k, TestData.ToDouble(a), TestData.ToDouble(w), expected, withBias ? TestData.ToDouble(bias) : null, accumulate);
        reference(m, n, k, Abs(TestData.ToDouble(a)), Abs(TestData.ToDouble(w)), magnitude, withBias ? Abs(TestData.ToDouble(bias)) : null, accumulate);
        if (nt)
        {
            Gemm.NTPacked(m, n, k, a, packed, c, bias, accumulate);
            Gemm.NT(m, n, k, a, w, perCall, bias, accumulate);
        }
        else
        {
            Gemm.NNPacked(m, n, k, a, packed, c, bias, accumulate);
            Gemm.NN(m, n, k, a, w, perCall, bias, accumulate);
        }
        double unit = (k + 2) * Math.Pow(2, -24);
        for (int i = 0; i < c.Length; i++)
            Assert.True(Math.Abs(c[i] - expected[i]) <= unit * magnitude[i],
                $"{(nt ? "NT" : "NN")} {m}x{n}x{k}: element {i} is {c[i]}, expected {expected[i]} (bound {unit * magnitude[i]:G3})");
        Assert.Equal(perCall, c);
    }

    private static double[] Abs(double[] x) => Array.ConvertAll(x, Math.Abs);

    /// <summary>The packed layout keeps every value, the last panel padded: N not a multiple of 48.</summary>
    [Fact]
    public void PackedMatrixHoldsEveryValue()
    {
        var w = TestData.Random(new Random(6), 7 * 50);
        var packed = PackedMatrix.Pack(w, 7, 50);
        for (int r = 0; r < 7; r++)
            for (int c = 0; c < 50; c++) Assert.Equal(w[r * 50 + c], packed[r, c]);
        Assert.Equal(2 * 7 * 48, packed.Length); // two 48-column panels of 7 rows
    }

    [Fact]
    public void BadSizesThrowNamingTheSizes()
    {
        var w = PackedMatrix.Pack(new float[64], 16, 4);
        var ex = Assert.Throws<ArgumentException>(() => Gemm.NNPacked(8, 4, 15, new float[120], w, new float[32]));
        Assert.Contains("Gemm.NNPacked: the weight is [16, 4], expected [15, 4]", ex.Message);
        ex = Assert.Throws<ArgumentException>(() => Gemm.NTPacked(8, 16, 4, new float[32], w, new float[127]));
        Assert.Contains("c has 127 elements", ex.Message);
        ex = Assert.Throws<ArgumentException>(() => PackedMatrix.Pack(new float[63], 16, 4));
        Assert.Contains("63 values, expected rows*columns = 64", ex.Message);
    }
}
