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
        if (!Vector512.IsHardwareAccelerated || !CpuTime.Available)
        {
            Console.WriteLine("gemm-breakdown: needs an accelerated Vector512 (the breakdown is of the 512-bit kernel) and Linux CPU-time clocks");
            Environment.ExitCode = 1;
            return;
        }
        int cores = Environment.ProcessorCount;
        double clock = MachinePeak.MeasureClockGhz();
        double peak = MachinePeak.MeasurePerCoreGflops();
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
            double c0 = CpuTime.ProcessSeconds();
            var sw = Stopwatch.StartNew();
            run();
            wall = Math.Min(wall, sw.Elapsed.TotalSeconds);
            cpu = Math.Min(cpu, CpuTime.ProcessSeconds() - c0);
        }
        return (cpu, wall);
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
                double t0 = CpuTime.ThreadSeconds();
                for (int i = 0; i < calls; i++) Gemm.Kernel512(kc, a, b, c, 48, true, null);
                best = Math.Max(best, 2.0 * 8 * 48 * kc * calls / (CpuTime.ThreadSeconds() - t0) / 1e9);
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
}
