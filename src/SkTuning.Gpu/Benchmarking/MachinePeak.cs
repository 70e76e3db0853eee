using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace SkTuning.Gpu.Benchmarking;

/// <summary>
/// The machine's measured fp32 FMA ceiling: independent Vector512 (or Vector256) FMA chains on every core.
/// Benchmarks report GFLOP/s as a fraction of this measured rate, not of a datasheet number. With
/// <see cref="MeasureClockGhz"/> it also says what kind of core ran it (flop per cycle), so that a VM moved to another
/// host shows in the numbers: a core with one 512-bit FMA per cycle (AMD Zen 4: two 256-bit halves) gives 32 flop/cycle,
/// one with two full-width pipes (Zen 5, Intel server cores) 64.
/// </summary>
public static class MachinePeak
{
    /// <summary>Independent accumulators per thread: enough for two FMA pipes × up to 6 cycles of FMA latency.</summary>
    private const int Chains = 12;

    /// <summary>Measures the fp32 FMA rate over all cores, in GFLOP/s (best of a few short runs after a warm-up).</summary>
    public static double MeasureGflops(TimeSpan? duration = null)
    {
        var time = duration ?? TimeSpan.FromMilliseconds(300);
        int threads = Environment.ProcessorCount;
        var options = new ParallelOptions { MaxDegreeOfParallelism = threads };
        // Warm-up: the loop compiled at full optimization, the thread pool's workers started, the cores at speed.
        long iterations = 2_000_000;
        Parallel.For(0, threads, options, _ => Chains12(iterations / 10));
        var sw = Stopwatch.StartNew();
        Parallel.For(0, threads, options, _ => Chains12(iterations));
        double seconds = sw.Elapsed.TotalSeconds;
        iterations = Math.Max(iterations, (long)(iterations * time.TotalSeconds / 3 / Math.Max(seconds, 1e-3)));
        double best = 0;
        for (int trial = 0; trial < 3; trial++)
        {
            sw.Restart();
            Parallel.For(0, threads, options, _ => Chains12(iterations));
            best = Math.Max(best, threads * iterations * FlopsPerIteration / sw.Elapsed.TotalSeconds / 1e9);
        }
        return best;
    }

    /// <summary>
    /// The clock one core runs at, in GHz, from a single dependent FMA chain (best of a few runs): each FMA waits for the
    /// previous one, so the rate is clock ÷ FMA latency, taken as 4 cycles (AMD Zen 2-5, Intel Skylake and later). Timed
    /// in the thread's CPU time where the OS gives it (Linux), so other processes do not lower it: on a loaded machine
    /// the wall-clock peak then falls below 32 or 64 flop per cycle and per core, and shows the load.
    /// </summary>
    public static double MeasureClockGhz()
    {
        const long iterations = 20_000_000;
        const int latencyCycles = 4;
        Chain1(iterations / 10);
        double best = double.MaxValue;
        for (int trial = 0; trial < 5; trial++)
        {
            var sw = Stopwatch.StartNew();
            double cpu0 = CpuTime.ThreadSeconds();
            Chain1(iterations);
            double cpu = CpuTime.ThreadSeconds() - cpu0;
            best = Math.Min(best, cpu > 0 ? cpu : sw.Elapsed.TotalSeconds);
        }
        return latencyCycles * iterations / best / 1e9;
    }

    /// <summary>
    /// One core's FMA rate in GFLOP per second of the measuring thread's own CPU time (best of 3 after a warm-up): the
    /// per-core peak, unaffected by other processes. 0 where the OS has no thread CPU clock.
    /// </summary>
    public static double MeasurePerCoreGflops()
    {
        const long iterations = 20_000_000;
        Chains12(iterations / 10);
        double best = 0;
        for (int trial = 0; trial < 3; trial++)
        {
            double t0 = CpuTime.ThreadSeconds();
            Chains12(iterations);
            double seconds = CpuTime.ThreadSeconds() - t0;
            if (seconds > 0) best = Math.Max(best, iterations * FlopsPerIteration / seconds / 1e9);
        }
        return best;
    }

    private static int FlopsPerIteration => Chains * 2 * (Vector512.IsHardwareAccelerated ? 16 : 8);

    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static float Chain1(long iterations)
    {
        var m = Vector256.Create(0.999999f); var a = Vector256.Create(1e-7f); var c = Vector256.Create(1f);
        for (long i = 0; i < iterations; i++) c = Vector256.FusedMultiplyAdd(c, m, a);
        return c.GetElement(0);
    }

    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static float Chains12(long iterations)
    {
        if (Vector512.IsHardwareAccelerated)
        {
            var m = Vector512.Create(0.999999f); var a = Vector512.Create(1e-7f);
            Vector512<float> c0 = Vector512.Create(1f), c1 = c0, c2 = c0, c3 = c0, c4 = c0, c5 = c0;
            Vector512<float> c6 = c0, c7 = c0, c8 = c0, c9 = c0, c10 = c0, c11 = c0;
            for (long i = 0; i < iterations; i++)
            {
                c0 = Vector512.FusedMultiplyAdd(c0, m, a); c1 = Vector512.FusedMultiplyAdd(c1, m, a);
                c2 = Vector512.FusedMultiplyAdd(c2, m, a); c3 = Vector512.FusedMultiplyAdd(c3, m, a);
                c4 = Vector512.FusedMultiplyAdd(c4, m, a); c5 = Vector512.FusedMultiplyAdd(c5, m, a);
                c6 = Vector512.FusedMultiplyAdd(c6, m, a); c7 = Vector512.FusedMultiplyAdd(c7, m, a);
                c8 = Vector512.FusedMultiplyAdd(c8, m, a); c9 = Vector512.FusedMultiplyAdd(c9, m, a);
                c10 = Vector512.FusedMultiplyAdd(c10, m, a); c11 = Vector512.FusedMultiplyAdd(c11, m, a);
            }
            return Vector512.Sum(c0 + c1 + c2 + c3 + c4 + c5 + c6 + c7 + c8 + c9 + c10 + c11);
        }
        var m8 = Vector256.Create(0.999999f); var a8 = Vector256.Create(1e-7f);
        Vector256<float> d0 = Vector256.Create(1f), d1 = d0, d2 = d0, d3 = d0, d4 = d0, d5 = d0;
        Vector256<float> d6 = d0, d7 = d0, d8 = d0, d9 = d0, d10 = d0, d11 = d0;
        for (long i = 0; i < iterations; i++)
        {
            d0 = Vector256.FusedMultiplyAdd(d0, m8, a8); d1 = Vector256.FusedMultiplyAdd(d1, m8, a8);
            d2 = Vector256.FusedMultiplyAdd(d2, m8, a8); d3 = Vector256.FusedMultiplyAdd(d3, m8, a8);
            d4 = Vector256.FusedMultiplyAdd(d4, m8, a8); d5 = Vector256.FusedMultiplyAdd(d5, m8, a8);
            d6 = Vector256.FusedMultiplyAdd(d6, m8, a8); d7 = Vector256.FusedMultiplyAdd(d7, m8, a8);
            d8 = Vector256.FusedMultiplyAdd(d8, m8, a8); d9 = Vector256.FusedMultiplyAdd(d9, m8, a8);
            d10 = Vector256.FusedMultiplyAdd(d10, m8, a8); d11 = Vector256.FusedMultiplyAdd(d11, m8, a8);
        }
        return Vector256.Sum(d0 + d1 + d2 + d3 + d4 + d5 + d6 + d7 + d8 + d9 + d10 + d11);
    }
}
