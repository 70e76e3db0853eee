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

    /// <summary>
    /// Mask [B, T] for causal decoders: example 0 full, example 1 with two pad tokens (T ≥ 3), the others 1..T real tokens;
    /// the pads lead (left padding: the first queries see only padded token keys) or trail (right padding).
    /// </summary>
    private static float[] PaddedMask(Random rng, int B, int T, bool left)
    {
        var mask = new float[B * T];
        for (int b = 0; b < B; b++)
        {
            int length = b == 0 ? T : b == 1 ? T - 2 : 1 + rng.Next(T);
            for (int t = 0; t < length; t++) mask[b * T + (left ? T - 1 - t : t)] = 1f;
        }
        return mask;
    }

    /// <summary>Inputs of one call; with ALiBi, <see cref="Slopes"/> [H] and the token keys' <see cref="KeyPositions"/> [B, T].</summary>
    private sealed record Inputs(float[] Qkv, float[] PrefixK, float[] PrefixV, float[] Mask, float[] DOut,
        float[]? Slopes = null, int[]? KeyPositions = null);

    private static Inputs MakeInputs(int seed, AttentionShape s, bool? leftPadding = null, bool alibi = false)
    {
        var rng = new Random(seed);
        var qkv = TestData.Random(rng, s.QkvLength);
        var pk = TestData.Random(rng, s.PrefixElements);
        var pv = TestData.Random(rng, s.PrefixElements);
        var mask = leftPadding is bool left ? PaddedMask(rng, s.Batch, s.Tokens, left) : RaggedMask(rng, s.Batch, s.Tokens);
        var x = new Inputs(qkv, pk, pv, mask, TestData.Random(rng, s.OutputLength));
        return alibi ? x with { Slopes = Attention.AlibiSlopes(s.Heads), KeyPositions = KeyPositions(mask, s) } : x;
    }

    /// <summary>The engine's causal numbering: prefix keys 0..m−1, token t of example b at m + cumsum(mask)[t] − 1 (clipped at m).</summary>
    private static int[] KeyPositions(float[] mask, AttentionShape s)
    {
        var positions = new int[s.MaskLength];
        for (int b = 0; b < s.Batch; b++)
            for (int t = 0, seen = 0; t < s.Tokens; t++)
            {
                if (mask[b * s.Tokens + t] != 0) seen++;
                positions[b * s.Tokens + t] = s.PrefixLength + Math.Max(seen - 1, 0);
            }
        return positions;
    }

    // ---------------------------------------------------------------------------------------------
    // (1) fp64 reference vs finite differences
    // ---------------------------------------------------------------------------------------------

    [Theory]
    [InlineData(false, 2, 2, 2)]
    [InlineData(true, 2, 2, 2)]
    [InlineData(false, 0, 2, 2)]
    [InlineData(false, 2, 4, 2)] // grouped-query
    [InlineData(true, 2, 4, 2)]
    [InlineData(true, 0, 4, 2)]
    [InlineData(false, 2, 4, 1)] // multi-query
    [InlineData(true, 2, 4, 1)]
    [InlineData(false, 0, 4, 1)]
    public void ReferenceBackwardMatchesFiniteDifferences(bool causal, int m, int heads, int kvHeads)
    {
        var s = new AttentionShape(Batch: 3, Tokens: 4, Heads: heads, HeadDim: 3, PrefixLength: m, KvHeads: kvHeads);
        var x = MakeInputs(11 + m + 7 * kvHeads, s);
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
        Assert.Equal(0f, x.Mask[1 * s.Tokens + s.Tokens - 1]);
        for (int c = 0; c < 2 * s.KvModel; c++)
            Assert.True(Math.Abs(dQkv[(1 * s.Tokens + s.Tokens - 1) * s.QkvRow + s.Model + c]) < 1e-12);
    }

    [Fact]
    public void ReferenceIsPlainAttentionWhenPrefixIsConcatenated()
    {
        // Prefix keys behave exactly like extra unmasked, always-visible tokens placed in front.
        var s = new AttentionShape(2, 3, 2, 2, 2, 2);
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

    public static TheoryData<int, int, int, int, int, bool, int> CpuCases => new()
    {
        { 3, 7, 3, 8, 5, false, 3 },
        { 3, 7, 3, 8, 5, true, 3 },
        { 3, 7, 3, 8, 0, false, 3 },
        { 3, 7, 3, 8, 0, true, 3 },
        { 2, 5, 2, 5, 3, true, 2 },
        { 2, 64, 12, 32, 12, false, 12 },
        { 2, 64, 12, 32, 12, true, 12 },
        // grouped-query
        { 3, 7, 4, 8, 5, false, 2 },
        { 3, 7, 4, 8, 5, true, 2 },
        { 3, 7, 4, 8, 0, true, 2 },
        { 2, 64, 12, 32, 12, true, 4 },
        // multi-query
        { 3, 7, 4, 8, 5, true, 1 },
        { 3, 7, 4, 8, 0, false, 1 },
        { 2, 5, 4, 5, 3, false, 1 },
        { 2, 64, 12, 32, 12, false, 1 },
    };

    [Theory]
    [InlineData(256)]
    [InlineData(128)]
    public void NarrowerVectorTilesMatchReference(int bits)
    {
        Attention.ForceVectorBits = bits;
        try
        {
            CpuForwardBackwardMatchReference(3, 7, 3, 8, 5, true, 3);
            CpuForwardBackwardMatchReference(2, 64, 12, 32, 12, false, 12);
            CpuForwardBackwardMatchReference(3, 7, 4, 8, 5, true, 2);
            CpuForwardBackwardMatchReference(2, 5, 4, 5, 3, false, 1);
        }
        finally
        {
            Attention.ForceVectorBits = 0;
        }
    }

    [Theory]
    [MemberData(nameof(CpuCases))]
    public void CpuForwardBackwardMatchReference(int B, int T, int H, int dh, int m, bool causal, int kvHeads)
    {
        var s = new AttentionShape(B, T, H, dh, m, kvHeads);
        var x = MakeInputs(100 + B * T + m + (causal ? 1 : 0) + kvHeads, s);
        CpuMatchesReference(x, s, causal, MaskValue);
    }

    /// <summary>Fast CPU forward (poisoned outputs) and backward (random starting gradients) against the fp64 reference.</summary>
    private static void CpuMatchesReference(Inputs x, AttentionShape s, bool causal, float maskValue)
    {
        var (refOut, refProbs, refDQkv, refDK, refDV) = Reference(x, s, causal, maskValue);

        var output = TestData.Poisoned(s.OutputLength);
        var probs = TestData.Poisoned(s.ProbsLength);
        Attention.Forward(x.Qkv, x.PrefixK, x.PrefixV, x.Mask, output, probs, s, maskValue, causal, x.Slopes, x.KeyPositions);
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

    [Theory]
    [InlineData(3, 3)]
    [InlineData(6, 2)]
    [InlineData(6, 1)]
    public void CpuBackwardIsDeterministic(int heads, int kvHeads)
    {
        var s = new AttentionShape(4, 9, heads, 8, 4, kvHeads);
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
    [InlineData(false, 3, 3)]
    [InlineData(true, 3, 3)]
    [InlineData(true, 4, 2)]
    [InlineData(false, 4, 1)]
    public void NaiveConcatenatedMatchesShared(bool causal, int heads, int kvHeads)
    {
        var s = new AttentionShape(3, 7, heads, 8, 5, kvHeads);
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
        {
            var text = ptx.CompileExplicitlyGrouped(KernelMethod(name));
            Assert.Contains(".entry", text);
            Assert.Contains("shfl.sync.bfly", text); // the warp-per-row softmax and row sums
        }
        foreach (var name in new[] { nameof(AttentionGpu.BackwardKeyKernel) })
            Assert.Contains(".entry", ptx.CompileImplicitlyGrouped(KernelMethod(name)));
    }

    [Theory]
    [InlineData(3, false, 2, 2)]
    [InlineData(3, true, 2, 2)]
    [InlineData(0, false, 2, 2)]
    [InlineData(3, false, 4, 2)] // grouped-query
    [InlineData(3, true, 4, 2)]
    [InlineData(0, true, 4, 2)]
    [InlineData(3, true, 4, 1)] // multi-query
    [InlineData(0, false, 4, 1)]
    public void GpuKernelsMatchReferenceOnSimulator(int m, bool causal, int heads, int kvHeads)
    {
        var s = new AttentionShape(Batch: 2, Tokens: 5, Heads: heads, HeadDim: 4, PrefixLength: m, KvHeads: kvHeads);
        var x = MakeInputs(31 + m + kvHeads, s);
        GpuSimulatorMatchesReference(x, s, causal, MaskValue);
    }

    /// <summary>
    /// 24 + 9 = 33 keys: one lane of the softmax warp takes two keys (causal: on the last row only); 9 queries: two query
    /// tiles, the second of one row, the first of 8 rows shared by the group's warps in turn.
    /// </summary>
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void GpuSoftmaxWarpsCoverMoreKeysThanLanes(bool causal)
    {
        var s = new AttentionShape(Batch: 1, Tokens: 9, Heads: 2, HeadDim: 4, PrefixLength: 24, KvHeads: 1);
        GpuSimulatorMatchesReference(MakeInputs(77, s), s, causal, MaskValue);
    }

    /// <summary>ILGPU forward and backward on the CPU simulator (poisoned outputs and scratch) against the fp64 reference.</summary>
    private static void GpuSimulatorMatchesReference(Inputs x, AttentionShape s, bool causal, float maskValue)
    {
        var (refOut, refProbs, refDQkv, refDK, refDV) = Reference(x, s, causal, maskValue);

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
        using var slopes = x.Slopes is null ? null : acc.Allocate1D(x.Slopes);
        using var positions = x.KeyPositions is null ? null : acc.Allocate1D(x.KeyPositions);
        ArrayView<float> Prefix(MemoryBuffer1D<float, Stride1D.Dense> buffer) => buffer.View.SubView(0, s.PrefixElements);

        AttentionGpu.Forward(device, qkv.View, Prefix(pk), Prefix(pv), mask.View, output.View, probs.View, s, maskValue, causal,
            slopes?.View ?? default, positions?.View ?? default);
        AttentionGpu.Backward(device, dOut.View, qkv.View, Prefix(pk), Prefix(pv), probs.View, dQkv.View, Prefix(dK), Prefix(dV),
            scratch.View, s);
        device.Synchronize();

        AssertClose("out", output.GetAsArray1D(), refOut);
        AssertClose("probs", probs.GetAsArray1D(), refProbs);
        AssertClose("dqkv", Minus(dQkv.GetAsArray1D(), g0Qkv), refDQkv);
        if (s.PrefixLength > 0)
        {
            AssertClose("dPrefixK", Minus(dK.GetAsArray1D(), g0K), refDK);
            AssertClose("dPrefixV", Minus(dV.GetAsArray1D(), g0V), refDV);
        }
    }

    // ---------------------------------------------------------------------------------------------
    // (6) per-example prefix choice (several adapters' rows in one inference batch)
    // ---------------------------------------------------------------------------------------------

    /// <summary>A adapters' prefixes stacked [A, m, dkv] (fresh random) and a choice [B] that uses each adapter at least once when B ≥ A.</summary>
    private static (float[] K, float[] V, int[] Choice) StackedPrefixes(int seed, AttentionShape s, int adapters)
    {
        var rng = new Random(seed);
        var k = TestData.Random(rng, adapters * s.PrefixElements);
        var v = TestData.Random(rng, adapters * s.PrefixElements);
        var choice = Enumerable.Range(0, s.Batch).Select(b => b < adapters ? adapters - 1 - b : rng.Next(adapters)).ToArray();
        return (k, v, choice);
    }

    public static TheoryData<int, int, int, int, int, bool, int, int> PrefixChoiceCases => new()
    {
        { 4, 7, 4, 8, 5, false, 4, 3 },
        { 4, 7, 4, 8, 5, true, 2, 2 },   // grouped-query, causal
        { 3, 9, 4, 5, 3, false, 1, 3 },  // multi-query, odd head size
        { 2, 33, 6, 16, 12, true, 6, 2 },
    };

    /// <summary>
    /// The fp64 reference with a choice gives each example exactly what the shared-prefix reference gives it with its own
    /// adapter's prefix, and the CPU forward (poisoned outputs) matches it.
    /// </summary>
    [Theory]
    [MemberData(nameof(PrefixChoiceCases))]
    public void CpuPrefixChoiceMatchesReference(int B, int T, int H, int dh, int m, bool causal, int kvHeads, int adapters)
    {
        var s = new AttentionShape(B, T, H, dh, m, kvHeads);
        var x = MakeInputs(500 + B * T + m + adapters, s);
        var (k, v, choice) = StackedPrefixes(600 + m, s, adapters);
        var refOut = new double[s.OutputLength];
        var refProbs = new double[s.ProbsLength];
        Attention.ForwardReference(TestData.ToDouble(x.Qkv), TestData.ToDouble(k), TestData.ToDouble(v), TestData.ToDouble(x.Mask), refOut, refProbs,
            s, MaskValue, causal, prefixChoice: choice);

        int rowOut = T * s.Model, rowProbs = H * T * s.Keys;
        for (int a = 0; a < adapters; a++)
        {
            var alone = x with
            {
                PrefixK = k.AsSpan(a * s.PrefixElements, s.PrefixElements).ToArray(),
                PrefixV = v.AsSpan(a * s.PrefixElements, s.PrefixElements).ToArray(),
            };
            var (aloneOut, aloneProbs, _, _, _) = Reference(alone, s, causal);
            for (int b = 0; b < B; b++)
            {
                if (choice[b] != a) continue;
                Assert.Equal(aloneOut.AsSpan(b * rowOut, rowOut).ToArray(), refOut.AsSpan(b * rowOut, rowOut).ToArray());
                Assert.Equal(aloneProbs.AsSpan(b * rowProbs, rowProbs).ToArray(), refProbs.AsSpan(b * rowProbs, rowProbs).ToArray());
            }
        }

        var output = TestData.Poisoned(s.OutputLength);
        var probs = TestData.Poisoned(s.ProbsLength);
        Attention.Forward(x.Qkv, k, v, x.Mask, output, probs, s, MaskValue, causal, prefixChoice: choice);
        AssertClose("out", output, refOut);
        AssertClose("probs", probs, refProbs);
    }

    /// <summary>
    /// A row of a mixed batch gets the bits the shared-prefix forward gives it with its adapter's prefix (what serving
    /// relies on: a request's answer does not depend on the other runs in its batch); A = 1 is the shared path bit for bit.
    /// </summary>
    [Theory]
    [InlineData(false, 4, 4, 3)]
    [InlineData(true, 4, 2, 2)]
    [InlineData(false, 4, 1, 1)]
    [InlineData(true, 6, 6, 1)]
    public void CpuPrefixChoiceRowsEqualTheSharedPathBitForBit(bool causal, int heads, int kvHeads, int adapters)
    {
        var s = new AttentionShape(5, 11, heads, 8, 4, kvHeads);
        var x = MakeInputs(700 + adapters, s, alibi: true);
        var (k, v, choice) = StackedPrefixes(800 + adapters, s, adapters);
        var mixedOut = TestData.Poisoned(s.OutputLength);
        var mixedProbs = TestData.Poisoned(s.ProbsLength);
        Attention.Forward(x.Qkv, k, v, x.Mask, mixedOut, mixedProbs, s, MaskValue, causal, x.Slopes, x.KeyPositions, choice);

        int rowOut = s.Tokens * s.Model, rowProbs = s.Heads * s.Tokens * s.Keys;
        for (int a = 0; a < adapters; a++)
        {
            var sharedOut = TestData.Poisoned(s.OutputLength);
            var sharedProbs = TestData.Poisoned(s.ProbsLength);
            Attention.Forward(x.Qkv, k.AsSpan(a * s.PrefixElements, s.PrefixElements), v.AsSpan(a * s.PrefixElements, s.PrefixElements), x.Mask,
                sharedOut, sharedProbs, s, MaskValue, causal, x.Slopes, x.KeyPositions);
            for (int b = 0; b < s.Batch; b++)
            {
                if (choice[b] != a) continue;
                Assert.Equal(sharedOut.AsSpan(b * rowOut, rowOut).ToArray(), mixedOut.AsSpan(b * rowOut, rowOut).ToArray());
                Assert.Equal(sharedProbs.AsSpan(b * rowProbs, rowProbs).ToArray(), mixedProbs.AsSpan(b * rowProbs, rowProbs).ToArray());
            }
        }
    }

    /// <summary>The ILGPU forward with a choice on the CPU simulator (poisoned outputs) against the fp64 reference; A = 1 equals its shared path bit for bit.</summary>
    [Theory]
    [InlineData(false, 4, 2, 3)]
    [InlineData(true, 4, 1, 2)]
    [InlineData(false, 2, 2, 1)]
    public void GpuPrefixChoiceMatchesReferenceOnSimulator(bool causal, int heads, int kvHeads, int adapters)
    {
        var s = new AttentionShape(Batch: 4, Tokens: 9, Heads: heads, HeadDim: 4, PrefixLength: 3, KvHeads: kvHeads);
        var x = MakeInputs(900 + adapters, s);
        var (k, v, choice) = StackedPrefixes(950 + adapters, s, adapters);
        var refOut = new double[s.OutputLength];
        var refProbs = new double[s.ProbsLength];
        Attention.ForwardReference(TestData.ToDouble(x.Qkv), TestData.ToDouble(k), TestData.ToDouble(v), TestData.ToDouble(x.Mask), refOut, refProbs,
            s, MaskValue, causal, prefixChoice: choice);

        using var device = GpuDevice.CreateCpuSimulator();
        var acc = device.Accelerator;
        using var qkv = acc.Allocate1D(x.Qkv);
        using var pk = acc.Allocate1D(k);
        using var pv = acc.Allocate1D(v);
        using var index = acc.Allocate1D(choice);
        using var mask = acc.Allocate1D(x.Mask);
        using var output = acc.Allocate1D(TestData.Poisoned(s.OutputLength));
        using var probs = acc.Allocate1D(TestData.Poisoned(s.ProbsLength));
        AttentionGpu.Forward(device, qkv.View, pk.View, pv.View, mask.View, output.View, probs.View, s, MaskValue, causal, prefixChoice: index.View);
        device.Synchronize();
        var mixedOut = output.GetAsArray1D();
        var mixedProbs = probs.GetAsArray1D();
        AssertClose("out", mixedOut, refOut);
        AssertClose("probs", mixedProbs, refProbs);

        if (adapters > 1) return;
        using var sharedOut = acc.Allocate1D(TestData.Poisoned(s.OutputLength));
        using var sharedProbs = acc.Allocate1D(TestData.Poisoned(s.ProbsLength));
        AttentionGpu.Forward(device, qkv.View, pk.View, pv.View, mask.View, sharedOut.View, sharedProbs.View, s, MaskValue, causal);
        device.Synchronize();
        Assert.Equal(sharedOut.GetAsArray1D(), mixedOut);
        Assert.Equal(sharedProbs.GetAsArray1D(), mixedProbs);
    }

    [Fact]
    public void BadPrefixChoicesThrowWithTheSizes()
    {
        var s = new AttentionShape(2, 3, 4, 3, 4, 4); // m*KV*dh = 48
        var x = MakeInputs(2, s);
        var (k, v, _) = StackedPrefixes(3, s, 2);
        float[] output = new float[s.OutputLength], probs = new float[s.ProbsLength];
        var ex = Assert.Throws<ArgumentException>(() => Attention.Forward(x.Qkv, k, v, x.Mask, output, probs, s, MaskValue, false, prefixChoice: new[] { 0, 2 }));
        Assert.Contains("Attention.Forward: prefixChoice[1] = 2 is outside the 2 stacked prefixes", ex.Message);
        ex = Assert.Throws<ArgumentException>(() => Attention.Forward(x.Qkv, k, v, x.Mask, output, probs, s, MaskValue, false, prefixChoice: new[] { 0 }));
        Assert.Contains("prefixChoice has 1 elements, expected B = 2", ex.Message);
        ex = Assert.Throws<ArgumentException>(() => Attention.Forward(x.Qkv, k.AsSpan(0, 50), v.AsSpan(0, 50), x.Mask, output, probs, s, MaskValue, false,
            prefixChoice: new[] { 0, 0 }));
        Assert.Contains("whole prefixes of m*KV*dh = 48", ex.Message);
    }

    // ---------------------------------------------------------------------------------------------
    // (5) size validation
    // ---------------------------------------------------------------------------------------------

    [Fact]
    public void BadSizesThrowWithTheSizes()
    {
        var s = new AttentionShape(2, 3, 4, 3, 4, 4); // d = dkv = 12, m*KV*dh = 48
        var x = MakeInputs(1, s);
        var ex = Assert.Throws<ArgumentException>(() => Attention.Forward(x.Qkv, new float[40], x.PrefixV, x.Mask,
            new float[s.OutputLength], new float[s.ProbsLength], s, MaskValue, false));
        Assert.Contains("Attention.Forward: prefixK has 40 elements, expected m*KV*dh = 48", ex.Message);

        ex = Assert.Throws<ArgumentException>(() => Attention.Forward(x.Qkv, x.PrefixK, x.PrefixV, x.Mask,
            new float[s.OutputLength], new float[s.ProbsLength - 1], s, MaskValue, false));
        Assert.Contains($"probs has {s.ProbsLength - 1} elements, expected B*H*T*(m+T) = {s.ProbsLength}", ex.Message);

        ex = Assert.Throws<ArgumentException>(() => Attention.Backward(x.DOut, x.Qkv, x.PrefixK, x.PrefixV,
            new float[s.ProbsLength], new float[s.QkvLength + 1], new float[48], new float[48], s));
        Assert.Contains($"Attention.Backward: dQkv has {s.QkvLength + 1} elements, expected B*T*(H+2*KV)*dh = {s.QkvLength}", ex.Message);

        ex = Assert.Throws<ArgumentException>(() => Attention.Backward(x.DOut, x.Qkv, x.PrefixK, x.PrefixV,
            new float[s.ProbsLength], new float[s.QkvLength], new float[48], new float[47], s));
        Assert.Contains("dPrefixV has 47 elements, expected m*KV*dh = 48", ex.Message);

        ex = Assert.Throws<ArgumentException>(() => Attention.Forward(x.Qkv, x.PrefixK, x.PrefixV, x.Mask,
            new float[s.OutputLength], new float[s.ProbsLength], s with { Heads = 0 }, MaskValue, false));
        Assert.Contains("H=0", ex.Message);

        ex = Assert.Throws<ArgumentException>(() => Attention.ForwardNaiveConcatenated(x.Qkv, x.PrefixK, x.PrefixV,
            new float[5], new float[s.OutputLength], new float[s.ProbsLength], s, MaskValue, false));
        Assert.Contains("mask has 5 elements, expected B*T = 6", ex.Message);

        // Grouped-query: KV must divide H; the k/v and prefix sizes follow KV.
        ex = Assert.Throws<ArgumentException>(() => Attention.Forward(x.Qkv, x.PrefixK, x.PrefixV, x.Mask,
            new float[s.OutputLength], new float[s.ProbsLength], s with { KvHeads = 3 }, MaskValue, false));
        Assert.Contains("KV=3 key/value heads must be ≥ 1 and divide H=4", ex.Message);
        ex = Assert.Throws<ArgumentException>(() => Attention.Backward(x.DOut, x.Qkv, x.PrefixK, x.PrefixV,
            new float[s.ProbsLength], new float[s.QkvLength], new float[48], new float[48], s with { KvHeads = 0 }));
        Assert.Contains("KV=0", ex.Message);
        var gqa = s with { KvHeads = 1 }; // qkv rows 4·3 + 2·3 = 18 columns, prefix 4·3
        Assert.Equal(2 * 3 * 18, gqa.QkvLength);
        ex = Assert.Throws<ArgumentException>(() => Attention.Forward(new float[gqa.QkvLength], x.PrefixK, x.PrefixV, x.Mask,
            new float[gqa.OutputLength], new float[gqa.ProbsLength], gqa, MaskValue, false));
        Assert.Contains("prefixK has 48 elements, expected m*KV*dh = 12", ex.Message);
    }

    // ---------------------------------------------------------------------------------------------
    // (6) grouped-query = multi-head over repeated key/value heads; causal decoders with padding
    // ---------------------------------------------------------------------------------------------

    [Theory]
    [InlineData(2, false, 3)]
    [InlineData(2, true, 3)]
    [InlineData(1, true, 0)]
    [InlineData(1, false, 3)]
    public void GroupedQueryEqualsMultiHeadWithRepeatedKeysAndValues(int kvHeads, bool causal, int m)
    {
        // Hugging Face's repeat_kv: query head h of a GQA model is MHA head h over a copy of KV head h / G. So GQA must give
        // MHA's outputs and probabilities on the repeated inputs, the same query gradients, and key/value (and prefix)
        // gradients equal to the sum of MHA's over each group's copies.
        const int H = 4;
        var s = new AttentionShape(Batch: 3, Tokens: 6, Heads: H, HeadDim: 5, PrefixLength: m, KvHeads: kvHeads);
        var mha = s with { KvHeads = H };
        var x = MakeInputs(41 + kvHeads + m, s, leftPadding: causal);
        int G = s.HeadsPerKv, dh = s.HeadDim, d = s.Model, dkv = s.KvModel, rows = s.Batch * s.Tokens;

        // Column c of MHA's k (or v) block, and of its prefix, copies column KvColumn(c) of GQA's.
        int KvColumn(int c) => c / dh / G * dh + c % dh;
        var qkvMha = new float[mha.QkvLength];
        for (int r = 0; r < rows; r++)
        {
            Array.Copy(x.Qkv, r * s.QkvRow, qkvMha, r * mha.QkvRow, d);
            for (int c = 0; c < d; c++)
            {
                qkvMha[r * mha.QkvRow + d + c] = x.Qkv[r * s.QkvRow + d + KvColumn(c)];
                qkvMha[r * mha.QkvRow + 2 * d + c] = x.Qkv[r * s.QkvRow + d + dkv + KvColumn(c)];
            }
        }
        var pkMha = new float[mha.PrefixElements];
        var pvMha = new float[mha.PrefixElements];
        for (int j = 0; j < m; j++)
            for (int c = 0; c < d; c++)
            {
                pkMha[j * d + c] = x.PrefixK[j * dkv + KvColumn(c)];
                pvMha[j * d + c] = x.PrefixV[j * dkv + KvColumn(c)];
            }
        var xMha = new Inputs(qkvMha, pkMha, pvMha, x.Mask, x.DOut);

        // Sums MHA's k/v and prefix gradient columns over each group: GQA's gradient layout.
        (double[] DQkv, double[] DK, double[] DV) Fold(double[] dQkv, double[] dK, double[] dV)
        {
            var f = new double[s.QkvLength];
            var fk = new double[s.PrefixElements];
            var fv = new double[s.PrefixElements];
            for (int r = 0; r < rows; r++)
            {
                for (int c = 0; c < d; c++) f[r * s.QkvRow + c] = dQkv[r * mha.QkvRow + c];
                for (int c = 0; c < d; c++)
                {
                    f[r * s.QkvRow + d + KvColumn(c)] += dQkv[r * mha.QkvRow + d + c];
                    f[r * s.QkvRow + d + dkv + KvColumn(c)] += dQkv[r * mha.QkvRow + 2 * d + c];
                }
            }
            for (int j = 0; j < m; j++)
                for (int c = 0; c < d; c++)
                {
                    fk[j * dkv + KvColumn(c)] += dK[j * d + c];
                    fv[j * dkv + KvColumn(c)] += dV[j * d + c];
                }
            return (f, fk, fv);
        }

        // fp64 reference: equal up to rounding.
        var gqaRef = Reference(x, s, causal);
        var mhaRef = Reference(xMha, mha, causal);
        var folded = Fold(mhaRef.DQkv, mhaRef.DK, mhaRef.DV);
        Assert.True(TestData.MaxRelError(gqaRef.Out, mhaRef.Out) <= 1e-12, "reference out");
        Assert.True(TestData.MaxRelError(gqaRef.Probs, mhaRef.Probs) <= 1e-12, "reference probs");
        Assert.True(TestData.MaxRelError(gqaRef.DQkv, folded.DQkv) <= 1e-12, "reference dqkv");
        if (m > 0)
        {
            Assert.True(TestData.MaxRelError(gqaRef.DK, folded.DK) <= 1e-12, "reference dPrefixK");
            Assert.True(TestData.MaxRelError(gqaRef.DV, folded.DV) <= 1e-12, "reference dPrefixV");
        }

        // Fast CPU: the forward does the same per-head arithmetic on the same gathered tiles, so it is bit-identical; the
        // backward sums the group in another order than the fold, so it agrees to fp32 rounding.
        var outGqa = TestData.Poisoned(s.OutputLength);
        var probsGqa = TestData.Poisoned(s.ProbsLength);
        var outMha = TestData.Poisoned(s.OutputLength);
        var probsMha = TestData.Poisoned(s.ProbsLength);
        Attention.Forward(x.Qkv, x.PrefixK, x.PrefixV, x.Mask, outGqa, probsGqa, s, MaskValue, causal);
        Attention.Forward(qkvMha, pkMha, pvMha, x.Mask, outMha, probsMha, mha, MaskValue, causal);
        Assert.Equal(outMha, outGqa);
        Assert.Equal(probsMha, probsGqa);
        var dQkv = new float[s.QkvLength];
        var dK = new float[s.PrefixElements];
        var dV = new float[s.PrefixElements];
        var dQkvMha = new float[mha.QkvLength];
        var dKMha = new float[mha.PrefixElements];
        var dVMha = new float[mha.PrefixElements];
        Attention.Backward(x.DOut, x.Qkv, x.PrefixK, x.PrefixV, probsGqa, dQkv, dK, dV, s);
        Attention.Backward(x.DOut, qkvMha, pkMha, pvMha, probsMha, dQkvMha, dKMha, dVMha, mha);
        var fastFolded = Fold(TestData.ToDouble(dQkvMha), TestData.ToDouble(dKMha), TestData.ToDouble(dVMha));
        Assert.True(TestData.MaxRelError(dQkv, fastFolded.DQkv) <= 1e-5, "fast dqkv");
        if (m > 0)
        {
            Assert.True(TestData.MaxRelError(dK, fastFolded.DK) <= 1e-5, "fast dPrefixK");
            Assert.True(TestData.MaxRelError(dV, fastFolded.DV) <= 1e-5, "fast dPrefixV");
        }
    }

    public static TheoryData<bool, float, int, int> PaddingCases => new()
    {
        { true, MaskValue, 0, 4 },
        { true, float.MinValue, 0, 4 },
        { false, MaskValue, 0, 4 },
        { false, float.MinValue, 0, 4 },
        { true, float.MinValue, 2, 2 },
        { false, float.MinValue, 2, 1 },
        { true, MaskValue, 0, 1 },
    };

    [Theory]
    [MemberData(nameof(PaddingCases))]
    public void CausalPaddingMatchesFiniteDifferencesAndStaysFinite(bool leftPadding, float maskValue, int m, int kvHeads)
    {
        // Left padding with m = 0 gives pad queries whose every visible key is padded: they must stay finite (softmax of their
        // raw scores, for either mask value), as must every gradient, with the additive mask at float.MinValue too.
        var s = new AttentionShape(Batch: 3, Tokens: 5, Heads: 4, HeadDim: 3, PrefixLength: m, KvHeads: kvHeads);
        var x = MakeInputs(61 + m + kvHeads + (leftPadding ? 1 : 0), s, leftPadding);
        var qkv = TestData.ToDouble(x.Qkv);
        var pk = TestData.ToDouble(x.PrefixK);
        var pv = TestData.ToDouble(x.PrefixV);
        var mask = TestData.ToDouble(x.Mask);
        var w = TestData.ToDouble(x.DOut);
        var output = new double[s.OutputLength];
        var probs = new double[s.ProbsLength];
        double Loss()
        {
            Attention.ForwardReference(qkv, pk, pv, mask, output, probs, s, maskValue, causal: true);
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
        Assert.All(output, v => Assert.True(double.IsFinite(v)));
        Assert.All(dQkv, v => Assert.True(double.IsFinite(v)));
        Assert.True(TestData.MaxRelError(dQkv, fdQkv) <= 1e-4, $"dqkv {TestData.MaxRelError(dQkv, fdQkv)}");
        if (m > 0)
        {
            Assert.True(TestData.MaxRelError(dK, fdK) <= 1e-4, $"dPrefixK {TestData.MaxRelError(dK, fdK)}");
            Assert.True(TestData.MaxRelError(dV, fdV) <= 1e-4, $"dPrefixV {TestData.MaxRelError(dV, fdV)}");
        }

        // Causality: key j > i gets probability 0 (example 0 is unpadded); padded keys get 0 unless the row sees nothing else.
        int T = s.Tokens, S = s.Keys;
        for (int i = 0; i < T; i++)
            for (int j = m + i + 1; j < S; j++) Assert.Equal(0.0, probs[i * S + j]);
        if (leftPadding && m == 0)
        {
            // Example 1's first query sees only its own (padded) key; its second sees two padded keys, with real weights.
            Assert.Equal(0f, x.Mask[T + 1]);
            int row = (1 * s.Heads) * T * S;
            Assert.Equal(1.0, probs[row], 12);
            Assert.InRange(probs[row + S], 1e-6, 1 - 1e-6);
        }

        // The mask value only matters through the underflow of padded keys: −10000 and float.MinValue agree.
        var other = new double[s.OutputLength];
        Attention.ForwardReference(qkv, pk, pv, mask, other, new double[s.ProbsLength], s,
            maskValue == MaskValue ? float.MinValue : MaskValue, causal: true);
        Assert.True(TestData.MaxRelError(other, output) <= 1e-12, "mask value");

        foreach (int bits in new[] { 0, 256, 128 })
        {
            Attention.ForceVectorBits = bits;
            try
            {
                CpuMatchesReference(x, s, causal: true, maskValue);
            }
            finally
            {
                Attention.ForceVectorBits = 0;
            }
        }
        GpuSimulatorMatchesReference(x, s, causal: true, maskValue);
    }

    // ---------------------------------------------------------------------------------------------
    // (7) ALiBi (BLOOM): per-head slope · key position added to the scores
    // ---------------------------------------------------------------------------------------------

    public static TheoryData<int, float[]> HuggingFaceSlopes => new()
    {
        // torch build_alibi_tensor(ones, heads, float32)[:, 0, 1]: powers of two, and the extra-slopes branch (6, 12, 16).
        { 8, [0.5f, 0.25f, 0.125f, 0.0625f, 0.03125f, 0.015625f, 0.0078125f, 0.00390625f] },
        { 6, [0.25f, 0.0625f, 0.015625f, 0.00390625f, 0.5f, 0.125f] },
        { 12, [0.5f, 0.25f, 0.125f, 0.0625f, 0.03125f, 0.015625f, 0.0078125f, 0.00390625f, 0.7071067690849304f, 0.3535533845424652f,
            0.1767766773700714f, 0.0883883386850357f] },
        { 16, [0.7071067690849304f, 0.4999999701976776f, 0.3535533845424652f, 0.2499999850988388f, 0.1767766773700714f,
            0.1249999850988388f, 0.0883883386850357f, 0.0624999925494194f, 0.044194165617227554f, 0.031249994412064552f,
            0.022097082808613777f, 0.015624997206032276f, 0.011048540472984314f, 0.007812498137354851f, 0.005524270236492157f,
            0.0039062488358467817f] },
    };

    /// <summary>
    /// Within one fp32 ulp: at 16 heads torch's powf(2^−½, 13) is 1 ulp below the correctly rounded value that
    /// <see cref="Attention.AlibiSlopes"/> gives; every other slope here is identical.
    /// </summary>
    [Theory]
    [MemberData(nameof(HuggingFaceSlopes))]
    public void AlibiSlopesAreHuggingFaces(int heads, float[] expected)
    {
        var slopes = Attention.AlibiSlopes(heads);
        Assert.Equal(heads, slopes.Length);
        for (int h = 0; h < heads; h++)
            Assert.True(Math.Abs(BitConverter.SingleToInt32Bits(slopes[h]) - BitConverter.SingleToInt32Bits(expected[h])) <= 1,
                $"head {h}: {slopes[h]:R} ≠ {expected[h]:R}");
        Assert.Equal(heads == 16 ? heads - 1 : heads, slopes.Zip(expected).Count(p => p.First == p.Second));
    }

    [Theory]
    [InlineData(true, 2, 4, 4, true)]
    [InlineData(true, 0, 4, 4, true)]
    [InlineData(true, 2, 4, 2, false)] // grouped-query
    [InlineData(true, 0, 6, 3, true)]  // non-power-of-two slopes
    [InlineData(false, 2, 4, 4, false)]
    public void AlibiReferenceMatchesItsFormulaAndFiniteDifferences(bool causal, int m, int heads, int kvHeads, bool left)
    {
        var s = new AttentionShape(Batch: 3, Tokens: 5, Heads: heads, HeadDim: 3, PrefixLength: m, KvHeads: kvHeads);
        var x = MakeInputs(71 + m + heads + kvHeads + (left ? 1 : 0), s, left, alibi: true);
        var qkv = TestData.ToDouble(x.Qkv);
        var pk = TestData.ToDouble(x.PrefixK);
        var pv = TestData.ToDouble(x.PrefixV);
        var mask = TestData.ToDouble(x.Mask);
        var slopes = TestData.ToDouble(x.Slopes!);
        var w = TestData.ToDouble(x.DOut);
        var output = new double[s.OutputLength];
        var probs = new double[s.ProbsLength];
        double Loss()
        {
            Attention.ForwardReference(qkv, pk, pv, mask, output, probs, s, float.MinValue, causal, slopes, x.KeyPositions);
            return TestData.Dot(w, output);
        }

        // The formula, written out for example 1 (padded), every head, its last query: softmax over the visible real keys of
        // q·k/√dh + slope_h·position, prefix key j at j.
        Loss();
        int T = s.Tokens, S = s.Keys, dh = s.HeadDim, b = 1, i = left ? T - 1 : T - 3;
        Assert.Equal(1f, x.Mask[b * T + i]);
        for (int h = 0; h < heads; h++)
        {
            var logits = new double[S];
            for (int j = 0; j < S; j++)
            {
                bool visible = (j < m || x.Mask[b * T + j - m] != 0) && (!causal || j <= m + i);
                double dot = 0;
                for (int k = 0; k < dh; k++)
                {
                    int kvCol = h / s.HeadsPerKv * dh + k;
                    double key = j < m ? pk[j * s.KvModel + kvCol] : qkv[(b * T + j - m) * s.QkvRow + s.Model + kvCol];
                    dot += qkv[(b * T + i) * s.QkvRow + h * dh + k] * key;
                }
                logits[j] = visible ? dot / Math.Sqrt(dh) + slopes[h] * (j < m ? j : x.KeyPositions![b * T + j - m]) : double.NegativeInfinity;
            }
            double max = logits.Max(), sum = logits.Sum(l => Math.Exp(l - max));
            for (int j = 0; j < S; j++)
                Assert.Equal(Math.Exp(logits[j] - max) / sum, probs[((b * heads + h) * T + i) * S + j], 12);
        }

        // The bias changes P (so these checks can fail): without slopes the probabilities differ.
        var plain = new double[s.ProbsLength];
        Attention.ForwardReference(qkv, pk, pv, mask, new double[s.OutputLength], plain, s, float.MinValue, causal);
        Assert.True(TestData.MaxRelError(plain, probs) > 1e-2, "ALiBi did not change the probabilities");

        // The backward through the saved P is the plain one: it matches central differences of the ALiBi forward.
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
        }
    }

    [Theory]
    [InlineData(3, 5, 4, 8, 3, true, 4, true)]
    [InlineData(3, 5, 4, 8, 0, true, 4, true)]
    [InlineData(3, 5, 4, 8, 3, true, 4, false)]
    [InlineData(3, 7, 4, 8, 5, true, 2, true)]  // grouped-query
    [InlineData(3, 7, 6, 8, 0, true, 3, false)] // non-power-of-two slopes
    [InlineData(2, 7, 6, 5, 3, false, 6, true)]
    [InlineData(2, 40, 12, 16, 9, true, 12, true)]
    public void AlibiCpuAndSimulatorMatchReference(int B, int T, int H, int dh, int m, bool causal, int kvHeads, bool left)
    {
        var s = new AttentionShape(B, T, H, dh, m, kvHeads);
        var x = MakeInputs(200 + B * T + m + H + kvHeads + (left ? 1 : 0), s, left, alibi: true);
        foreach (int bits in new[] { 0, 256, 128 })
        {
            Attention.ForceVectorBits = bits;
            try
            {
                CpuMatchesReference(x, s, causal, float.MinValue);
            }
            finally
            {
                Attention.ForceVectorBits = 0;
            }
        }
        if (T <= 8) GpuSimulatorMatchesReference(x, s, causal, float.MinValue);
    }

    [Fact]
    public void AlibiArgumentsOfTheWrongSizeAreNamed()
    {
        var s = new AttentionShape(2, 3, 4, 3, 1, 4);
        var x = MakeInputs(1, s, alibi: true);
        var ex = Assert.Throws<ArgumentException>(() => Attention.Forward(x.Qkv, x.PrefixK, x.PrefixV, x.Mask,
            new float[s.OutputLength], new float[s.ProbsLength], s, MaskValue, true, new float[3], x.KeyPositions));
        Assert.Contains("Attention.Forward: alibiSlopes has 3 elements, expected H = 4", ex.Message);
        ex = Assert.Throws<ArgumentException>(() => Attention.Forward(x.Qkv, x.PrefixK, x.PrefixV, x.Mask,
            new float[s.OutputLength], new float[s.ProbsLength], s, MaskValue, true, x.Slopes, new int[5]));
        Assert.Contains("keyPositions has 5 elements, expected B*T = 6", ex.Message);
    }

    // ---------------------------------------------------------------------------------------------

    private static (double[] Out, double[] Probs, double[] DQkv, double[] DK, double[] DV) Reference(Inputs x, AttentionShape s, bool causal,
        float maskValue = MaskValue)
    {
        var output = new double[s.OutputLength];
        var probs = new double[s.ProbsLength];
        var qkv = TestData.ToDouble(x.Qkv);
        var pk = TestData.ToDouble(x.PrefixK);
        var pv = TestData.ToDouble(x.PrefixV);
        Attention.ForwardReference(qkv, pk, pv, TestData.ToDouble(x.Mask), output, probs, s, maskValue, causal,
            x.Slopes is null ? null : TestData.ToDouble(x.Slopes), x.KeyPositions);
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
