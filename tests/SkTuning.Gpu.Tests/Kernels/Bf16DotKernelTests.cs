using Iced.Intel;
using SkTuning.Gpu.Kernels;
using SkTuning.Gpu.Tests.Support;

namespace SkTuning.Gpu.Tests.Kernels;

/// <summary>
/// The <c>vdpbf16ps</c> GEMM path (<see cref="Bf16GemmPath.DotProduct"/>): the generated code, and the GEMMs against the
/// fp64 reference on the bf16-rounded activations and weights. On a CPU without AVX512-BF16 the dispatch is checked to
/// fall back instead.
/// </summary>
public class Bf16DotKernelTests
{
    /// <summary>
    /// Shapes around the tile sizes (MR = 8, NR = 48, KC = 256 values = 128 pairs): K = 1, odd K, K one past a chunk, M and N
    /// one past a tile, a size large enough to take the parallel path, and one with enough rows that only rows are split
    /// (in blocks evened out over the cores).
    /// </summary>
    public static TheoryData<bool, int, int, int, bool, bool> Cases()
    {
        var data = new TheoryData<bool, int, int, int, bool, bool>();
        foreach (var nt in new[] { false, true })
            foreach (var (m, n, k) in new[] { (1, 1, 1), (3, 5, 7), (8, 48, 2), (9, 49, 1), (17, 97, 33), (67, 131, 257), (130, 96, 512), (1101, 97, 300) })
            {
                data.Add(nt, m, n, k, false, false);
                data.Add(nt, m, n, k, true, true);
            }
        return data;
    }

    /// <summary>
    /// Against the fp64 reference on the bf16-rounded A and B with the fp32 GEMM's tolerance: the products of bf16 values are
    /// exact in fp32, so the only error left is fp32 accumulation. C is poisoned first where it is overwritten.
    /// </summary>
    [Theory]
    [MemberData(nameof(Cases))]
    public void MatchesReferenceOnRoundedOperands(bool nt, int m, int n, int k, bool withBias, bool accumulate)
    {
        if (!Gemm.IsBf16DotProductSupported)
        {
            Assert.Equal(Bf16GemmPath.Widening, Gemm.DefaultBf16Path);
            Assert.Throws<NotSupportedException>(() => Gemm.NNBf16(1, 1, 1, [1f], PackedBf16Matrix.Pack([1f], 1, 1), new float[1], path: Bf16GemmPath.DotProduct));
            return;
        }
        var rng = new Random(m * 131 + n * 17 + k + (nt ? 1 : 0));
        var a = TestData.Random(rng, m * k);
        var w = TestData.Random(rng, k * n);
        var w16 = nt ? PackedBf16Matrix.Pack(w, n, k) : PackedBf16Matrix.Pack(w, k, n);
        var bias = withBias ? TestData.Random(rng, n) : [];
        var c = accumulate ? TestData.Random(rng, m * n) : TestData.Poisoned(m * n);
        var expected = accumulate ? TestData.ToDouble(c) : new double[m * n];
        var aRounded = TestData.ToDouble(BFloat16.Round(a));
        var wRounded = TestData.ToDouble(BFloat16.Round(w));
        var biasRef = withBias ? TestData.ToDouble(bias) : null;
        if (nt)
        {
            Gemm.NTReference(m, n, k, aRounded, wRounded, expected, biasRef, accumulate);
            Gemm.NTBf16(m, n, k, a, w16, c, bias, accumulate, Bf16GemmPath.DotProduct);
        }
        else
        {
            Gemm.NNReference(m, n, k, aRounded, wRounded, expected, biasRef, accumulate);
            Gemm.NNBf16(m, n, k, a, w16, c, bias, accumulate, Bf16GemmPath.DotProduct);
        }
        double err = TestData.MaxRelError(c, expected);
        Assert.True(err <= 1e-4 * Math.Max(1.0, k / 128.0), $"{(nt ? "NT" : "NN")} {m}x{n}x{k}: rel err {err}");
    }

    /// <summary>
    /// Activations exactly halfway between two bf16 values must round to the even one, as the reference does: with ties
    /// everywhere, a kernel that truncated or rounded ties up would be off by 2⁻⁸ per product, far beyond the tolerance.
    /// </summary>
    [Fact]
    public void RoundsActivationTiesToEven()
    {
        if (!Gemm.IsBf16DotProductSupported) return; // the dispatch fallback is asserted in MatchesReferenceOnRoundedOperands
        int m = 9, n = 50, k = 70;
        var rng = new Random(3);
        var a = new float[m * k];
        for (int i = 0; i < a.Length; i++) a[i] = (rng.Next(2) == 0 ? -1 : 1) * (1f + (2 * rng.Next(128) + 1) / 256f);
        var w = TestData.Random(rng, k * n);
        var w16 = PackedBf16Matrix.Pack(w, k, n);
        var expected = new double[m * n];
        Gemm.NNReference(m, n, k, TestData.ToDouble(BFloat16.Round(a)), TestData.ToDouble(BFloat16.Round(w)), expected);
        var c = TestData.Poisoned(m * n);
        Gemm.NNBf16(m, n, k, a, w16, c, path: Bf16GemmPath.DotProduct);
        Assert.True(TestData.MaxRelError(c, expected) <= 1e-4, $"rel err {TestData.MaxRelError(c, expected)}");
    }

    /// <summary>
    /// Against the widening fallback (fp32 activations): the two differ by the activations' rounding only, at most 2⁻⁸ of
    /// Σ|a||w| per output (plus fp32 noise), and they do differ (the kernel really rounds A).
    /// </summary>
    [Fact]
    public void DiffersFromTheWideningPathByActivationRoundingOnly()
    {
        if (!Gemm.IsBf16DotProductSupported) return; // the dispatch fallback is asserted in MatchesReferenceOnRoundedOperands
        int m = 40, n = 100, k = 300;
        var rng = new Random(8);
        var a = TestData.Random(rng, m * k);
        var w = TestData.Random(rng, k * n);
        var w16 = PackedBf16Matrix.Pack(w, n, k);
        var dot = TestData.Poisoned(m * n);
        var widened = TestData.Poisoned(m * n);
        Gemm.NTBf16(m, n, k, a, w16, dot, path: Bf16GemmPath.DotProduct);
        Gemm.NTBf16(m, n, k, a, w16, widened, path: Bf16GemmPath.Widening);
        var wr = BFloat16.Round(w);
        double largest = 0;
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++)
            {
                double bound = 0;
                for (int p = 0; p < k; p++) bound += Math.Abs(a[i * k + p] * wr[j * k + p]);
                double diff = Math.Abs(dot[i * n + j] - widened[i * n + j]);
                Assert.True(diff <= bound * (Math.Pow(2, -8) + 1e-6), $"({i},{j}): {diff} > 2^-8·{bound}");
                largest = Math.Max(largest, diff);
            }
        Assert.True(largest > 0, "the vdpbf16ps path gave exactly the widening path's result: A was not rounded");
    }

    /// <summary>The generated code: one vdpbf16ps per accumulator per K pair, each with a 32-bit broadcast A operand; it ends in ret.</summary>
    [Fact]
    public void GeneratedCodeIsTheVdpbf16psTile()
    {
        var code = Bf16DotKernel.Assemble();
        var decoder = Decoder.Create(64, code);
        var dots = new List<Instruction>();
        var last = default(Instruction);
        while (decoder.IP < (ulong)code.Length)
        {
            last = decoder.Decode();
            Assert.NotEqual(Code.INVALID, last.Code);
            if (last.Mnemonic == Mnemonic.Vdpbf16ps) dots.Add(last);
        }
        Assert.Equal(Bf16DotKernel.MR * Bf16DotKernel.NR / 16, dots.Count);
        Assert.All(dots, d => Assert.True(d.IsBroadcast, d.ToString()));
        Assert.Equal(Mnemonic.Ret, last.Mnemonic);
    }
}
