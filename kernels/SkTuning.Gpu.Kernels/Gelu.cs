using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using ILGPU;
using ILGPU.Runtime;
using SkTuning.Gpu.Kernels.Gpu;

namespace SkTuning.Gpu.Kernels;

/// <summary>
/// Exact (erf) GELU: <c>y = 0.5·x·(1 + erf(x/√2)) = x·Φ(x)</c>; backward <c>dx += dy·(Φ(x) + x·φ(x))</c>.
/// .NET and ILGPU have no erf, so this class carries its own: <see cref="Erf(double)"/> (fp64, for the reference) and
/// <see cref="Erf(float)"/> (float, usable on the CPU and inside ILGPU kernels).
/// </summary>
public static class Gelu
{
    private const double InvSqrt2 = 0.70710678118654752440;
    private const double InvSqrt2Pi = 0.39894228040143267794;
    private const float InvSqrt2F = 0.70710678f;
    private const float InvSqrt2PiF = 0.39894228f;

    // ---------------------------------------------------------------- erf

    /// <summary>
    /// fp64 erf, absolute error ≲ 1e-15: for |x| &lt; 3 the all-positive series
    /// <c>erf x = (2/√π)·e^(−x²)·Σ (2x²)ⁿ·x / (1·3·…·(2n+1))</c> (no cancellation); beyond, erfc by the continued fraction
    /// <c>erfc x = e^(−x²)/√π · 1/(x + ½/(x + 1/(x + 3/2/(x + …))))</c> evaluated bottom-up.
    /// </summary>
    public static double Erf(double x)
    {
        if (double.IsNaN(x)) return double.NaN;
        double a = Math.Abs(x), r;
        if (a < 3)
        {
            double x2 = 2 * a * a, term = a, sum = a;
            for (int n = 1; n < 200; n++)
            {
                term *= x2 / (2 * n + 1);
                sum += term;
                if (term < 1e-18 * sum) break;
            }
            r = 2 / Math.Sqrt(Math.PI) * Math.Exp(-a * a) * sum;
        }
        else if (a < 30)
        {
            double f = a;
            for (int k = 200; k >= 1; k--) f = a + k * 0.5 / f;
            r = 1 - Math.Exp(-a * a) / (Math.Sqrt(Math.PI) * f);
        }
        else
        {
            r = 1;
        }
        return x < 0 ? -r : r;
    }

    // Fitted (Chebyshev interpolation, then monomial) for this class; see Erf(float).
    // erf(x) = x + x·A(x²) on |x| < 1.
    private const float A0 = 1.0589380963210715e-06f, A1 = -1.3909339941164944e-05f, A2 = 0.00011956562229897827f,
        A3 = -0.0008542637806385756f, A4 = 0.005223783664405346f, A5 = -0.026866132393479347f, A6 = 0.11283791065216064f,
        A7 = -0.37612637877464294f, A8 = 0.12837916612625122f;
    // erfc(x) = e^(−x²)·B(x − 2.5)/x on 1 ≤ |x| < 4.
    private const float B0 = -1.6893561394226708e-07f, B1 = 6.635046929659438e-07f, B2 = -1.3062983725831145e-06f,
        B3 = 4.627270755008794e-06f, B4 = -1.923789022839628e-05f, B5 = 6.497024878626689e-05f, B6 = -0.00020585805759765208f,
        B7 = 0.0006323063862510026f, B8 = -0.0018340294482186437f, B9 = 0.004934288095682859f, B10 = -0.012002349831163883f,
        B11 = 0.024937979876995087f, B12 = 0.5270159244537354f;

    /// <summary>
    /// float erf for CPU and ILGPU code. |x| &lt; 1: <c>x + x·A(x²)</c> (degree-8 polynomial); 1 ≤ |x| &lt; 4:
    /// <c>1 − e^(−x²)·B(|x| − 2.5)/|x|</c> (degree-12 polynomial for <c>x·e^(x²)·erfc x</c>); beyond: ±1 (erfc 4 = 1.5e-8).
    /// The polynomials were fitted for this class (Chebyshev interpolation, fit error 1e-12 and 3e-9 relative); computed
    /// in float, the max abs error on [−6, 6] is 6.3e-8, i.e. about one float ulp of erf near 1 (tested ≤ 1e-7).
    /// </summary>
    public static float Erf(float x)
    {
        float a = Math.Abs(x), r;
        if (a < 1f)
        {
            float u = a * a;
            float p = A0;
            p = p * u + A1; p = p * u + A2; p = p * u + A3; p = p * u + A4;
            p = p * u + A5; p = p * u + A6; p = p * u + A7; p = p * u + A8;
            r = a + a * p;
        }
        else if (a < 4f)
        {
            float t = a - 2.5f;
            float p = B0;
            p = p * t + B1; p = p * t + B2; p = p * t + B3; p = p * t + B4; p = p * t + B5; p = p * t + B6;
            p = p * t + B7; p = p * t + B8; p = p * t + B9; p = p * t + B10; p = p * t + B11; p = p * t + B12;
            r = 1f - MathF.Exp(-(a * a)) * p / a;
        }
        else
        {
            r = a >= 4f ? 1f : a; // NaN stays NaN
        }
        return x < 0 ? -r : r;
    }

    /// <summary>
    /// <see cref="Erf(float)"/> on 16 lanes (same polynomials, evaluated with FMAs, branch-free: both pieces computed and
    /// blended; the float Cody–Waite exp of <see cref="Attention"/> instead of <c>MathF.Exp</c>, so results may differ
    /// from the scalar one in the last ulp).
    /// </summary>
    public static Vector512<float> Erf(Vector512<float> x) => Erf(x, Exp(-(x * x)));

    // e^x for x ≤ 0. Not Vector512.Exp: that widens to double and is large enough that the JIT stops inlining the
    // erf around it, which made the vector GELU ~3x slower than with this float exp (RESULTS, 2026-12-01).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> Exp(Vector512<float> x) => Attention.ExpNonPositive<Attention.Simd512, Vector512<float>>(x);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> Fma(Vector512<float> a, Vector512<float> b, float c) =>
        Vector512.FusedMultiplyAdd(a, b, Vector512.Create(c));

    /// <summary><see cref="Erf(Vector512{float})"/> given <paramref name="expNegSquare"/> = e^(−x²), which GELU's derivative shares.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> Erf(Vector512<float> x, Vector512<float> expNegSquare)
    {
        var a = Vector512.Abs(x);
        var u = a * a;
        var p = Vector512.Create(A0);
        p = Fma(p, u, A1); p = Fma(p, u, A2); p = Fma(p, u, A3); p = Fma(p, u, A4);
        p = Fma(p, u, A5); p = Fma(p, u, A6); p = Fma(p, u, A7); p = Fma(p, u, A8);
        var small = Vector512.FusedMultiplyAdd(a, p, a);
        var t = a - Vector512.Create(2.5f);
        var q = Vector512.Create(B0);
        q = Fma(q, t, B1); q = Fma(q, t, B2); q = Fma(q, t, B3); q = Fma(q, t, B4); q = Fma(q, t, B5); q = Fma(q, t, B6);
        q = Fma(q, t, B7); q = Fma(q, t, B8); q = Fma(q, t, B9); q = Fma(q, t, B10); q = Fma(q, t, B11); q = Fma(q, t, B12);
        var one = Vector512<float>.One;
        var mid = one - expNegSquare * q / Vector512.Max(a, one);
        var r = Vector512.ConditionalSelect(Vector512.LessThan(a, one), small,
            Vector512.ConditionalSelect(Vector512.LessThan(a, Vector512.Create(4f)), mid, one));
        r = Vector512.ConditionalSelect(Vector512.Equals(x, x), r, x);   // NaN stays NaN
        var sign = Vector512.Create(-0f);
        return (r & ~sign) | (x & sign);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> Value(Vector512<float> x) =>
        Vector512.Create(0.5f) * x * (Vector512<float>.One + Erf(x * Vector512.Create(InvSqrt2F)));

    // Φ(x) + x·φ(x): erf(x/√2) needs e^(−x²/2) too, so one Exp serves both terms.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> Derivative(Vector512<float> x)
    {
        var gauss = Exp(Vector512.Create(-0.5f) * x * x);
        return Vector512.FusedMultiplyAdd(x * Vector512.Create(InvSqrt2PiF), gauss,
            Vector512.Create(0.5f) * (Vector512<float>.One + Erf(x * Vector512.Create(InvSqrt2F), gauss)));
    }

    /// <summary>GELU of one float (CPU and ILGPU).</summary>
    public static float Value(float x) => 0.5f * x * (1f + Erf(x * InvSqrt2F));

    /// <summary>dGELU/dx of one float: <c>Φ(x) + x·φ(x)</c> (CPU and ILGPU).</summary>
    public static float Derivative(float x) =>
        0.5f * (1f + Erf(x * InvSqrt2F)) + x * InvSqrt2PiF * MathF.Exp(-0.5f * x * x);

    // ---------------------------------------------------------------- fp64 reference

    /// <summary>fp64 reference forward.</summary>
    public static void ForwardReference(ReadOnlySpan<double> x, Span<double> y)
    {
        OpsCheck.Length(y.Length, x.Length, nameof(y), "length of x");
        for (int i = 0; i < x.Length; i++) y[i] = 0.5 * x[i] * (1 + Erf(x[i] * InvSqrt2));
    }

    /// <summary>fp64 reference backward: <c>dx += dy·(Φ(x) + x·φ(x))</c>.</summary>
    public static void BackwardReference(ReadOnlySpan<double> dy, ReadOnlySpan<double> x, Span<double> dx)
    {
        for (int i = 0; i < x.Length; i++)
            dx[i] += dy[i] * (0.5 * (1 + Erf(x[i] * InvSqrt2)) + x[i] * InvSqrt2Pi * Math.Exp(-0.5 * x[i] * x[i]));
    }

    // ---------------------------------------------------------------- CPU

    /// <summary>CPU forward (Vector512 where available, parallel over chunks; y may alias x).</summary>
    /// <exception cref="ArgumentException">Lengths disagree.</exception>
    public static void Forward(ReadOnlySpan<float> x, Span<float> y) => Elementwise.Forward<Op>(x, y, 16);

    /// <summary>CPU backward: <c>dx += dy·GELU'(x)</c>, or <c>dx = dy·GELU'(x)</c> when not <paramref name="accumulate"/>.</summary>
    /// <exception cref="ArgumentException">Lengths disagree.</exception>
    public static void Backward(ReadOnlySpan<float> dy, ReadOnlySpan<float> x, Span<float> dx, bool accumulate = true) =>
        Elementwise.Backward<Op>(dy, x, dx, "x", 24, accumulate);

    /// <summary>GELU for <see cref="Elementwise"/>: the slope is read from the input x.</summary>
    private readonly struct Op : IActivation
    {
        public static float Value(float x) => Gelu.Value(x);
        [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<float> Value(Vector512<float> x) => Gelu.Value(x);
        public static float Slope(float x) => Derivative(x);
        [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<float> Slope(Vector512<float> x) => Derivative(x);
    }

    // ---------------------------------------------------------------- ILGPU

    internal static void ForwardKernel(Index1D i, ArrayView<float> x, ArrayView<float> y) => y[i] = Value(x[i]);

    internal static void BackwardKernel(Index1D i, ArrayView<float> dy, ArrayView<float> x, ArrayView<float> dx) =>
        dx[i] += dy[i] * Derivative(x[i]);

    /// <summary>GPU forward.</summary>
    public static void Forward(GpuDevice device, ArrayView<float> x, ArrayView<float> y) =>
        Elementwise.Forward(device, "Gelu.Forward", ForwardKernel, x, y);

    /// <summary>GPU backward: <c>dx += dy·GELU'(x)</c>.</summary>
    public static void Backward(GpuDevice device, ArrayView<float> dy, ArrayView<float> x, ArrayView<float> dx) =>
        Elementwise.Backward(device, "Gelu.Backward", BackwardKernel, dy, x, dx, "x");
}
