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

    /// <summary>Length of the GPU workspace: the <see cref="GpuPartials"/> partial sums and one arrival count (zero between launches).</summary>
    public const int GpuWorkspace = GpuPartials + 1;

    /// <summary>
    /// <see cref="GpuPartials"/> threads in groups of <see cref="DeviceSum.Threads"/>: thread j sums x[j], x[j+P], … in fp64 into
    /// partials[j]; the last group to arrive (an atomic count after the last slot) reduces the partials with the fixed-order
    /// tree of <see cref="DeviceSum"/>, writes the norm and the clip factor, and zeroes the count for the next launch.
    /// </summary>
    internal static void ClipScaleKernel(ArrayView<float> x, ArrayView<double> partials, ArrayView<float> norm, ArrayView<float> clipScale, double maxNorm)
    {
        var shared = SharedMemory.Allocate<double>(DeviceSum.Threads);
        var last = SharedMemory.Allocate<int>(1);
        long j = Grid.IdxX * (long)Group.DimX + Group.IdxX;
        double s = 0;
        for (long i = j; i < x.Length; i += GpuPartials) { double e = x[i]; s += e * e; }
        partials[j] = s;
        MemoryFence.DeviceLevel();   // this group's partials are visible before its arrival is
        Group.Barrier();
        if (Group.IdxX == 0) last[0] = Atomic.Add(ref partials[GpuPartials], 1.0) == Grid.DimX - 1 ? 1 : 0;
        Group.Barrier();
        if (last[0] == 0) return;
        // Atomic reads come from L2: no stale L1 line of another group's partials.
        double t = 0;
        for (int i = Group.IdxX; i < GpuPartials; i += DeviceSum.Threads) t += Atomic.Add(ref partials[i], 0.0);
        double total = DeviceSum.GroupTotal(t, shared);
        if (Group.IdxX != 0) return;
        partials[GpuPartials] = 0;
        double n = Math.Sqrt(total);
        norm[0] = (float)n;
        // NaN marks a step AdamW must skip (a non-finite gradient would poison every parameter).
        clipScale[0] = double.IsNaN(n) || double.IsInfinity(n) ? float.NaN : (float)(maxNorm / (n + 1e-6) < 1.0 ? maxNorm / (n + 1e-6) : 1.0);
    }

    /// <summary>
    /// GPU, one launch and no host wait: the global L2 norm of <paramref name="x"/> into <paramref name="norm"/>[0] and its clip
    /// factor (<see cref="ClipScale(double, double)"/>; NaN when the norm is not finite) into <paramref name="clipScale"/>[0].
    /// Deterministic: <see cref="GpuPartials"/> fp64 partial sums, then one group's fixed-order tree over them.
    /// </summary>
    /// <param name="device">Device.</param>
    /// <param name="x">The gradient.</param>
    /// <param name="workspace"><see cref="GpuWorkspace"/> doubles, zeroed before the first launch (each launch leaves it ready for the next).</param>
    /// <param name="norm">One value.</param>
    /// <param name="clipScale">One value.</param>
    /// <param name="maxNorm">The clipping threshold.</param>
    /// <exception cref="ArgumentException">A buffer has the wrong length.</exception>
    public static void ClipScale(GpuDevice device, ArrayView<float> x, ArrayView<double> workspace, ArrayView<float> norm,
        ArrayView<float> clipScale, double maxNorm)
    {
        OpsCheck.Length(workspace.Length, GpuWorkspace, nameof(workspace), nameof(GpuWorkspace));
        OpsCheck.Length(norm.Length, 1, nameof(norm), "one value");
        OpsCheck.Length(clipScale.Length, 1, nameof(clipScale), "one value");
        var k = device.Kernel("GradientNorm.ClipScale", a => a.LoadStreamKernel<ArrayView<float>, ArrayView<double>, ArrayView<float>, ArrayView<float>,
            double>(ClipScaleKernel));
        k(new KernelConfig(GpuPartials / DeviceSum.Threads, DeviceSum.Threads), x, workspace, norm, clipScale, maxNorm);
    }

    /// <summary>
    /// The CPU twin of <see cref="ClipScale(GpuDevice, ArrayView{float}, ArrayView{double}, ArrayView{float}, ArrayView{float}, double)"/>:
    /// the norm of <paramref name="x"/> and its clip factor, NaN when the norm is not finite.
    /// </summary>
    public static (float Norm, float ClipScale) NormAndClipScale(ReadOnlySpan<float> x, double maxNorm)
    {
        double n = Math.Sqrt(SumOfSquares(x));
        return ((float)n, double.IsFinite(n) ? ClipScale(n, maxNorm) : float.NaN);
    }
}
