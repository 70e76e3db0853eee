using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace SkTuning.Gpu.Benchmarking;

/// <summary>
/// The machine's measured fp32 FMA ceiling: independent Vector512 (or Vector256) FMA chains on every core.
/// Benchmarks report GFLOP/s as a fraction of this measured rate, not of a datasheet number.
/// </summary>
public static class MachinePeak
{
    /// <summary>Measures the fp32 FMA rate over all cores, in GFLOP/s (best of a few short runs).</summary>
    public static double MeasureGflops(TimeSpan? duration = null)
    {
        var time = duration ?? TimeSpan.FromMilliseconds(300);
        int threads = Environment.ProcessorCount;
        double best = 0;
        for (int trial = 0; trial < 3; trial++)
        {
            long iterations = 2_000_000;
            var sw = Stopwatch.StartNew();
            Parallel.For(0, threads, new ParallelOptions { MaxDegreeOfParallelism = threads }, _ => Chain(iterations));
            double seconds = sw.Elapsed.TotalSeconds;
            if (seconds < time.TotalSeconds / 4)
            {
                iterations = (long)(iterations * time.TotalSeconds / Math.Max(seconds, 1e-3));
                sw.Restart();
                Parallel.For(0, threads, new ParallelOptions { MaxDegreeOfParallelism = threads }, _ => Chain(iterations));
                seconds = sw.Elapsed.TotalSeconds;
            }
            best = Math.Max(best, threads * iterations * FlopsPerIteration / seconds / 1e9);
        }
        return best;
    }

    private static int FlopsPerIteration => 8 * 2 * (Vector512.IsHardwareAccelerated ? 16 : 8);

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static float Chain(long iterations)
    {
        if (Vector512.IsHardwareAccelerated)
        {
            var m = Vector512.Create(0.999999f); var a = Vector512.Create(1e-7f);
            Vector512<float> c0 = Vector512.Create(1f), c1 = c0, c2 = c0, c3 = c0, c4 = c0, c5 = c0, c6 = c0, c7 = c0;
            for (long i = 0; i < iterations; i++)
            {
                c0 = Vector512.FusedMultiplyAdd(c0, m, a); c1 = Vector512.FusedMultiplyAdd(c1, m, a);
                c2 = Vector512.FusedMultiplyAdd(c2, m, a); c3 = Vector512.FusedMultiplyAdd(c3, m, a);
                c4 = Vector512.FusedMultiplyAdd(c4, m, a); c5 = Vector512.FusedMultiplyAdd(c5, m, a);
                c6 = Vector512.FusedMultiplyAdd(c6, m, a); c7 = Vector512.FusedMultiplyAdd(c7, m, a);
            }
            return Vector512.Sum(c0 + c1 + c2 + c3 + c4 + c5 + c6 + c7);
        }
        var m8 = Vector256.Create(0.999999f); var a8 = Vector256.Create(1e-7f);
        Vector256<float> d0 = Vector256.Create(1f), d1 = d0, d2 = d0, d3 = d0, d4 = d0, d5 = d0, d6 = d0, d7 = d0;
        for (long i = 0; i < iterations; i++)
        {
            d0 = Vector256.FusedMultiplyAdd(d0, m8, a8); d1 = Vector256.FusedMultiplyAdd(d1, m8, a8);
            d2 = Vector256.FusedMultiplyAdd(d2, m8, a8); d3 = Vector256.FusedMultiplyAdd(d3, m8, a8);
            d4 = Vector256.FusedMultiplyAdd(d4, m8, a8); d5 = Vector256.FusedMultiplyAdd(d5, m8, a8);
            d6 = Vector256.FusedMultiplyAdd(d6, m8, a8); d7 = Vector256.FusedMultiplyAdd(d7, m8, a8);
        }
        return Vector256.Sum(d0 + d1 + d2 + d3 + d4 + d5 + d6 + d7);
    }
}
