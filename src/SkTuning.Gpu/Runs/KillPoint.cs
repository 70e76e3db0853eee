using System.Diagnostics;

namespace SkTuning.Gpu.Runs;

/// <summary>
/// The kill test's hook: with <c>SKTUNE_KILL_AT_FILE_OP=N</c> in the environment the process kills itself (SIGKILL, as
/// <c>kill -9</c>: no handler or cleanup runs) just before the N-th file operation on its run folder, so every point
/// between two writes of a commit can be hit deterministically. Unset, <see cref="Before"/> only counts.
/// </summary>
internal static class KillPoint
{
    /// <summary>The environment variable that arms the hook.</summary>
    public const string Variable = "SKTUNE_KILL_AT_FILE_OP";

    private static readonly long Target = long.TryParse(Environment.GetEnvironmentVariable(Variable), out long n) ? n : 0;
    private static long _count;

    /// <summary>Marks the point before a file operation (<paramref name="operation"/> names it in the last log line).</summary>
    public static void Before(string operation)
    {
        if (Interlocked.Increment(ref _count) != Target) return;
        Console.Error.WriteLine($"[kill point {Target}: before {operation}]");
        Process.GetCurrentProcess().Kill();
        Thread.Sleep(Timeout.Infinite);
    }
}
