using SkTuning.Gpu.Kernels;
using SkTuning.Gpu.Tests.Support;
using static SkTuning.Gpu.Tests.Kernels.OpsTest;

namespace SkTuning.Gpu.Tests.Kernels;

/// <summary>
/// Tolerances: the float rotation vs the fp64 one from the same (float) tables is a few roundings of |x|, i.e. ~3e-7·max|x|
/// absolute; <see cref="TestData.MaxRelError(ReadOnlySpan{float}, ReadOnlySpan{double})"/> floors at 1e-3·max, where outputs
/// that cancel (x·cos − y·sin ≈ 0) read as ~1e-4, so 1e-4. Columns RoPE must not touch are compared exactly.
/// </summary>
public class RopeTests(SimulatorFixture sim) : IClassFixture<SimulatorFixture>
{
    private const double Tol = 1e-4;

    /// <summary>
    /// Positions for <paramref name="batch"/> examples of <paramref name="seqLen"/> rows: offset by <paramref name="offset"/> (a prefix),
    /// with the first <paramref name="pad"/> rows of each example repeating the first position (left padding).
    /// </summary>
    private static int[] Positions(int batch, int seqLen, int offset, int pad) =>
        Enumerable.Range(0, batch * seqLen).Select(r => offset + Math.Max(0, r % seqLen - pad)).ToArray();

    [Fact]
    public void TablesAreHuggingFaceFp32()
    {
        int P = 2048, r = 32;
        float theta = 10000f;
        var (cos, sin) = Rope.Tables(P, r, theta);
        Assert.Equal(P * r / 2, cos.Length);
        Assert.Equal(P * r / 2, sin.Length);
        for (int i = 0; i < r / 2; i++) { Assert.Equal(1f, cos[i]); Assert.Equal(0f, sin[i]); }
        // inv_freq[1] = 1/θ^(2/32) rounded to float; position 3's angle is the float product.
        float inv1 = 1f / MathF.Pow(theta, 2f / r), angle = 3f * inv1;
        Assert.Equal((float)Math.Cos(angle), cos[3 * r / 2 + 1]);
        Assert.Equal((float)Math.Sin(angle), sin[3 * r / 2 + 1]);
        // Against exact fp64 angles p/θ^(2i/r): the fp32 angle carries ~2 roundings relative to its size.
        double worst = 0;
        for (int p = 0; p < P; p += 7)
            for (int i = 0; i < r / 2; i++)
            {
                double exact = p / Math.Pow(theta, 2.0 * i / r), bound = 3e-7 * exact + 1e-6;
                double err = Math.Max(Math.Abs(cos[p * r / 2 + i] - Math.Cos(exact)), Math.Abs(sin[p * r / 2 + i] - Math.Sin(exact)));
                worst = Math.Max(worst, err / bound);
            }
        Assert.True(worst <= 1, $"table error / bound = {worst:g3}");
    }

    [Fact]
    public void ReferenceBackwardIsTheTransposeAndMatchesFiniteDifferences()
    {
        var rng = new Random(1);
        int rows = 4, heads = 2, hd = 6, rot = 4, stride = heads * hd + 3;
        var (cf, sf) = Rope.Tables(16, rot, 100f);
        double[] cos = D(cf), sin = D(sf);
        var positions = Positions(2, 2, 5, 1);
        var x = D(TestData.Random(rng, rows * stride)); var w = D(TestData.Random(rng, rows * stride));
        double[] Rotated(double[] v) { var c = (double[])v.Clone(); Rope.ForwardReference(c, positions, cos, sin, rows, stride, heads, hd, rot); return c; }
        double[] Back(double[] v) { var c = (double[])v.Clone(); Rope.BackwardReference(c, positions, cos, sin, rows, stride, heads, hd, rot); return c; }
        double Loss() => TestData.Dot(w, Rotated(x));
        Close(Back(w), TestData.FiniteDifference(x, Loss), what: "dx");
        // <Rope(x), w> = <x, RopeBackward(w)>.
        double lhs = TestData.Dot(Rotated(x), w), rhs = TestData.Dot(x, Back(w));
        Assert.True(Math.Abs(lhs - rhs) <= 1e-12 * Math.Abs(lhs), $"<Rx, w> = {lhs:R}, <x, Rᵀw> = {rhs:R}");
        // And the inverse, up to the tables' cos² + sin² = 1 ± 1e-7 from float rounding.
        Close(Back(Rotated(x)), x, 1e-6, what: "Rᵀ·R·x");
    }

    public static TheoryData<int, int, int, int, int, int, int> Shapes => new()
    {
        // rows, heads, headDim, rotaryDim, stride − heads·headDim, position offset, left padding
        { 9, 4, 16, 16, 0, 0, 0 },          // full rotary, 8 pairs (scalar path)
        { 12, 6, 64, 64, 128, 10, 2 },      // fused qkv [rows, (H + 2·KV)·hd] with H = 4, KV = 2: heads = H + KV, stride past v
        { 10, 3, 80, 32, 7, 3, 1 },         // Phi-2: partial rotary 32 of 80, odd stride
        { 33, 2, 128, 128, 0, 100, 5 },     // 64 pairs (Vector512), positions from a prefix of 100
    };

    [Theory]
    [MemberData(nameof(Shapes))]
    public void CpuMatchesReference(int rows, int heads, int hd, int rot, int extra, int offset, int pad)
    {
        var rng = new Random(rows * 31 + hd + rot);
        int stride = heads * hd + extra, n = (rows - 1) * stride + heads * hd;
        var (cos, sin) = Rope.Tables(offset + rows + 3, rot, 10000f);
        int batch = rows % 3 == 0 ? 3 : rows % 2 == 0 ? 2 : 1;
        var positions = Positions(batch, rows / batch, offset, pad);
        var x0 = TestData.Random(rng, n, 2f);
        foreach (var backward in new[] { false, true })
        {
            var x = (float[])x0.Clone(); var xr = D(x0);
            if (backward)
            {
                Rope.Backward(x, positions, cos, sin, rows, stride, heads, hd, rot);
                Rope.BackwardReference(xr, positions, D(cos), D(sin), rows, stride, heads, hd, rot);
            }
            else
            {
                Rope.Forward(x, positions, cos, sin, rows, stride, heads, hd, rot);
                Rope.ForwardReference(xr, positions, D(cos), D(sin), rows, stride, heads, hd, rot);
            }
            Close(x, xr, Tol, what: backward ? "backward" : "forward");
            AssertUntouched(x, x0, rows, stride, heads, hd, rot);
        }
    }

    /// <summary>Columns ≥ rotaryDim of each head and columns past heads·headDim are bit-for-bit unchanged.</summary>
    private static void AssertUntouched(float[] x, float[] x0, int rows, int stride, int heads, int hd, int rot)
    {
        for (int i = 0; i < x.Length; i++)
        {
            int c = i % stride;
            if (c < heads * hd && c % hd < rot) continue;
            Assert.True(x[i] == x0[i], $"element {i} (row {i / stride}, column {c}) changed");
        }
    }

    [Fact]
    public void SimulatorMatchesReference()
    {
        var dev = sim.Device;
        var rng = new Random(3);
        int rows = 6, heads = 3, hd = 10, rot = 6, stride = heads * hd + 4, n = rows * stride;
        var (cos, sin) = Rope.Tables(20, rot, 500f);
        var positions = Positions(2, 3, 7, 1);
        var x0 = TestData.Random(rng, n, 2f);
        using var bp = Up(dev, positions); using var bc = Up(dev, cos); using var bs = Up(dev, sin);
        foreach (var backward in new[] { false, true })
        {
            using var bx = Up(dev, x0);
            var xr = D(x0);
            if (backward)
            {
                Rope.Backward(dev, bx.View, bp.View, bc.View, bs.View, rows, stride, heads, hd, rot);
                Rope.BackwardReference(xr, positions, D(cos), D(sin), rows, stride, heads, hd, rot);
            }
            else
            {
                Rope.Forward(dev, bx.View, bp.View, bc.View, bs.View, rows, stride, heads, hd, rot);
                Rope.ForwardReference(xr, positions, D(cos), D(sin), rows, stride, heads, hd, rot);
            }
            var x = Down(dev, bx);
            Close(x, xr, Tol, what: backward ? "backward" : "forward");
            AssertUntouched(x, x0, rows, stride, heads, hd, rot);
        }
    }

    [Fact]
    public void KernelsCompileToPtx() => CompilesToPtx(typeof(Rope), "RotateKernel");

    [Fact]
    public void BadSizesThrow()
    {
        var (cos, sin) = Rope.Tables(4, 4, 100f);
        int[] p2 = [0, 3];
        Throws(() => Rope.Forward(new float[16], p2, cos, sin, 2, 8, 2, 4, 3), "rotaryDim", "even", "3");
        Throws(() => Rope.Forward(new float[16], p2, cos, sin, 2, 8, 2, 4, 6), "rotaryDim", "headDim = 4");
        Throws(() => Rope.Forward(new float[16], p2, cos, sin, 2, 7, 2, 4, 4), "stride 7", "2·4");
        Throws(() => Rope.Forward(new float[15], p2, cos, sin, 2, 8, 2, 4, 4), "x", "15", "16");
        Throws(() => Rope.Forward(new float[16], [0, 4], cos, sin, 2, 8, 2, 4, 4), "position 4", "row 1", "4 positions");
        Throws(() => Rope.Forward(new float[16], [0], cos, sin, 2, 8, 2, 4, 4), "positions", "1", "2");
        Throws(() => Rope.Backward(new float[16], p2, cos, new float[6], 2, 8, 2, 4, 4), "sin", "6", "8");
        Throws(() => Rope.Tables(4, 5, 100f), "rotaryDim", "5");
    }
}
