using System.Reflection;
using ILGPU;
using ILGPU.Runtime;
using SkTuning.Gpu.Kernels;
using SkTuning.Gpu.Kernels.Gpu;
using SkTuning.Gpu.Tests.Support;

namespace SkTuning.Gpu.Tests.Kernels;

public class AttentionTests
{
    private const float MaskValue = -10000f;

    /// <summary>
    /// Scale of the random starting gradients g0: small enough that rounding of g0 + Δ in fp32 (half an ulp of g0)
    /// stays well below the 1e-4·(1e-3·max|Δ|) resolution of the relative-error check.
    /// </summary>
    private const float G0Scale = 0.1f;

    /// <summary>Mask [B, T]: example 0 full, the others with trailing padding (at least one real token).</summary>
    private static float[] RaggedMask(Random rng, int B, int T)
    {
        var mask = new float[B * T];
        for (int b = 0; b < B; b++)
        {
            int length = b == 0 ? T : 1 + rng.Next(T);
            if (b == 1 && T > 1) length = Math.Min(length, T - 1); // make sure some padding exists
            for (int t = 0; t < length; t++) mask[b * T + t] = 1f;
        }
        return mask;
    }

    private sealed record Inputs(float[] Qkv, float[] PrefixK, float[] PrefixV, float[] Mask, float[] DOut);

    private static Inputs MakeInputs(int seed, AttentionShape s)
    {
        var rng = new Random(seed);
        return new Inputs(TestData.Random(rng, s.QkvLength), TestData.Random(rng, s.PrefixElements),
            TestData.Random(rng, s.PrefixElements), RaggedMask(rng, s.Batch, s.Tokens), TestData.Random(rng, s.OutputLength));
    }

    // ---------------------------------------------------------------------------------------------
    // (1) fp64 reference vs finite differences
    // ---------------------------------------------------------------------------------------------

    [Theory]
    [InlineData(false, 2)]
    [InlineData(true, 2)]
    [InlineData(false, 0)]
    public void ReferenceBackwardMatchesFiniteDifferences(bool causal, int m)
    {
        var s = new AttentionShape(Batch: 3, Tokens: 4, Heads: 2, HeadDim: 3, PrefixLength: m);
        var x = MakeInputs(11 + m, s);
        var qkv = TestData.ToDouble(x.Qkv);
        var pk = TestData.ToDouble(x.PrefixK);
        var pv = TestData.ToDouble(x.PrefixV);
        var mask = TestData.ToDouble(x.Mask);
        var w = TestData.ToDouble(x.DOut);
        var output = new double[s.OutputLength];
        var probs = new double[s.ProbsLength];
        double Loss()
        {
            Attention.ForwardReference(qkv, pk, pv, mask, output, probs, s, MaskValue, causal);
            return TestData.Dot(w, output);
        }

        var fdQkv = TestData.FiniteDifference(qkv, Loss);
        var fdK = TestData.FiniteDifference(pk, Loss);
        var fdV = TestData.FiniteDifference(pv, Loss);

        Loss();
        var dQkv = new double[s.QkvLength];
        var dK = new double[s.PrefixElements];
        var dV = new double[s.PrefixElements];
        Attention.BackwardReference(w, qkv, pk, pv, probs, dQkv, dK, dV, s);

        Assert.True(TestData.MaxRelError(dQkv, fdQkv) <= 1e-4, $"dqkv {TestData.MaxRelError(dQkv, fdQkv)}");
        if (m > 0)
        {
            Assert.True(TestData.MaxRelError(dK, fdK) <= 1e-4, $"dPrefixK {TestData.MaxRelError(dK, fdK)}");
            Assert.True(TestData.MaxRelError(dV, fdV) <= 1e-4, $"dPrefixV {TestData.MaxRelError(dV, fdV)}");
            Assert.Contains(dK, g => Math.Abs(g) > 1e-3);
        }
        // Padded token keys get (numerically) zero gradient; real ones do not.
        int d = s.Model;
        Assert.Equal(0f, x.Mask[1 * s.Tokens + s.Tokens - 1]);
        for (int c = 0; c < 2 * d; c++)
            Assert.True(Math.Abs(dQkv[(1 * s.Tokens + s.Tokens - 1) * 3 * d + d + c]) < 1e-12);
    }

    [Fact]
    public void ReferenceIsPlainAttentionWhenPrefixIsConcatenated()
    {
        // Prefix keys behave exactly like extra unmasked, always-visible tokens placed in front.
        var s = new AttentionShape(2, 3, 2, 2, 2);
        var x = MakeInputs(5, s);
        var output = new double[s.OutputLength];
        var probs = new double[s.ProbsLength];
        Attention.ForwardReference(TestData.ToDouble(x.Qkv), TestData.ToDouble(x.PrefixK), TestData.ToDouble(x.PrefixV),
            TestData.ToDouble(x.Mask), output, probs, s, MaskValue, false);
        for (int r = 0; r < s.Batch * s.Heads * s.Tokens; r++)
            Assert.Equal(1.0, probs.AsSpan(r * s.Keys, s.Keys).ToArray().Sum(), 12);
    }

    // ---------------------------------------------------------------------------------------------
    // (2) CPU fast path vs reference
    // ---------------------------------------------------------------------------------------------

    public static TheoryData<int, int, int, int, int, bool> CpuCases => new()
    {
        { 3, 7, 3, 8, 5, false },
        { 3, 7, 3, 8, 5, true },
        { 3, 7, 3, 8, 0, false },
        { 3, 7, 3, 8, 0, true },
        { 2, 5, 2, 5, 3, true },
        { 2, 64, 12, 32, 12, false },
        { 2, 64, 12, 32, 12, true },
    };

    [Theory]
    [InlineData(256)]
    [InlineData(128)]
    public void NarrowerVectorTilesMatchReference(int bits)
    {
        Attention.ForceVectorBits = bits;
        try
        {
            CpuForwardBackwardMatchReference(3, 7, 3, 8, 5, true);
            CpuForwardBackwardMatchReference(2, 64, 12, 32, 12, false);
        }
        finally
        {
            Attention.ForceVectorBits = 0;
        }
    }

    [Theory]
    [MemberData(nameof(CpuCases))]
    public void CpuForwardBackwardMatchReference(int B, int T, int H, int dh, int m, bool causal)
    {
        var s = new AttentionShape(B, T, H, dh, m);
        var x = MakeInputs(100 + B * T + m + (causal ? 1 : 0), s);
        var (refOut, refProbs, refDQkv, refDK, refDV) = Reference(x, s, causal);

        var output = TestData.Poisoned(s.OutputLength);
        var probs = TestData.Poisoned(s.ProbsLength);
        Attention.Forward(x.Qkv, x.PrefixK, x.PrefixV, x.Mask, output, probs, s, MaskValue, causal);
        AssertClose("out", output, refOut);
        AssertClose("probs", probs, refProbs);

        var rng = new Random(7);
        var g0Qkv = TestData.Random(rng, s.QkvLength, G0Scale);
        var g0K = TestData.Random(rng, s.PrefixElements, G0Scale);
        var g0V = TestData.Random(rng, s.PrefixElements, G0Scale);
        var dQkv = (float[])g0Qkv.Clone();
        var dK = (float[])g0K.Clone();
        var dV = (float[])g0V.Clone();
        Attention.Backward(x.DOut, x.Qkv, x.PrefixK, x.PrefixV, probs, dQkv, dK, dV, s);
        AssertClose("dqkv", Minus(dQkv, g0Qkv), refDQkv);
        AssertClose("dPrefixK", Minus(dK, g0K), refDK);
        AssertClose("dPrefixV", Minus(dV, g0V), refDV);
    }

    [Fact]
    public void CpuBackwardIsDeterministic()
    {
        var s = new AttentionShape(4, 9, 3, 8, 4);
        var x = MakeInputs(3, s);
        var probs = new float[s.ProbsLength];
        Attention.Forward(x.Qkv, x.PrefixK, x.PrefixV, x.Mask, new float[s.OutputLength], probs, s, MaskValue, false);
        float[] Run()
        {
            var dQkv = new float[s.QkvLength];
            var dK = new float[s.PrefixElements];
            var dV = new float[s.PrefixElements];
            Attention.Backward(x.DOut, x.Qkv, x.PrefixK, x.PrefixV, probs, dQkv, dK, dV, s);
            return [.. dQkv, .. dK, .. dV];
        }
        var first = Run();
        for (int k = 0; k < 3; k++) Assert.Equal(first, Run());
    }

    // ---------------------------------------------------------------------------------------------
    // (4) naive concatenated baseline agrees
    // ---------------------------------------------------------------------------------------------

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void NaiveConcatenatedMatchesShared(bool causal)
    {
        var s = new AttentionShape(3, 7, 3, 8, 5);
        var x = MakeInputs(21, s);
        var outShared = TestData.Poisoned(s.OutputLength);
        var probsShared = TestData.Poisoned(s.ProbsLength);
        var outNaive = TestData.Poisoned(s.OutputLength);
        var probsNaive = TestData.Poisoned(s.ProbsLength);
        Attention.Forward(x.Qkv, x.PrefixK, x.PrefixV, x.Mask, outShared, probsShared, s, MaskValue, causal);
        Attention.ForwardNaiveConcatenated(x.Qkv, x.PrefixK, x.PrefixV, x.Mask, outNaive, probsNaive, s, MaskValue, causal);
        Assert.Equal(outShared, outNaive);
        Assert.Equal(probsShared, probsNaive);
    }

    // ---------------------------------------------------------------------------------------------
    // (3) ILGPU kernels: PTX + CPU simulator
    // ---------------------------------------------------------------------------------------------

    private static MethodInfo KernelMethod(string name) =>
        typeof(AttentionGpu).GetMethod(name, BindingFlags.NonPublic | BindingFlags.Static)!;

    [Fact]
    public void KernelsCompileToPtx()
    {
        using var ptx = new PtxCompiler();
        foreach (var name in new[] { nameof(AttentionGpu.ForwardKernel), nameof(AttentionGpu.BackwardQueryKernel) })
            Assert.Contains(".entry", ptx.CompileExplicitlyGrouped(KernelMethod(name)));
        foreach (var name in new[] { nameof(AttentionGpu.BackwardKeyKernel), nameof(AttentionGpu.PrefixReduceKernel) })
            Assert.Contains(".entry", ptx.CompileImplicitlyGrouped(KernelMethod(name)));
    }

    [Theory]
    [InlineData(3, false)]
    [InlineData(3, true)]
    [InlineData(0, false)]
    public void GpuKernelsMatchReferenceOnSimulator(int m, bool causal)
    {
        var s = new AttentionShape(Batch: 2, Tokens: 5, Heads: 2, HeadDim: 4, PrefixLength: m);
        var x = MakeInputs(31 + m, s);
        var (refOut, refProbs, refDQkv, refDK, refDV) = Reference(x, s, causal);

        var rng = new Random(9);
        var g0Qkv = TestData.Random(rng, s.QkvLength, G0Scale);
        var g0K = TestData.Random(rng, s.PrefixElements, G0Scale);
        var g0V = TestData.Random(rng, s.PrefixElements, G0Scale);

        using var device = GpuDevice.CreateCpuSimulator();
        var acc = device.Accelerator;
        using var qkv = acc.Allocate1D(x.Qkv);
        using var pk = acc.Allocate1D(s.PrefixElements > 0 ? x.PrefixK : [0f]);
        using var pv = acc.Allocate1D(s.PrefixElements > 0 ? x.PrefixV : [0f]);
        using var mask = acc.Allocate1D(x.Mask);
        using var dOut = acc.Allocate1D(x.DOut);
        using var output = acc.Allocate1D(TestData.Poisoned(s.OutputLength));
        using var probs = acc.Allocate1D(TestData.Poisoned(s.ProbsLength));
        using var dQkv = acc.Allocate1D(g0Qkv);
        using var dK = acc.Allocate1D(s.PrefixElements > 0 ? g0K : [0f]);
        using var dV = acc.Allocate1D(s.PrefixElements > 0 ? g0V : [0f]);
        using var scratch = acc.Allocate1D(TestData.Poisoned(AttentionGpu.BackwardScratchLength(s)));
        ArrayView<float> Prefix(MemoryBuffer1D<float, Stride1D.Dense> buffer) => buffer.View.SubView(0, s.PrefixElements);

        AttentionGpu.Forward(device, qkv.View, Prefix(pk), Prefix(pv), mask.View, output.View, probs.View, s, MaskValue, causal);
        AttentionGpu.Backward(device, dOut.View, qkv.View, Prefix(pk), Prefix(pv), probs.View, dQkv.View, Prefix(dK), Prefix(dV),
            scratch.View, s);
        device.Synchronize();

        AssertClose("out", output.GetAsArray1D(), refOut);
        AssertClose("probs", probs.GetAsArray1D(), refProbs);
        AssertClose("dqkv", Minus(dQkv.GetAsArray1D(), g0Qkv), refDQkv);
        if (m > 0)
        {
            AssertClose("dPrefixK", Minus(dK.GetAsArray1D(), g0K), refDK);
            AssertClose("dPrefixV", Minus(dV.GetAsArray1D(), g0V), refDV);
        }
    }

    // ---------------------------------------------------------------------------------------------
    // (5) size validation
    // ---------------------------------------------------------------------------------------------

    [Fact]
    public void BadSizesThrowWithTheSizes()
    {
        var s = new AttentionShape(2, 3, 4, 3, 4); // d = 12, m*d = 48
        var x = MakeInputs(1, s);
        var ex = Assert.Throws<ArgumentException>(() => Attention.Forward(x.Qkv, new float[40], x.PrefixV, x.Mask,
            new float[s.OutputLength], new float[s.ProbsLength], s, MaskValue, false));
        Assert.Contains("Attention.Forward: prefixK has 40 elements, expected m*d = 48", ex.Message);

        ex = Assert.Throws<ArgumentException>(() => Attention.Forward(x.Qkv, x.PrefixK, x.PrefixV, x.Mask,
            new float[s.OutputLength], new float[s.ProbsLength - 1], s, MaskValue, false));
        Assert.Contains($"probs has {s.ProbsLength - 1} elements, expected B*H*T*(m+T) = {s.ProbsLength}", ex.Message);

        ex = Assert.Throws<ArgumentException>(() => Attention.Backward(x.DOut, x.Qkv, x.PrefixK, x.PrefixV,
            new float[s.ProbsLength], new float[s.QkvLength + 1], new float[48], new float[48], s));
        Assert.Contains($"Attention.Backward: dQkv has {s.QkvLength + 1} elements, expected B*T*3d = {s.QkvLength}", ex.Message);

        ex = Assert.Throws<ArgumentException>(() => Attention.Backward(x.DOut, x.Qkv, x.PrefixK, x.PrefixV,
            new float[s.ProbsLength], new float[s.QkvLength], new float[48], new float[47], s));
        Assert.Contains("dPrefixV has 47 elements, expected m*d = 48", ex.Message);

        ex = Assert.Throws<ArgumentException>(() => Attention.Forward(x.Qkv, x.PrefixK, x.PrefixV, x.Mask,
            new float[s.OutputLength], new float[s.ProbsLength], s with { Heads = 0 }, MaskValue, false));
        Assert.Contains("H=0", ex.Message);

        ex = Assert.Throws<ArgumentException>(() => Attention.ForwardNaiveConcatenated(x.Qkv, x.PrefixK, x.PrefixV,
            new float[5], new float[s.OutputLength], new float[s.ProbsLength], s, MaskValue, false));
        Assert.Contains("mask has 5 elements, expected B*T = 6", ex.Message);
    }

    // ---------------------------------------------------------------------------------------------

    private static (double[] Out, double[] Probs, double[] DQkv, double[] DK, double[] DV) Reference(Inputs x, AttentionShape s, bool causal)
    {
        var output = new double[s.OutputLength];
        var probs = new double[s.ProbsLength];
        var qkv = TestData.ToDouble(x.Qkv);
        var pk = TestData.ToDouble(x.PrefixK);
        var pv = TestData.ToDouble(x.PrefixV);
        Attention.ForwardReference(qkv, pk, pv, TestData.ToDouble(x.Mask), output, probs, s, MaskValue, causal);
        var dQkv = new double[s.QkvLength];
        var dK = new double[s.PrefixElements];
        var dV = new double[s.PrefixElements];
        Attention.BackwardReference(TestData.ToDouble(x.DOut), qkv, pk, pv, probs, dQkv, dK, dV, s);
        return (output, probs, dQkv, dK, dV);
    }

    private static double[] Minus(float[] g, float[] g0)
    {
        var r = new double[g.Length];
        for (int i = 0; i < g.Length; i++) r[i] = (double)g[i] - g0[i];
        return r;
    }

    /// <summary>
    /// Both paths accumulate in fp32 (scores over dh, P·V over m+T keys, dK/dV over T queries, and dS = P∘(dP − D), which
    /// cancels): measured up to 1.5e-4 against the fp64 reference at T = 64, m = 12 (against the 1e-3·max floor of
    /// <see cref="TestData.MaxRelError(ReadOnlySpan{double}, ReadOnlySpan{double})"/>); an indexing or masking bug is O(1).
    /// </summary>
    private const double Fp32Tolerance = 3e-4;

    private static void AssertClose(string what, float[] actual, double[] expected) => AssertClose(what, TestData.ToDouble(actual), expected);

    private static void AssertClose(string what, double[] actual, double[] expected)
    {
        double err = TestData.MaxRelError(actual, expected);
        Assert.True(err <= Fp32Tolerance, $"{what}: max rel error {err}");
    }
}
