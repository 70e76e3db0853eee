using System.Runtime.Intrinsics;
using ILGPU;
using ILGPU.Runtime;
using SkTuning.Gpu.Kernels.Gpu;

namespace SkTuning.Gpu.Kernels;

/// <summary>
/// Global L2 norm over one or several gradient buffers (fp64 accumulation, deterministic), and the clip factor
/// <c>min(1, maxNorm/(norm + 1e-6))</c> to pass to <see cref="AdamWStep"/>.
/// </summary>
public static class GradientNorm
{
    /// <summary>Number of fp64 partial sums the GPU kernel writes (one per thread).</summary>
    public const int GpuPartials = 4096;

    /// <summary>fp64 reference: Σ x².</summary>
    public static double SumOfSquaresReference(ReadOnlySpan<double> x)
    {
        double s = 0;
        foreach (var e in x) s += e * e;
        return s;
    }

    /// <summary>The clip factor <c>min(1, maxNorm/(norm + 1e-6))</c>.</summary>
    public static float ClipScale(double norm, double maxNorm) => (float)Math.Min(1.0, maxNorm / (norm + 1e-6));

    private const int Chunk = 16384;

    /// <summary>CPU Σ x² with fp64 accumulation (AVX-512 widening where available), chunks summed in order.</summary>
    public static unsafe double SumOfSquares(ReadOnlySpan<float> x)
    {
        int n = x.Length, chunks = (n + Chunk - 1) / Chunk;
        var partial = new double[chunks];
        fixed (float* px = x)
        fixed (double* pp = partial)
        {
            var X = new OpsPtr<float>(px); var Pt = new OpsPtr<double>(pp);
            OpsParallel.For(chunks, (long)n * 2, c =>
            {
                int start = c * Chunk, end = Math.Min(n, start + Chunk), i = start;
                double s = 0;
                if (Vector512.IsHardwareAccelerated)
                {
                    var acc = Vector512<double>.Zero;
                    for (; i + 16 <= end; i += 16)
                    {
                        var (lo, hi) = Vector512.Widen(Vector512.Create<float>(X.Span(i, 16)));
                        acc += lo * lo + hi * hi;
                    }
                    s = Vector512.Sum(acc);
                }
                for (; i < end; i++) s += (double)X[i] * X[i];
                Pt[c] = s;
            });
        }
        double total = 0;
        foreach (var p in partial) total += p;
        return total;
    }

    /// <summary>CPU global L2 norm over several buffers: √(Σ_buffers Σ x²).</summary>
    public static double Norm(IEnumerable<ReadOnlyMemory<float>> buffers)
    {
        double s = 0;
        foreach (var b in buffers) s += SumOfSquares(b.Span);
        return Math.Sqrt(s);
    }

    /// <summary>Thread j sums x[j], x[j+P], … in fp64 into partials[j] (deterministic).</summary>
    internal static void SumOfSquaresKernel(Index1D j, ArrayView<float> x, ArrayView<double> partials)
    {
        double s = 0;
        for (long i = j; i < x.Length; i += partials.Length) { double e = x[i]; s += e * e; }
        partials[j] = s;
    }

    /// <summary>GPU: writes <see cref="GpuPartials"/> fp64 partial sums of x² into <paramref name="partials"/> (their sum is Σ x²).</summary>
    public static void SumOfSquares(GpuDevice device, ArrayView<float> x, ArrayView<double> partials)
    {
        OpsCheck.Length(partials.Length, GpuPartials, nameof(partials), nameof(GpuPartials));
        var k = device.Kernel("GradientNorm.SumOfSquares", a => a.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<double>>(SumOfSquaresKernel));
        k(GpuPartials, x, partials);
    }

    /// <summary>GPU global L2 norm over several buffers (synchronizes; partials summed on the host in order).</summary>
    public static double Norm(GpuDevice device, IEnumerable<ArrayView<float>> buffers)
    {
        using var partials = device.Accelerator.Allocate1D<double>(GpuPartials);
        var host = new double[GpuPartials];
        double s = 0;
        foreach (var b in buffers)
        {
            SumOfSquares(device, b, partials.View);
            device.Synchronize();
            partials.CopyToCPU(host);
            foreach (var p in host) s += p;
        }
        return Math.Sqrt(s);
    }
}
