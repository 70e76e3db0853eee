namespace SkTuning.Gpu.Tests.Support;

/// <summary>Random inputs, poisoned outputs and error measures shared by the kernel tests.</summary>
internal static class TestData
{
    /// <summary>Uniform values in [-scale, scale]; never all zeros.</summary>
    public static float[] Random(Random rng, int n, float scale = 1f)
    {
        var a = new float[n];
        for (int i = 0; i < n; i++) a[i] = (float)((rng.NextDouble() * 2 - 1) * scale);
        return a;
    }

    /// <summary>An output buffer filled with NaN, so a kernel that skips an element fails the test.</summary>
    public static float[] Poisoned(int n)
    {
        var a = new float[n];
        Array.Fill(a, float.NaN);
        return a;
    }

    /// <summary>Widens to fp64 for the reference.</summary>
    public static double[] ToDouble(float[] a) => Array.ConvertAll(a, x => (double)x);

    /// <summary>
    /// Max over elements of |a-b| / max(|b|, floor), where floor = 1e-3·max|b| keeps near-zero elements
    /// from dominating; NaN anywhere gives +inf.
    /// </summary>
    public static double MaxRelError(ReadOnlySpan<float> actual, ReadOnlySpan<double> expected)
    {
        var widened = new double[actual.Length];
        for (int i = 0; i < actual.Length; i++) widened[i] = actual[i];
        return MaxRelError(widened, expected);
    }

    /// <inheritdoc cref="MaxRelError(ReadOnlySpan{float}, ReadOnlySpan{double})"/>
    public static double MaxRelError(ReadOnlySpan<double> actual, ReadOnlySpan<double> expected)
    {
        if (actual.Length != expected.Length) throw new ArgumentException($"length {actual.Length} != {expected.Length}");
        double scale = 0;
        foreach (var e in expected) scale = Math.Max(scale, Math.Abs(e));
        double floor = Math.Max(scale * 1e-3, 1e-300), worst = 0;
        for (int i = 0; i < actual.Length; i++)
        {
            if (!double.IsFinite(actual[i])) return double.PositiveInfinity;
            worst = Math.Max(worst, Math.Abs(actual[i] - expected[i]) / Math.Max(Math.Abs(expected[i]), floor));
        }
        return worst;
    }

    /// <summary>
    /// Central finite differences of a scalar fp64 function: d f / d x[i] ≈ (f(x+h) − f(x−h)) / 2h,
    /// for every element of <paramref name="x"/> (modified in place and restored).
    /// </summary>
    public static double[] FiniteDifference(double[] x, Func<double> f, double h = 1e-6)
    {
        var g = new double[x.Length];
        for (int i = 0; i < x.Length; i++) g[i] = CentralDifference(x, i, f, h);
        return g;
    }

    /// <summary>(f(x + h·eᵢ) − f(x − h·eᵢ)) / 2h for one element (x restored).</summary>
    public static double CentralDifference(double[] x, int i, Func<double> f, double h = 1e-6)
    {
        double saved = x[i];
        x[i] = saved + h; double plus = f();
        x[i] = saved - h; double minus = f();
        x[i] = saved;
        return (plus - minus) / (2 * h);
    }

    /// <summary>
    /// Checks <paramref name="gradient"/> at ~<paramref name="samples"/> random entries of <paramref name="x"/> against central
    /// finite differences of <paramref name="loss"/> (h = 1e-6): relative error (<see cref="MaxRelError(ReadOnlySpan{float}, ReadOnlySpan{double})"/>)
    /// at most <paramref name="tolerance"/>.
    /// </summary>
    public static void AssertSampledGradient(string label, double[] x, float[] gradient, Func<double> loss, Random rng, double tolerance = 1e-3, int samples = 12)
    {
        var picks = Enumerable.Range(0, samples).Select(_ => rng.Next(x.Length)).Distinct().ToArray();
        var fd = new double[picks.Length];
        var got = new float[picks.Length];
        for (int i = 0; i < picks.Length; i++)
        {
            fd[i] = CentralDifference(x, picks[i], loss);
            got[i] = gradient[picks[i]];
        }
        double err = MaxRelError(got, fd);
        Assert.True(err <= tolerance,
            $"{label}: relative error {err:E2} (got {string.Join(",", got.Take(4))} vs {string.Join(",", fd.Take(4).Select(v => v.ToString("G4")))})");
    }

    /// <summary>A fixed random projection Σ w·y used to turn a tensor output into a scalar loss for gradient checks.</summary>
    public static double Dot(ReadOnlySpan<double> w, ReadOnlySpan<double> y)
    {
        double s = 0;
        for (int i = 0; i < y.Length; i++) s += w[i] * y[i];
        return s;
    }

    /// <summary>max|actual − expected| / max|expected| (the normwise error; NaN anywhere gives +inf).</summary>
    public static double Normwise(ReadOnlySpan<float> actual, ReadOnlySpan<double> expected)
    {
        if (actual.Length != expected.Length) throw new ArgumentException($"length {actual.Length} != {expected.Length}");
        double diff = 0, scale = 0;
        for (int i = 0; i < actual.Length; i++)
        {
            if (!float.IsFinite(actual[i])) return double.PositiveInfinity;
            diff = Math.Max(diff, Math.Abs(actual[i] - expected[i]));
            scale = Math.Max(scale, Math.Abs(expected[i]));
        }
        return diff / Math.Max(scale, 1e-300);
    }
}
