using ILGPU;
using ILGPU.Runtime;
using SkTuning.Gpu.Kernels.Gpu;
using System.Runtime.Intrinsics;

namespace SkTuning.Gpu.Kernels;

/// <summary>
/// An element-wise activation for <see cref="Elementwise"/>: its value, and its slope expressed in the tensor the
/// backward reads (the input x for GELU, the saved output y for tanh). Static abstract so the JIT inlines both.
/// </summary>
internal interface IActivation
{
    static abstract float Value(float x);
    static abstract Vector512<float> Value(Vector512<float> x);
    static abstract float Slope(float saved);
    static abstract Vector512<float> Slope(Vector512<float> saved);
}

/// <summary>The CPU driver shared by the element-wise activations: fixed chunks in parallel, Vector512 inside, scalar tail.</summary>
internal static class Elementwise
{
    private const int Chunk = 8192;

    /// <summary>y = f(x) (y may alias x); <paramref name="workPerElement"/> weighs the parallel threshold.</summary>
    public static unsafe void Forward<TAct>(ReadOnlySpan<float> x, Span<float> y, long workPerElement) where TAct : IActivation
    {
        OpsCheck.Length(y.Length, x.Length, nameof(y), "length of x");
        int n = x.Length, chunks = (n + Chunk - 1) / Chunk;
        fixed (float* px = x, py = y)
        {
            var X = new OpsPtr<float>(px); var Y = new OpsPtr<float>(py);
            OpsParallel.For(chunks, n * workPerElement, c =>
            {
                int end = Math.Min(n, (c + 1) * Chunk), i = c * Chunk;
                if (Vector512.IsHardwareAccelerated)
                    for (; i + 16 <= end; i += 16) TAct.Value(Vector512.Create<float>(X.Span(i, 16))).CopyTo(Y.Span(i, 16));
                for (; i < end; i++) Y[i] = TAct.Value(X[i]);
            });
        }
    }

    /// <summary>
    /// <c>dx += dy·slope(saved)</c>, or <c>dx = dy·slope(saved)</c> when not <paramref name="accumulate"/> (dx need not be
    /// zeroed first: one read of it less); <paramref name="savedName"/> names the saved tensor in size errors.
    /// </summary>
    public static unsafe void Backward<TAct>(ReadOnlySpan<float> dy, ReadOnlySpan<float> saved, Span<float> dx, string savedName,
        long workPerElement, bool accumulate = true) where TAct : IActivation
    {
        OpsCheck.Length(dy.Length, saved.Length, nameof(dy), "length of " + savedName);
        OpsCheck.Length(dx.Length, saved.Length, nameof(dx), "length of " + savedName);
        int n = saved.Length, chunks = (n + Chunk - 1) / Chunk;
        fixed (float* ps = saved, pdy = dy, pdx = dx)
        {
            var S = new OpsPtr<float>(ps); var Dy = new OpsPtr<float>(pdy); var Dx = new OpsPtr<float>(pdx);
            OpsParallel.For(chunks, n * workPerElement, c =>
            {
                int end = Math.Min(n, (c + 1) * Chunk), i = c * Chunk;
                if (Vector512.IsHardwareAccelerated)
                    for (; i + 16 <= end; i += 16)
                    {
                        var dxv = Dx.Span(i, 16);
                        var g = Vector512.Create<float>(Dy.Span(i, 16)) * TAct.Slope(Vector512.Create<float>(S.Span(i, 16)));
                        (accumulate ? Vector512.Create<float>(dxv) + g : g).CopyTo(dxv);
                    }
                for (; i < end; i++) Dx[i] = (accumulate ? Dx[i] : 0f) + Dy[i] * TAct.Slope(S[i]);
            });
        }
    }

    /// <summary>GPU <c>y = f(x)</c> by the activation's one-thread-per-element <paramref name="kernel"/>, loaded once as <paramref name="name"/>.</summary>
    /// <exception cref="ArgumentException">Lengths disagree.</exception>
    public static void Forward(GpuDevice device, string name, Action<Index1D, ArrayView<float>, ArrayView<float>> kernel,
        ArrayView<float> x, ArrayView<float> y)
    {
        OpsCheck.Length(y.Length, x.Length, nameof(y), "length of x");
        if (x.Length == 0) return;   // CUDA refuses an empty grid
        device.Kernel(name, a => a.LoadAutoGroupedStreamKernel(kernel))((int)x.Length, x, y);
    }

    /// <summary>GPU <c>dx += dy·slope(saved)</c> by the activation's <paramref name="kernel"/>; <paramref name="savedName"/> names the saved tensor in size errors.</summary>
    /// <exception cref="ArgumentException">Lengths disagree.</exception>
    public static void Backward(GpuDevice device, string name, Action<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>> kernel,
        ArrayView<float> dy, ArrayView<float> saved, ArrayView<float> dx, string savedName)
    {
        OpsCheck.Length(dy.Length, saved.Length, nameof(dy), "length of " + savedName);
        OpsCheck.Length(dx.Length, saved.Length, nameof(dx), "length of " + savedName);
        if (saved.Length == 0) return;
        device.Kernel(name, a => a.LoadAutoGroupedStreamKernel(kernel))((int)saved.Length, dy, saved, dx);
    }
}

/// <summary>
/// The logistic function <c>σ(z) = 1/(1 + e^(−z))</c>, shared by SiLU (<see cref="SwiGlu"/>) and tanh-GELU
/// (<see cref="GeluTanh"/>, which is <c>x·σ(2u)</c>). Written this way it has no cancellation for either sign of z:
/// <c>e^(−z) → ∞</c> gives 0, not NaN. Usable on the CPU and inside ILGPU kernels.
/// </summary>
internal static class Sigmoid
{
    /// <summary>σ(z) of one float.</summary>
    public static float Value(float z) => 1f / (1f + MathF.Exp(-z));

    /// <summary>σ(z) on 16 lanes (<c>Vector512.Exp</c>).</summary>
    public static Vector512<float> Value(Vector512<float> z) => Vector512<float>.One / (Vector512<float>.One + Vector512.Exp(-z));
}
