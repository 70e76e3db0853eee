using SkTuning.Gpu.Kernels;
using SkTuning.Gpu.Tests.Support;
using static SkTuning.Gpu.Tests.Kernels.OpsTest;

namespace SkTuning.Gpu.Tests.Kernels;

public class EmbeddingTests(SimulatorFixture sim) : IClassFixture<SimulatorFixture>
{
    /// <summary>Positions offset by <paramref name="offset"/> (a prefix), with the first <paramref name="pad"/> of each example repeated (left padding).</summary>
    private static int[] Positions(int B, int T, int offset, int pad) =>
        Enumerable.Range(0, B * T).Select(r => offset + Math.Max(0, r % T - pad)).ToArray();

    [Fact]
    public void ReferenceBackwardMatchesFiniteDifferences()
    {
        var rng = new Random(1);
        int B = 2, T = 3, d = 4, V = 5, P = 6, TV = 2;
        var ids = Ints(rng, B * T, V); var types = Ints(rng, B * T, TV); var positions = Positions(B, T, 2, 1);
        var wte = D(TestData.Random(rng, V * d)); var wpe = D(TestData.Random(rng, P * d)); var wtt = D(TestData.Random(rng, TV * d));
        var w = D(TestData.Random(rng, B * T * d));
        double Loss()
        {
            var y = new double[B * T * d];
            Embedding.ForwardReference(ids, types, positions, wte, wpe, wtt, y, B, T, d);
            return TestData.Dot(w, y);
        }
        double[] gte = new double[wte.Length], gpe = new double[wpe.Length], gtt = new double[wtt.Length];
        Embedding.BackwardReference(ids, types, positions, w, gte, gpe, gtt, B, T, d);
        Close(gte, TestData.FiniteDifference(wte, Loss), what: "dWte");
        Close(gpe, TestData.FiniteDifference(wpe, Loss), what: "dWpe");
        Close(gtt, TestData.FiniteDifference(wtt, Loss), what: "dWtt");
    }

    /// <summary>
    /// <paramref name="tables"/>: 0 = wte+wpe+wtt (BERT), 1 = wte+wpe (GPT-2, empty wtt), 2 = wte only (RoPE models, empty wpe).
    /// </summary>
    /// <summary>
    /// The bf16 word table (<see cref="Embedding.ForwardBf16"/>) against the fp64 reference on the bf16-rounded table: the
    /// gathered row is widened exactly, so the only error is the fp32 adds of the position and type rows.
    /// </summary>
    [Theory]
    [InlineData(3, 11, 67, true, 0)]
    [InlineData(2, 9, 384, false, 1)]
    [InlineData(4, 16, 96, false, 2)]
    public void Bf16TableMatchesReferenceOnRoundedTable(int B, int T, int d, bool withTypes, int tables)
    {
        var rng = new Random(B * 100 + d + tables);
        int V = 70, P = T + 3, TV = 2;
        var ids = Ints(rng, B * T, V); var types = withTypes ? Ints(rng, B * T, TV) : [];
        int[] positions = tables == 2 ? [] : Positions(B, T, 1, 1);
        float[] wte = TestData.Random(rng, V * d), wpe = tables == 2 ? [] : TestData.Random(rng, P * d), wtt = tables == 1 ? [] : TestData.Random(rng, TV * d);
        var wte16 = new ushort[wte.Length];
        BFloat16.FromFloat(wte, wte16);
        var y = TestData.Poisoned(B * T * d);
        Embedding.ForwardBf16(ids, types, positions, wte16, wpe, wtt, y, B, T, d);
        var yr = new double[y.Length];
        Embedding.ForwardReference(ids, types, positions, D(BFloat16.Round(wte)), D(wpe), D(wtt), yr, B, T, d);
        Close(y, yr, what: "y");
        // The table really was rounded: the unrounded reference differs.
        var y32 = new float[y.Length];
        Embedding.Forward(ids, types, positions, wte, wpe, wtt, y32, B, T, d);
        Assert.NotEqual(y32, y);
        Assert.Throws<ArgumentException>(() => Embedding.ForwardBf16([V], [], [], wte16, [], [], new float[d], 1, 1, d));
    }

    [Theory]
    [InlineData(1, 37, 67, false, 0)]
    [InlineData(3, 11, 384, true, 0)]
    [InlineData(8, 64, 384, true, 0)]
    [InlineData(3, 11, 67, false, 1)]
    [InlineData(3, 11, 67, true, 2)]
    public void CpuMatchesReference(int B, int T, int d, bool withTypes, int tables)
    {
        var rng = new Random(B * 1000 + d + tables);
        int V = 50, P = T + 7, TV = 2;
        var ids = Ints(rng, B * T, V); var types = withTypes ? Ints(rng, B * T, TV) : [];
        int[] positions = tables == 2 ? [] : Positions(B, T, 5, 2);
        float[] wte = TestData.Random(rng, V * d), wpe = tables == 2 ? [] : TestData.Random(rng, P * d), wtt = tables == 1 ? [] : TestData.Random(rng, TV * d);
        var y = TestData.Poisoned(B * T * d);
        Embedding.Forward(ids, types, positions, wte, wpe, wtt, y, B, T, d);
        var yr = new double[y.Length];
        Embedding.ForwardReference(ids, types, positions, D(wte), D(wpe), D(wtt), yr, B, T, d);
        Close(y, yr, what: "y");

        var dy = TestData.Random(rng, y.Length);
        float[] g0te = TestData.Random(rng, wte.Length), g0pe = TestData.Random(rng, wpe.Length), g0tt = TestData.Random(rng, wtt.Length);
        float[] gte = (float[])g0te.Clone(), gpe = (float[])g0pe.Clone(), gtt = (float[])g0tt.Clone();
        Embedding.Backward(ids, types, positions, dy, gte, gpe, gtt, B, T, d);
        double[] rte = new double[wte.Length], rpe = new double[wpe.Length], rtt = new double[wtt.Length];
        Embedding.BackwardReference(ids, types, positions, D(dy), rte, rpe, rtt, B, T, d);
        Close(Delta(gte, g0te), rte, what: "dWte");
        if (wpe.Length > 0) Close(Delta(gpe, g0pe), rpe, what: "dWpe");
        // Each type row sums up to B·T = 512 float rows (with cancellation): 1e-3 relative.
        if (wtt.Length > 0) Close(Delta(gtt, g0tt), rtt, 1e-3, what: "dWtt");

        // Optional gradients: empty spans are skipped; results are deterministic.
        var again = (float[])g0te.Clone();
        Embedding.Backward(ids, types, positions, dy, again, [], [], B, T, d);
        Assert.Equal(gte, again);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(1)]
    [InlineData(2)]
    public void SimulatorMatchesReference(int tables)
    {
        var dev = sim.Device;
        var rng = new Random(7 + tables);
        int B = 2, T = 5, d = 6, V = 9, P = 9, TV = 2;
        var ids = Ints(rng, B * T, V); var types = Ints(rng, B * T, TV);
        int[] positions = tables == 2 ? [] : Positions(B, T, 3, 1);
        float[] wte = TestData.Random(rng, V * d), wpe = tables == 2 ? [] : TestData.Random(rng, P * d), wtt = tables == 1 ? [] : TestData.Random(rng, TV * d);
        using var bIds = Up(dev, ids); using var bTypes = Up(dev, types); using var bPos = UpOrNull(dev, positions);
        using var bTe = Up(dev, wte); using var bPe = UpOrNull(dev, wpe); using var bTt = UpOrNull(dev, wtt);
        using var bY = Up(dev, TestData.Poisoned(B * T * d));
        Embedding.Forward(dev, bIds.View, bTypes.View, View(bPos), bTe.View, View(bPe), View(bTt), bY.View, B, T, d);
        var yr = new double[B * T * d];
        Embedding.ForwardReference(ids, types, positions, D(wte), D(wpe), D(wtt), yr, B, T, d);
        Close(Down(dev, bY), yr, what: "y");

        var dy = TestData.Random(rng, B * T * d);
        float[] g0te = TestData.Random(rng, wte.Length), g0pe = TestData.Random(rng, wpe.Length), g0tt = TestData.Random(rng, wtt.Length);
        using var bDy = Up(dev, dy); using var gTe = Up(dev, g0te); using var gPe = UpOrNull(dev, g0pe); using var gTt = UpOrNull(dev, g0tt);
        Embedding.Backward(dev, bIds.View, bTypes.View, View(bPos), bDy.View, gTe.View, View(gPe), View(gTt), B, T, d);
        double[] rte = new double[wte.Length], rpe = new double[wpe.Length], rtt = new double[wtt.Length];
        Embedding.BackwardReference(ids, types, positions, D(dy), rte, rpe, rtt, B, T, d);
        Close(Delta(Down(dev, gTe), g0te), rte, what: "dWte");
        if (gPe is not null) Close(Delta(Down(dev, gPe), g0pe), rpe, what: "dWpe");
        if (gTt is not null) Close(Delta(Down(dev, gTt), g0tt), rtt, what: "dWtt");
    }

    [Fact]
    public void KernelsCompileToPtx() => CompilesToPtx(typeof(Embedding), "ForwardKernel", "BackwardKernel");

    [Fact]
    public void BadSizesAndIdsThrow()
    {
        int d = 4;
        float[] wte = new float[10 * d], wpe = new float[3 * d], wtt = new float[2 * d];
        int[] p3 = [0, 1, 2];
        Throws(() => Embedding.Forward([1, 2, 3], [], p3, wte, wpe, wtt, new float[2 * 3 * d], 2, 3, d), "ids", "3", "6");
        Throws(() => Embedding.Forward([1, 2, 10], [], p3, wte, wpe, wtt, new float[3 * d], 1, 3, d), "token id 10", "[0,2]", "10");
        Throws(() => Embedding.Forward([1, 2, 3, 4], [], [0, 1, 2, 3], wte, wpe, wtt, new float[4 * d], 1, 4, d), "position 3", "[0,3]", "position table of 3");
        Throws(() => Embedding.Forward([1, 2, 3], [], [], wte, wpe, wtt, new float[3 * d], 1, 3, d), "positions", "0", "3");
        Throws(() => Embedding.Forward([1, 2, 3], [0, 2, 0], p3, wte, wpe, wtt, new float[3 * d], 1, 3, d), "token type 2");
        Throws(() => Embedding.Forward([1, 2, 3], [], p3, wte, wpe, wtt, new float[3 * d + 1], 1, 3, d), "output", "13", "12");
        Throws(() => Embedding.Forward([1, 2, 3], [], p3, wte, new float[5], wtt, new float[3 * d], 1, 3, d), "wpe", "5", "multiple");
        Throws(() => Embedding.Backward([1, 2, 3], [], p3, new float[3 * d], new float[5], [], [], 1, 3, d), "dWte", "5");
        Throws(() => Embedding.Backward([1, 2, 3], [], [0, 1, 5], new float[3 * d], [], new float[3 * d], [], 1, 3, d), "position 5", "[0,2]");
    }
}
