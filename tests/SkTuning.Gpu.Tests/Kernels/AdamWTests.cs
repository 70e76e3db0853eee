using SkTuning.Gpu.Kernels;
using SkTuning.Gpu.Tests.Support;
using static SkTuning.Gpu.Tests.Kernels.OpsTest;

namespace SkTuning.Gpu.Tests.Kernels;

public class AdamWTests(SimulatorFixture sim) : IClassFixture<SimulatorFixture>
{
    private const float Lr = 1e-2f, B1 = 0.9f, B2 = 0.999f, Eps = 1e-8f, Wd = 0.01f, Clip = 0.7f;

    /// <summary>Hand-written fp64 AdamW, independent of AdamW.StepReference.</summary>
    private static void HandStep(double[] p, double[] g, double[] m, double[] v, int t)
    {
        for (int i = 0; i < p.Length; i++)
        {
            double gi = g[i] * Clip;
            m[i] = B1 * m[i] + (1 - B1) * gi;
            v[i] = B2 * v[i] + (1 - B2) * gi * gi;
            double mhat = m[i] / (1 - Math.Pow(B1, t)), vhat = v[i] / (1 - Math.Pow(B2, t));
            p[i] = p[i] - Lr * (mhat / (Math.Sqrt(vhat) + Eps) + Wd * p[i]);
        }
    }

    private static double[] Sub(double[] a, double[] b) => a.Select((x, i) => x - b[i]).ToArray();
    private static float[] Sub(float[] a, float[] b) => a.Select((x, i) => x - b[i]).ToArray();

    [Theory]
    [InlineData(37 * 67)]
    [InlineData(100_000)]
    public void ThreeStepsMatchHandWrittenFp64(int n)
    {
        var rng = new Random(n);
        var p0 = TestData.Random(rng, n, 0.01f); // small θ0: float rounding of θ stays far below the ~lr-sized updates
        var grads = Enumerable.Range(0, 3).Select(_ => TestData.Random(rng, n)).ToArray();
        float[] p = (float[])p0.Clone(), m = new float[n], v = new float[n];
        double[] hp = D(p0), hm = new double[n], hv = new double[n];
        double[] rp = D(p0), rm = new double[n], rv = new double[n];
        for (int t = 1; t <= 3; t++)
        {
            AdamW.Step(p, grads[t - 1], m, v, new AdamWStep(Lr, B1, B2, Eps, Wd, t), Clip);
            HandStep(hp, D(grads[t - 1]), hm, hv, t);
            AdamW.StepReference(rp, D(grads[t - 1]), rm, rv, Lr, B1, B2, Eps, Wd, t, Clip);
        }
        Close(rp, hp, 1e-12, "reference θ");
        Close(Sub(p, p0), Sub(hp, D(p0)), what: "θ − θ0");
        Close(m, hm, what: "m");
        Close(v, hv, what: "v");
    }

    [Fact]
    public void UnfusedBaselineMatchesHandWrittenFp64()
    {
        const int n = 10_007;
        var rng = new Random(5);
        var p0 = TestData.Random(rng, n, 0.01f);
        float[] p = (float[])p0.Clone(), m = new float[n], v = new float[n];
        double[] hp = D(p0), hm = new double[n], hv = new double[n];
        for (int t = 1; t <= 3; t++)
        {
            var g = TestData.Random(rng, n);
            AdamW.StepUnfused(p, g, m, v, new AdamWStep(Lr, B1, B2, Eps, Wd, t), Clip);
            HandStep(hp, D(g), hm, hv, t);
        }
        Close(Sub(p, p0), Sub(hp, D(p0)), what: "θ − θ0");
        Close(m, hm, what: "m");
        Close(v, hv, what: "v");
    }

    [Fact]
    public void SimulatorMatchesHandWrittenFp64()
    {
        var dev = sim.Device;
        var rng = new Random(3);
        int n = 97;
        var p0 = TestData.Random(rng, n, 0.01f); // small θ0: float rounding of θ stays far below the ~lr-sized updates
        using var bp = Up(dev, p0); using var bm = Up(dev, new float[n]); using var bv = Up(dev, new float[n]);
        using var clip = Up(dev, [(float)Clip]);
        double[] hp = D(p0), hm = new double[n], hv = new double[n];
        for (int t = 1; t <= 3; t++)
        {
            var g = TestData.Random(rng, n);
            using var bg = Up(dev, g);
            AdamW.Step(dev, bp.View, bg.View, bm.View, bv.View, clip.View, new AdamWStep(Lr, B1, B2, Eps, Wd, t));
            dev.Synchronize();
            HandStep(hp, D(g), hm, hv, t);
        }
        Close(Sub(Down(dev, bp), p0), Sub(hp, D(p0)), what: "θ − θ0");
        Close(Down(dev, bm), hm, what: "m");
        Close(Down(dev, bv), hv, what: "v");
    }

    [Fact]
    public void ANaNClipScaleOnTheDeviceSkipsTheStep()
    {
        var dev = sim.Device;
        var p0 = TestData.Random(new Random(4), 33);
        using var bp = Up(dev, p0); using var bg = Up(dev, TestData.Random(new Random(5), 33));
        using var bm = Up(dev, new float[33]); using var bv = Up(dev, new float[33]); using var clip = Up(dev, [float.NaN]);
        AdamW.Step(dev, bp.View, bg.View, bm.View, bv.View, clip.View, new AdamWStep(Lr, B1, B2, Eps, Wd, 1));
        Assert.Equal(p0, Down(dev, bp));
        Assert.All(Down(dev, bm), x => Assert.Equal(0f, x));
    }

    [Fact]
    public void KernelsCompileToPtx() => CompilesToPtx(typeof(AdamW), "StepKernel");

    [Fact]
    public void BadSizesThrow()
    {
        var s = new AdamWStep(Lr, B1, B2, Eps, Wd, 1);
        Throws(() => AdamW.Step(new float[4], new float[5], new float[4], new float[4], s), "gradient", "5", "4");
        Throws(() => AdamW.Step(new float[4], new float[4], new float[4], new float[3], s), "v", "3", "4");
        Throws(() => new AdamWStep(Lr, B1, B2, Eps, Wd, 0), "step = 0");
    }
}
