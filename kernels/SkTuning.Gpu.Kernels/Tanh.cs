using System.Runtime.Intrinsics;
using ILGPU;
using ILGPU.Runtime;
using SkTuning.Gpu.Kernels.Gpu;

namespace SkTuning.Gpu.Kernels;

/// <summary>
/// Hyperbolic tangent: <c>y = tanh(x)</c>; backward from the saved output, <c>dx += dy·(1 − y²)</c> (prefix tuning's
/// reparameterization MLP). The float version is this class's own so CPU and ILGPU agree and small arguments keep full
/// relative accuracy: |x| &lt; 0.55: the odd Taylor series to x¹⁷ (truncation ≤ 5e-9 relative); otherwise
/// <c>sign(x)·(1 − e)/(1 + e)</c> with <c>e = exp(−2|x|)</c> (no cancellation there: e ≤ 1/3).
/// </summary>
public static class Tanh
{
    private const float Split = 0.55f;
    // Taylor coefficients of tanh x = x·Σ c_k·x^(2k): 2^(2n)(2^(2n) − 1)·B_2n/(2n)!.
    private const float C1 = -0.33333333333333333f, C2 = 0.13333333333333333f, C3 = -0.053968253968253968f,
        C4 = 0.021869488536155203f, C5 = -0.0088632355299021966f, C6 = 0.0035921280365724810f,
        C7 = -0.0014558343870513183f, C8 = 0.00059002744094558602f;

    /// <summary>tanh of one float (CPU and ILGPU); NaN stays NaN, ±∞ gives ±1.</summary>
    public static float Value(float x)
    {
        float a = Math.Abs(x), r;
        if (a < Split)
        {
            float u = a * a;
            float p = C8;
            p = p * u + C7; p = p * u + C6; p = p * u + C5; p = p * u + C4;
            p = p * u + C3; p = p * u + C2; p = p * u + C1;
            r = a + a * u * p;
        }
        else
        {
            float e = MathF.Exp(-2f * a);
            r = (1f - e) / (1f + e);
        }
        return x < 0 ? -r : r;
    }

    /// <summary><see cref="Value(float)"/> on 16 lanes (both pieces computed and blended; <c>Vector512.Exp</c>).</summary>
    public static Vector512<float> Value(Vector512<float> x)
    {
        var a = Vector512.Abs(x);
        var u = a * a;
        var p = Vector512.Create(C8);
        p = p * u + Vector512.Create(C7); p = p * u + Vector512.Create(C6); p = p * u + Vector512.Create(C5);
        p = p * u + Vector512.Create(C4); p = p * u + Vector512.Create(C3); p = p * u + Vector512.Create(C2);
        p = p * u + Vector512.Create(C1);
        var small = a + a * u * p;
        var e = Vector512.Exp(Vector512.Create(-2f) * a);
        var one = Vector512<float>.One;
        var large = (one - e) / (one + e);
        var r = Vector512.ConditionalSelect(Vector512.LessThan(a, Vector512.Create(Split)), small, large);
        r = Vector512.ConditionalSelect(Vector512.Equals(x, x), r, x);   // NaN stays NaN
        var sign = Vector512.Create(-0f);
        return (r & ~sign) | (x & sign);
    }

    // ---------------------------------------------------------------- fp64 reference

    /// <summary>fp64 reference forward.</summary>
    public static void ForwardReference(ReadOnlySpan<double> x, Span<double> y)
    {
        OpsCheck.Length(y.Length, x.Length, nameof(y), "length of x");
        for (int i = 0; i < x.Length; i++) y[i] = Math.Tanh(x[i]);
    }

    /// <summary>fp64 reference backward from the saved output: <c>dx += dy·(1 − y²)</c>.</summary>
    public static void BackwardReference(ReadOnlySpan<double> dy, ReadOnlySpan<double> y, Span<double> dx)
    {
        for (int i = 0; i < y.Length; i++) dx[i] += dy[i] * (1 - y[i] * y[i]);
    }

    // ---------------------------------------------------------------- CPU

    /// <summary>CPU forward (Vector512 where available, parallel over chunks; y may alias x).</summary>
    /// <exception cref="ArgumentException">Lengths disagree.</exception>
    public static void Forward(ReadOnlySpan<float> x, Span<float> y) => Elementwise.Forward<Op>(x, y, 12);

    /// <summary>CPU backward from the saved output: <c>dx += dy·(1 − y²)</c>.</summary>
    /// <exception cref="ArgumentException">Lengths disagree.</exception>
    public static void Backward(ReadOnlySpan<float> dy, ReadOnlySpan<float> y, Span<float> dx) =>
        Elementwise.Backward<Op>(dy, y, dx, "y", 4);

    /// <summary>tanh for <see cref="Elementwise"/>: the slope 1 − y² is read from the saved output y.</summary>
    private readonly struct Op : IActivation
    {
        public static float Value(float x) => Tanh.Value(x);
        public static Vector512<float> Value(Vector512<float> x) => Tanh.Value(x);
        public static float Slope(float y) => 1f - y * y;
        public static Vector512<float> Slope(Vector512<float> y) => Vector512<float>.One - y * y;
    }

    // ---------------------------------------------------------------- ILGPU

    internal static void ForwardKernel(Index1D i, ArrayView<float> x, ArrayView<float> y) => y[i] = Value(x[i]);

    internal static void BackwardKernel(Index1D i, ArrayView<float> dy, ArrayView<float> y, ArrayView<float> dx) =>
        dx[i] += dy[i] * (1f - y[i] * y[i]);

    /// <summary>GPU forward.</summary>
    /// <exception cref="ArgumentException">Lengths disagree.</exception>
    public static void Forward(GpuDevice device, ArrayView<float> x, ArrayView<float> y) =>
        Elementwise.Forward(device, "Tanh.Forward", ForwardKernel, x, y);

    /// <summary>GPU backward from the saved output: <c>dx += dy·(1 − y²)</c>.</summary>
    /// <exception cref="ArgumentException">Lengths disagree.</exception>
    public static void Backward(GpuDevice device, ArrayView<float> dy, ArrayView<float> y, ArrayView<float> dx) =>
        Elementwise.Backward(device, "Tanh.Backward", BackwardKernel, dy, y, dx, "y");
}
