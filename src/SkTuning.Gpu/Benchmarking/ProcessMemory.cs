namespace SkTuning.Gpu.Benchmarking;

/// <summary>
/// The process's resident memory as Linux reports it (<c>/proc/self/status</c>): the current size and the high-water mark,
/// which can be reset (<c>/proc/self/clear_refs</c>) so one phase of a run gets its own peak. Elsewhere the .NET
/// process's peak working set stands in and nothing resets.
/// </summary>
public static class ProcessMemory
{
    /// <summary>Peak resident bytes since the process started or the last <see cref="ResetPeak"/> (VmHWM).</summary>
    public static long PeakBytes() => Read("VmHWM:") ?? System.Diagnostics.Process.GetCurrentProcess().PeakWorkingSet64;

    /// <summary>Resident bytes now (VmRSS).</summary>
    public static long CurrentBytes() => Read("VmRSS:") ?? System.Diagnostics.Process.GetCurrentProcess().WorkingSet64;

    /// <summary>Starts a new peak from the current resident size; false where the system does not allow it.</summary>
    public static bool ResetPeak()
    {
        try
        {
            File.WriteAllText("/proc/self/clear_refs", "5");
            return true;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return false;
        }
    }

    private static long? Read(string key)
    {
        if (!File.Exists("/proc/self/status")) return null;
        foreach (var line in File.ReadLines("/proc/self/status"))
        {
            if (!line.StartsWith(key, StringComparison.Ordinal)) continue;
            var parts = line[key.Length..].Trim().Split(' ', StringSplitOptions.RemoveEmptyEntries);
            return long.Parse(parts[0], System.Globalization.CultureInfo.InvariantCulture) * 1024;   // "kB"
        }
        return null;
    }
}
