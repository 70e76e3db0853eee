using System.Runtime.InteropServices;

namespace SkTuning.Gpu.Benchmarking;

/// <summary>
/// CPU time of the calling thread or the whole process (Linux <c>clock_gettime</c>): rates per CPU-second stay
/// comparable on a machine other processes load, because the clock advances only while our threads run.
/// </summary>
public static class CpuTime
{
    private const int ProcessClock = 2, ThreadClock = 3; // CLOCK_PROCESS_CPUTIME_ID, CLOCK_THREAD_CPUTIME_ID

    /// <summary>Whether the OS gives these clocks (Linux).</summary>
    public static bool Available => OperatingSystem.IsLinux();

    /// <summary>The calling thread's CPU seconds, or 0 where there is no such clock.</summary>
    public static double ThreadSeconds() => Seconds(ThreadClock);

    /// <summary>The process's CPU seconds over all its threads, or 0 where there is no such clock.</summary>
    public static double ProcessSeconds() => Seconds(ProcessClock);

    [StructLayout(LayoutKind.Sequential)]
    private struct TimeSpec
    {
        public long Seconds, Nanoseconds;
    }

    [DllImport("libc", EntryPoint = "clock_gettime")]
    private static extern int ClockGetTime(int clock, out TimeSpec time);

    private static double Seconds(int clock)
    {
        if (!Available) return 0;
        return ClockGetTime(clock, out var t) == 0 ? t.Seconds + t.Nanoseconds * 1e-9 : 0;
    }
}
