namespace SkTuning.Gpu.Kernels;

/// <summary>
/// How many threads one CPU kernel's parallel loop may use. Process-wide: a host serving requests caps it so that the
/// kernels leave cores to its callers (results do not depend on it: work splits never change an element's arithmetic).
/// </summary>
public static class KernelParallelism
{
    /// <summary>The options every CPU kernel's parallel loop runs with.</summary>
    internal static ParallelOptions Options { get; } = new();

    /// <summary>The threads one kernel's loop can actually use: the cap, or every core.</summary>
    internal static int Workers => Options.MaxDegreeOfParallelism == -1
        ? Environment.ProcessorCount
        : Math.Min(Options.MaxDegreeOfParallelism, Environment.ProcessorCount);

    /// <summary>The most threads one kernel uses; -1 (the default) means all cores.</summary>
    /// <exception cref="ArgumentOutOfRangeException">0 or below −1.</exception>
    public static int MaxThreads
    {
        get => Options.MaxDegreeOfParallelism;
        set
        {
            if (value == 0 || value < -1) throw new ArgumentOutOfRangeException(nameof(value), value, "expected -1 (all cores) or a positive thread count");
            Options.MaxDegreeOfParallelism = value;
        }
    }
}
