using ILGPU;
using ILGPU.Runtime;
using SkTuning.Gpu.Kernels.Gpu;

namespace SkTuning.Gpu.Kernels;

/// <summary>
/// Inverted dropout with a counter-based RNG: element <c>i</c> is kept when
/// <c>U(seed, offset + i) ≥ p</c>, where <c>U</c> is 24 bits of a splitmix64-style hash of (seed, index) scaled to [0, 1).
/// The hash uses only 64-bit integer ops, so the CPU and ILGPU code give bitwise the same mask for the same
/// (seed, offset) and the backward recomputes it instead of storing it. Forward <c>y = x·mask/(1−p)</c>;
/// backward <c>dx += dy·mask/(1−p)</c>.
/// </summary>
public static class Dropout
{
    internal readonly struct Args
    {
        public readonly ulong Seed;
        public readonly long Offset;
        public readonly float P, Scale;
        public Args(ulong seed, long offset, float p) { Seed = seed; Offset = offset; P = p; Scale = 1f / (1f - p); }
    }

    private static ulong Mix(ulong z)
    {
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }

    /// <summary>The counter-based hash: 64 well-mixed bits for (seed, index).</summary>
    public static ulong Hash(ulong seed, long index) => Mix(Mix(seed + 0x9E3779B97F4A7C15UL) + (ulong)index * 0x9E3779B97F4A7C15UL);

    /// <summary>Uniform in [0, 1) with 24 bits (exact in float) for (seed, index).</summary>
    public static float Uniform(ulong seed, long index) => (float)(uint)(Hash(seed, index) >> 40) * (1f / 16777216f);

    /// <summary>True when element <paramref name="index"/> is kept at drop probability <paramref name="p"/>.</summary>
    public static bool Keep(ulong seed, long index, float p) => Uniform(seed, index) >= p;

    internal static void CheckP(float p)
    {
        if (!(p >= 0f && p < 1f)) throw new ArgumentException($"drop probability p = {p} must be in [0, 1)", nameof(p));
    }

    /// <summary>fp64 reference forward (same mask as the float versions).</summary>
    public static void ForwardReference(ReadOnlySpan<double> x, Span<double> y, float p, ulong seed, long offset)
    {
        CheckP(p);
        OpsCheck.Length(y.Length, x.Length, nameof(y), "length of x");
        double scale = 1.0 / (1.0 - p);
        for (int i = 0; i < x.Length; i++) y[i] = Keep(seed, offset + i, p) ? x[i] * scale : 0;
    }

    /// <summary>fp64 reference backward (accumulates).</summary>
    public static void BackwardReference(ReadOnlySpan<double> dy, Span<double> dx, float p, ulong seed, long offset)
    {
        double scale = 1.0 / (1.0 - p);
        for (int i = 0; i < dy.Length; i++) if (Keep(seed, offset + i, p)) dx[i] += dy[i] * scale;
    }

    private const int Chunk = 8192;

    /// <summary>CPU forward (parallel over chunks; y may alias x).</summary>
    /// <exception cref="ArgumentException">Lengths disagree or p is outside [0, 1).</exception>
    public static unsafe void Forward(ReadOnlySpan<float> x, Span<float> y, float p, ulong seed, long offset)
    {
        CheckP(p);
        OpsCheck.Length(y.Length, x.Length, nameof(y), "length of x");
        var a = new Args(seed, offset, p);
        int n = x.Length, chunks = (n + Chunk - 1) / Chunk;
        fixed (float* px = x, py = y)
        {
            var X = new OpsPtr<float>(px); var Y = new OpsPtr<float>(py);
            OpsParallel.For(chunks, (long)n * 8, c =>
            {
                int end = Math.Min(n, (c + 1) * Chunk);
                for (int i = c * Chunk; i < end; i++) Y[i] = Keep(a.Seed, a.Offset + i, a.P) ? X[i] * a.Scale : 0f;
            });
        }
    }

    /// <summary>CPU backward: <c>dx += dy·mask/(1−p)</c>.</summary>
    /// <exception cref="ArgumentException">Lengths disagree or p is outside [0, 1).</exception>
    public static unsafe void Backward(ReadOnlySpan<float> dy, Span<float> dx, float p, ulong seed, long offset)
    {
        CheckP(p);
        OpsCheck.Length(dx.Length, dy.Length, nameof(dx), "length of dy");
        var a = new Args(seed, offset, p);
        int n = dy.Length, chunks = (n + Chunk - 1) / Chunk;
        fixed (float* pdy = dy, pdx = dx)
        {
            var Dy = new OpsPtr<float>(pdy); var Dx = new OpsPtr<float>(pdx);
            OpsParallel.For(chunks, (long)n * 8, c =>
            {
                int end = Math.Min(n, (c + 1) * Chunk);
                for (int i = c * Chunk; i < end; i++) if (Keep(a.Seed, a.Offset + i, a.P)) Dx[i] += Dy[i] * a.Scale;
            });
        }
    }

    internal static void ForwardKernel(Index1D i, ArrayView<float> x, ArrayView<float> y, Args a) =>
        y[i] = Keep(a.Seed, a.Offset + i, a.P) ? x[i] * a.Scale : 0f;

    internal static void BackwardKernel(Index1D i, ArrayView<float> dy, ArrayView<float> dx, Args a)
    {
        if (Keep(a.Seed, a.Offset + i, a.P)) dx[i] += dy[i] * a.Scale;
    }

    /// <summary>GPU forward (bitwise the same as the CPU one).</summary>
    public static void Forward(GpuDevice device, ArrayView<float> x, ArrayView<float> y, float p, ulong seed, long offset)
    {
        CheckP(p);
        OpsCheck.Length(y.Length, x.Length, nameof(y), "length of x");
        if (x.Length == 0) return;   // CUDA refuses an empty grid
        var k = device.Kernel("Dropout.Forward", acc => acc.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>, Args>(ForwardKernel));
        k((int)x.Length, x, y, new Args(seed, offset, p));
    }

    /// <summary>GPU backward: <c>dx += dy·mask/(1−p)</c>.</summary>
    public static void Backward(GpuDevice device, ArrayView<float> dy, ArrayView<float> dx, float p, ulong seed, long offset)
    {
        CheckP(p);
        OpsCheck.Length(dx.Length, dy.Length, nameof(dx), "length of dy");
        if (dy.Length == 0) return;   // CUDA refuses an empty grid
        var k = device.Kernel("Dropout.Backward", acc => acc.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>, Args>(BackwardKernel));
        k((int)dy.Length, dy, dx, new Args(seed, offset, p));
    }
}
