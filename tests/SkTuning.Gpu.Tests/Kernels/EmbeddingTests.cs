using SkTuning.Gpu.Kernels;
using SkTuning.Gpu.Tests.Support;
using static SkTuning.Gpu.Tests.Kernels.OpsTest;

namespace SkTuning.Gpu.Tests.Kernels;

public class EmbeddingTests(SimulatorFixture sim) : IClassFixture<SimulatorFixture>
{
    [Fact]
    public void ReferenceBackwardMatchesFiniteDifferences()
    {
        var rng = new Random(1);
        int B = 2, T = 3, d = 4, V = 5, P = 4, TV = 2;
        var ids = Ints(rng, B * T, V); var types = Ints(rng, B * T, TV);
        var wte = D(TestData.Random(rng, V * d)); var wpe = D(TestData.Random(rng, P * d)); var wtt = D(TestData.Random(rng, TV * d));
        var w = D(TestData.Random(rng, B * T * d));
        double Loss()
        {
            var y = new double[B * T * d];
            Embedding.ForwardReference(ids, types, wte, wpe, wtt, y, B, T, d);
            return TestData.Dot(w, y);
        }
        double[] gte = new double[wte.Length], gpe = new double[wpe.Length], gtt = new double[wtt.Length];
        Embedding.BackwardReference(ids, types, w, gte, gpe, gtt, B, T, d);
        Close(gte, TestData.FiniteDifference(wte, Loss), what: "dWte");
        Close(gpe, TestData.FiniteDifference(wpe, Loss), what: "dWpe");
        Close(gtt, TestData.FiniteDifference(wtt, Loss), what: "dWtt");
    }

    [Theory]
    [InlineData(1, 37, 67, false)]
    [InlineData(3, 11, 384, true)]
    [InlineData(8, 64, 384, true)]
    public void CpuMatchesReference(int B, int T, int d, bool withTypes)
    {
        var rng = new Random(B * 1000 + d);
        int V = 50, P = T + 3, TV = 2;
        var ids = Ints(rng, B * T, V); var types = withTypes ? Ints(rng, B * T, TV) : [];
        float[] wte = TestData.Random(rng, V * d), wpe = TestData.Random(rng, P * d), wtt = TestData.Random(rng, TV * d);
        var y = TestData.Poisoned(B * T * d);
        Embedding.Forward(ids, types, wte, wpe, wtt, y, B, T, d);
        var yr = new double[y.Length];
        Embedding.ForwardReference(ids, types, D(wte), D(wpe), D(wtt), yr, B, T, d);
        Close(y, yr, what: "y");

        var dy = TestData.Random(rng, y.Length);
        float[] g0te = TestData.Random(rng, wte.Length), g0pe = TestData.Random(rng, wpe.Length), g0tt = TestData.Random(rng, wtt.Length);
        float[] gte = (float[])g0te.Clone(), gpe = (float[])g0pe.Clone(), gtt = (float[])g0tt.Clone();
        Embedding.Backward(ids, types, dy, gte, gpe, gtt, B, T, d);
        double[] rte = new double[wte.Length], rpe = new double[wpe.Length], rtt = new double[wtt.Length];
        Embedding.BackwardReference(ids, types, D(dy), rte, rpe, rtt, B, T, d);
        Close(Delta(gte, g0te), rte, what: "dWte");
        Close(Delta(gpe, g0pe), rpe, what: "dWpe");
        Close(Delta(gtt, g0tt), rtt, what: "dWtt");

        // Optional gradients: empty spans are skipped; results are deterministic.
        var again = (float[])g0te.Clone();
        Embedding.Backward(ids, types, dy, again, [], [], B, T, d);
        Assert.Equal(gte, again);
    }

    [Fact]
    public void SimulatorMatchesReference()
    {
        var dev = sim.Device;
        var rng = new Random(7);
        int B = 2, T = 5, d = 6, V = 9, P = 7, TV = 2;
        var ids = Ints(rng, B * T, V); var types = Ints(rng, B * T, TV);
        float[] wte = TestData.Random(rng, V * d), wpe = TestData.Random(rng, P * d), wtt = TestData.Random(rng, TV * d);
        using var bIds = Up(dev, ids); using var bTypes = Up(dev, types);
        using var bTe = Up(dev, wte); using var bPe = Up(dev, wpe); using var bTt = Up(dev, wtt);
        using var bY = Up(dev, TestData.Poisoned(B * T * d));
        Embedding.Forward(dev, bIds.View, bTypes.View, bTe.View, bPe.View, bTt.View, bY.View, B, T, d);
        var yr = new double[B * T * d];
        Embedding.ForwardReference(ids, types, D(wte), D(wpe), D(wtt), yr, B, T, d);
        Close(Down(dev, bY), yr, what: "y");

        var dy = TestData.Random(rng, B * T * d);
        float[] g0te = TestData.Random(rng, wte.Length), g0pe = TestData.Random(rng, wpe.Length), g0tt = TestData.Random(rng, wtt.Length);
        using var bDy = Up(dev, dy); using var gTe = Up(dev, g0te); using var gPe = Up(dev, g0pe); using var gTt = Up(dev, g0tt);
        Embedding.Backward(dev, bIds.View, bTypes.View, bDy.View, gTe.View, gPe.View, gTt.View, B, T, d);
        double[] rte = new double[wte.Length], rpe = new double[wpe.Length], rtt = new double[wtt.Length];
        Embedding.BackwardReference(ids, types, D(dy), rte, rpe, rtt, B, T, d);
        Close(Delta(Down(dev, gTe), g0te), rte, what: "dWte");
        Close(Delta(Down(dev, gPe), g0pe), rpe, what: "dWpe");
        Close(Delta(Down(dev, gTt), g0tt), rtt, what: "dWtt");
    }

    [Fact]
    public void KernelsCompileToPtx() => CompilesToPtx(typeof(Embedding), "ForwardKernel", "BackwardKernel");

    [Fact]
    public void BadSizesAndIdsThrow()
    {
        int d = 4;
        float[] wte = new float[10 * d], wpe = new float[3 * d], wtt = new float[2 * d];
        Throws(() => Embedding.Forward([1, 2, 3], [], wte, wpe, wtt, new float[2 * 3 * d], 2, 3, d), "ids", "3", "6");
        Throws(() => Embedding.Forward([1, 2, 10], [], wte, wpe, wtt, new float[3 * d], 1, 3, d), "token id 10", "[0,2]", "10");
        Throws(() => Embedding.Forward([1, 2, 3, 4], [], wte, wpe, wtt, new float[4 * d], 1, 4, d), "wpe", "T = 4");
        Throws(() => Embedding.Forward([1, 2, 3], [0, 2, 0], wte, wpe, wtt, new float[3 * d], 1, 3, d), "token type 2");
        Throws(() => Embedding.Forward([1, 2, 3], [], wte, wpe, wtt, new float[3 * d + 1], 1, 3, d), "output", "13", "12");
        Throws(() => Embedding.Backward([1, 2, 3], [], new float[3 * d], new float[5], [], [], 1, 3, d), "dWte", "5");
    }
}
