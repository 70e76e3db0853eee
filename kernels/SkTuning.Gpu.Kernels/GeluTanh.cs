using System.Runtime.Intrinsics;
using ILGPU;
using ILGPU.Runtime;
using SkTuning.Gpu.Kernels.Gpu;

namespace SkTuning.Gpu.Kernels;

/// <summary>
/// GELU, tanh approximation (Hugging Face <c>gelu_new</c> / <c>gelu_pytorch_tanh</c>, GPT-2, Phi, Gemma):
/// <c>y = 0.5·x·(1 + tanh(u))</c>, <c>u = √(2/π)·(x + 0.044715·x³)</c>. The float versions use the identity
/// <c>0.5·(1 + tanh u) = σ(2u)</c>: <c>y = x·σ(2u)</c> has no cancellation for negative x, where <c>1 + tanh u</c> loses
/// every digit. Backward: <c>dx += dy·(σ + x·σ·(1 − σ)·2u')</c>, <c>u' = √(2/π)·(1 + 3·0.044715·x²)</c>.
/// </summary>
public static class GeluTanh
{
    private const double K = 0.79788456080286535588;   // √(2/π)
    private const double C = 0.044715;
    private const float TwoKF = (float)(2 * K), CF = (float)C, ThreeCF = (float)(3 * C);

    /// <summary>GELU-tanh of one float (CPU and ILGPU).</summary>
    public static float Value(float x) => x * Sigmoid.Value(TwoKF * (x + CF * x * x * x));

    /// <summary>The derivative of <see cref="Value(float)"/> (CPU and ILGPU).</summary>
    public static float Derivative(float x)
    {
        float x2 = x * x, s = Sigmoid.Value(TwoKF * (x + CF * x2 * x));
        return s + x * (s - s * s) * TwoKF * (1f + ThreeCF * x2);
    }

    private static Vector512<float> Value(Vector512<float> x) =>
        x * Sigmoid.Value(Vector512.Create(TwoKF) * (x + Vector512.Create(CF) * x * x * x));

    private static Vector512<float> Derivative(Vector512<float> x)
    {
        var x2 = x * x;
        var s = Sigmoid.Value(Vector512.Create(TwoKF) * (x + Vector512.Create(CF) * x2 * x));
        return s + x * (s - s * s) * Vector512.Create(TwoKF) * (Vector512<float>.One + Vector512.Create(ThreeCF) * x2);
    }

    // ---------------------------------------------------------------- fp64 reference

    /// <summary>fp64 reference forward, the tanh formula as written.</summary>
    public static void ForwardReference(ReadOnlySpan<double> x, Span<double> y)
    {
        OpsCheck.Length(y.Length, x.Length, nameof(y), "length of x");
        for (int i = 0; i < x.Length; i++) y[i] = 0.5 * x[i] * (1 + Math.Tanh(K * (x[i] + C * x[i] * x[i] * x[i])));
    }

    /// <summary>fp64 reference backward: <c>dx += dy·(0.5·(1 + t) + 0.5·x·(1 − t²)·u')</c>, <c>t = tanh u</c>.</summary>
    public static void BackwardReference(ReadOnlySpan<double> dy, ReadOnlySpan<double> x, Span<double> dx)
    {
        for (int i = 0; i < x.Length; i++)
        {
            double v = x[i], t = Math.Tanh(K * (v + C * v * v * v));
            dx[i] += dy[i] * (0.5 * (1 + t) + 0.5 * v * (1 - t * t) * K * (1 + 3 * C * v * v));
        }
    }

    // ---------------------------------------------------------------- CPU

    /// <summary>CPU forward (Vector512 where available, parallel over chunks; y may alias x).</summary>
    /// <exception cref="ArgumentException">Lengths disagree.</exception>
    public static void Forward(ReadOnlySpan<float> x, Span<float> y) => Elementwise.Forward<Op>(x, y, 8);

    /// <summary>CPU backward: <c>dx += dy·GELU_tanh'(x)</c>.</summary>
    /// <exception cref="ArgumentException">Lengths disagree.</exception>
    public static void Backward(ReadOnlySpan<float> dy, ReadOnlySpan<float> x, Span<float> dx) =>
        Elementwise.Backward<Op>(dy, x, dx, "x", 12);

    /// <summary>GELU-tanh for <see cref="Elementwise"/>: the slope is read from the input x.</summary>
    private readonly struct Op : IActivation
    {
        public static float Value(float x) => GeluTanh.Value(x);
        public static Vector512<float> Value(Vector512<float> x) => GeluTanh.Value(x);
        public static float Slope(float x) => Derivative(x);
        public static Vector512<float> Slope(Vector512<float> x) => Derivative(x);
    }

    // ---------------------------------------------------------------- ILGPU

    internal static void ForwardKernel(Index1D i, ArrayView<float> x, ArrayView<float> y) => y[i] = Value(x[i]);

    internal static void BackwardKernel(Index1D i, ArrayView<float> dy, ArrayView<float> x, ArrayView<float> dx) =>
        dx[i] += dy[i] * Derivative(x[i]);

    /// <summary>GPU forward, one thread per element.</summary>
    /// <exception cref="ArgumentException">Lengths disagree.</exception>
    public static void Forward(GpuDevice device, ArrayView<float> x, ArrayView<float> y) =>
        Elementwise.Forward(device, "GeluTanh.Forward", ForwardKernel, x, y);

    /// <summary>GPU backward: <c>dx += dy·GELU_tanh'(x)</c>, one thread per element.</summary>
    /// <exception cref="ArgumentException">Lengths disagree.</exception>
    public static void Backward(GpuDevice device, ArrayView<float> dy, ArrayView<float> x, ArrayView<float> dx) =>
        Elementwise.Backward(device, "GeluTanh.Backward", BackwardKernel, dy, x, dx, "x");
}
