using SkTuning.Gpu.Kernels;
using SkTuning.Gpu.Tests.Support;

namespace SkTuning.Gpu.Tests.Kernels;

/// <summary>bf16 rounding, and the GEMMs whose B operand (a frozen weight) is stored in bf16.</summary>
public class BFloat16GemmTests
{
    [Theory]
    [InlineData(1f, 0x3F80)]
    [InlineData(-2f, 0xC000)]
    [InlineData(0f, 0x0000)]
    [InlineData(1f + 1f / 256, 0x3F80)]          // exactly halfway between 0x3F80 and 0x3F81: ties to even (down)
    [InlineData(1f + 3f / 256, 0x3F82)]          // halfway between 0x3F81 and 0x3F82: ties to even (up)
    [InlineData(1f + 1f / 256 + 1f / 65536, 0x3F81)] // just above halfway: up
    [InlineData(float.PositiveInfinity, 0x7F80)]
    [InlineData(float.MaxValue, 0x7F80)]          // rounds past the largest finite bf16
    public void RoundsToNearestEven(float value, int bits) => Assert.Equal((ushort)bits, BFloat16.FromFloat(value));

    [Fact]
    public void NaNStaysNaNAndRelativeErrorIsAtMostHalfAnUlp()
    {
        Assert.True(float.IsNaN(BFloat16.ToFloat(BFloat16.FromFloat(float.NaN))));
        // A NaN whose payload lives only in the low 16 bits must not collapse to ∞.
        Assert.True(float.IsNaN(BFloat16.ToFloat(BFloat16.FromFloat(BitConverter.UInt32BitsToSingle(0x7F800001)))));
        var x = TestData.Random(new Random(11), 10_000, 100f);
        var r = BFloat16.Round(x);
        for (int i = 0; i < x.Length; i++)
            Assert.True(Math.Abs(r[i] - (double)x[i]) <= Math.Abs((double)x[i]) * Math.Pow(2, -8), $"{x[i]} → {r[i]}");
    }

    public static TheoryData<bool, int, int, int, bool, bool> Cases()
    {
        var data = new TheoryData<bool, int, int, int, bool, bool>();
        foreach (var nt in new[] { false, true })
            foreach (var (m, n, k) in new[] { (3, 5, 7), (67, 131, 45), (130, 96, 200) })
            {
                data.Add(nt, m, n, k, false, false);
                data.Add(nt, m, n, k, true, true);
            }
        return data;
    }

    /// <summary>
    /// The widening path (<see cref="Bf16GemmPath.Widening"/>): against the fp64 reference on the bf16-rounded weights, with
    /// the fp32 GEMM's tolerance (widening is exact, so the only error is fp32 accumulation), and bit-identical to the fp32
    /// GEMM on the widened weights.
    /// </summary>
    [Theory]
    [MemberData(nameof(Cases))]
    public void WideningMatchesReferenceOnRoundedWeights(bool nt, int m, int n, int k, bool withBias, bool accumulate)
    {
        var rng = new Random(m * 31 + n * 7 + k + (nt ? 1 : 0));
        var a = TestData.Random(rng, m * k);
        var w = TestData.Random(rng, k * n);
        var w16 = nt ? PackedBf16Matrix.Pack(w, n, k) : PackedBf16Matrix.Pack(w, k, n);
        var wRounded = BFloat16.Round(w);
        var bias = withBias ? TestData.Random(rng, n) : [];
        var c = accumulate ? TestData.Random(rng, m * n) : TestData.Poisoned(m * n);
        var expected = accumulate ? TestData.ToDouble(c) : new double[m * n];
        var viaFp32 = (float[])c.Clone();
        if (nt)
        {
            Gemm.NTReference(m, n, k, TestData.ToDouble(a), TestData.ToDouble(wRounded), expected, withBias ? TestData.ToDouble(bias) : null, accumulate);
            Gemm.NTBf16(m, n, k, a, w16, c, bias, accumulate, Bf16GemmPath.Widening);
            Gemm.NT(m, n, k, a, wRounded, viaFp32, bias, accumulate);
        }
        else
        {
            Gemm.NNReference(m, n, k, TestData.ToDouble(a), TestData.ToDouble(wRounded), expected, withBias ? TestData.ToDouble(bias) : null, accumulate);
            Gemm.NNBf16(m, n, k, a, w16, c, bias, accumulate, Bf16GemmPath.Widening);
            Gemm.NN(m, n, k, a, wRounded, viaFp32, bias, accumulate);
        }
        double err = TestData.MaxRelError(c, expected);
        Assert.True(err <= GemmTests.Tolerance(k), $"{(nt ? "NT" : "NN")} {m}x{n}x{k}: rel err {err}");
        Assert.Equal(viaFp32, c);
    }

    [Fact]
    public void BadSizesThrowNamingTheSizes()
    {
        var w = PackedBf16Matrix.Pack(new float[64], 16, 4);
        var ex = Assert.Throws<ArgumentException>(() => Gemm.NNBf16(8, 4, 15, new float[120], w, new float[32]));
        Assert.Contains("Gemm.NNBf16: the weight is [16, 4], expected [15, 4]", ex.Message);
        ex = Assert.Throws<ArgumentException>(() => Gemm.NTBf16(8, 16, 4, new float[32], w, new float[127]));
        Assert.Contains("c has 127 elements", ex.Message);
        ex = Assert.Throws<ArgumentException>(() => PackedBf16Matrix.Pack(new float[63], 16, 4));
        Assert.Contains("63 values, expected rows*columns = 64", ex.Message);
    }

    /// <summary>The packed layout keeps every value (rounded), whatever the padding: K odd, N not a multiple of 48.</summary>
    [Fact]
    public void PackedMatrixHoldsTheRoundedValues()
    {
        var w = TestData.Random(new Random(4), 7 * 50);
        var packed = PackedBf16Matrix.Pack(w, 7, 50);
        var rounded = BFloat16.Round(w);
        for (int r = 0; r < 7; r++)
            for (int c = 0; c < 50; c++) Assert.Equal(rounded[r * 50 + c], packed[r, c]);
        Assert.Equal(2 * 4 * 96 * 2L, packed.Bytes); // two 48-column panels of 4 row pairs, 4 bytes per pair
    }
}
