using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using SkTuning.Gpu.Benchmarking;
using SkTuning.Gpu.Kernels;

namespace SkTuning.Gpu.Benchmarks;

/// <summary>
/// Where the fp32 GEMM's time goes against the FMA peak, stage by stage: the core's clock and FMA rate, the 8×48
/// micro-kernel alone on panels in cache, then whole GEMMs (packing and blocking) on one thread, then on all cores — at
/// MiniLM's step shapes (M = B·(T+m) = 2432). Rates are per core-second of CPU time (thread or process), not wall time,
/// so that they stay comparable on a machine other processes load: CPU time counts only when our threads ran. On a
/// quiet machine the wall-clock column of the all-core rows adds what the split and the wake-ups cost.
/// Usage: <c>gemm-breakdown</c>.
/// </summary>
internal static unsafe class GemmBreakdown
{
    public static void Run()
    {
        if (!Vector512.IsHardwareAccelerated)
        {
            Console.WriteLine("gemm-breakdown: this CPU has no accelerated Vector512; the breakdown is of the 512-bit kernel");
            Environment.ExitCode = 1;
            return;
        }
        int cores = Environment.ProcessorCount;
        double clock = MachinePeak.MeasureClockGhz();
        double peak = PeakPerCoreSecond();
        Console.WriteLine($"{cores} cores, clock {clock:F2} GHz (dependent FMA chain), FMA peak {peak:F1} GFLOP/s per core-second = {peak / clock:F1} flop/cycle; {cores} cores: {cores * peak:F0}");

        var kernel = new List<double>();
        foreach (int kc in new[] { 128, 384 })
        {
            double rate = KernelInCache(kc);
            kernel.Add(rate);
            Console.WriteLine($"Kernel512 alone, kc = {kc} (B micro-panel {kc * 48 * 4 / 1024} KB): {rate:F1} GFLOP/s per core-second, {100 * rate / peak:F0}% of peak");
        }

        var shapes = new (int M, int N, int K)[] { (2432, 1152, 384), (2432, 384, 384), (2432, 1536, 384), (2432, 384, 1536) };
        Console.WriteLine($"{"shape M×N×K",-18} {"threads",7} {"NN",16} {"NT",16} {"TN (dW = Xᵀ·dY)",16}   (GFLOP/s per core-second of CPU time and % of the peak; all cores: w = wall-clock rate as % of {cores} cores' peak)");
        foreach (var (m, n, k) in shapes)
        {
            var rng = new Random(1);
            var a = Random(rng, m * k);
            var b = Random(rng, k * n);
            var bt = Random(rng, n * k);
            var c = new float[m * n];
            var dw = new float[k * n];
            double flop = 2.0 * m * n * k;
            foreach (int threads in new[] { 1, -1 })
            {
                KernelParallelism.MaxThreads = threads;
                try
                {
                    var nn = Time(() => Gemm.NN(m, n, k, a, b, c));
                    var nt = Time(() => Gemm.NT(m, n, k, a, bt, c));
                    var tn = Time(() => Gemm.TN(k, n, m, a, c, dw));
                    string Cell((double Cpu, double Wall) t) => threads == 1
                        ? $"{flop / t.Cpu / 1e9,6:F1} {100 * flop / t.Cpu / 1e9 / peak,3:F0}%"
                        : $"{flop / t.Cpu / 1e9,6:F1} {100 * flop / t.Cpu / 1e9 / peak,3:F0}% w{100 * flop / t.Wall / 1e9 / (cores * peak),3:F0}%";
                    Console.WriteLine($"{$"{m}×{n}×{k}",-18} {(threads == 1 ? 1 : cores),7} {Cell(nn),16} {Cell(nt),16} {Cell(tn),16}");
                }
                finally
                {
                    KernelParallelism.MaxThreads = -1;
                }
            }
        }
    }

    private static float[] Random(Random rng, int n)
    {
        var x = new float[n];
        for (int i = 0; i < n; i++) x[i] = (float)(rng.NextDouble() - 0.5);
        return x;
    }

    /// <summary>Best of 7 after a warm-up: process CPU seconds and wall seconds.</summary>
    private static (double Cpu, double Wall) Time(Action run)
    {
        run();
        double cpu = double.MaxValue, wall = double.MaxValue;
        for (int r = 0; r < 7; r++)
        {
            double c0 = CpuSeconds(ProcessClock);
            var sw = Stopwatch.StartNew();
            run();
            wall = Math.Min(wall, sw.Elapsed.TotalSeconds);
            cpu = Math.Min(cpu, CpuSeconds(ProcessClock) - c0);
        }
        return (cpu, wall);
    }

    /// <summary>One thread's 12 independent FMA chains, GFLOP per second of that thread's CPU time (best of 3).</summary>
    private static double PeakPerCoreSecond()
    {
        const long iterations = 20_000_000;
        Chains(iterations / 10);
        double best = 0;
        for (int r = 0; r < 3; r++)
        {
            double t0 = CpuSeconds(ThreadClock);
            Chains(iterations);
            best = Math.Max(best, iterations * 12 * 32 / (CpuSeconds(ThreadClock) - t0) / 1e9);
        }
        return best;
    }

    private static float Chains(long iterations)
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

    /// <summary>The micro-kernel over and over on one 8×kc A and kc×48 B micro-panel and one C tile (loads and stores C each call).</summary>
    private static double KernelInCache(int kc)
    {
        float* a = (float*)NativeMemory.AlignedAlloc((nuint)(8 * kc * 4), 64);
        float* b = (float*)NativeMemory.AlignedAlloc((nuint)(48 * kc * 4), 64);
        float* c = (float*)NativeMemory.AlignedAlloc(8 * 48 * 4, 64);
        try
        {
            for (int i = 0; i < 8 * kc; i++) a[i] = 1e-3f * (i % 7);
            for (int i = 0; i < 48 * kc; i++) b[i] = 1e-3f * (i % 5);
            for (int i = 0; i < 8 * 48; i++) c[i] = 0;
            int calls = 200_000 * 128 / kc;
            for (int i = 0; i < calls / 10; i++) Gemm.Kernel512(kc, a, b, c, 48, true, null);
            double best = 0;
            for (int r = 0; r < 3; r++)
            {
                double t0 = CpuSeconds(ThreadClock);
                for (int i = 0; i < calls; i++) Gemm.Kernel512(kc, a, b, c, 48, true, null);
                best = Math.Max(best, 2.0 * 8 * 48 * kc * calls / (CpuSeconds(ThreadClock) - t0) / 1e9);
            }
            return best;
        }
        finally
        {
            NativeMemory.AlignedFree(a);
            NativeMemory.AlignedFree(b);
            NativeMemory.AlignedFree(c);
        }
    }

    private const int ProcessClock = 2, ThreadClock = 3; // CLOCK_PROCESS_CPUTIME_ID, CLOCK_THREAD_CPUTIME_ID

    [StructLayout(LayoutKind.Sequential)]
    private struct TimeSpec
    {
        public long Seconds, Nanoseconds;
    }

    [DllImport("libc", EntryPoint = "clock_gettime")]
    private static extern int ClockGetTime(int clock, out TimeSpec time);

    private static double CpuSeconds(int clock)
    {
        if (ClockGetTime(clock, out var t) != 0) throw new InvalidOperationException("clock_gettime failed: CPU time needs Linux");
        return t.Seconds + t.Nanoseconds * 1e-9;
    }
}
