namespace SkTuning.Gpu.Benchmarks;

/// <summary>The load-test commands' <c>--name value</c> options, read from their argument lists.</summary>
internal static class CommandArgs
{
    /// <summary>The value after <paramref name="name"/>, or null when the option is absent.</summary>
    public static string? Option(string[] args, string name) => args.SkipWhile(a => a != name).Skip(1).FirstOrDefault();

    /// <summary>The integer after <paramref name="name"/>, or <paramref name="fallback"/> when the option is absent.</summary>
    public static int Option(string[] args, string name, int fallback) => Option(args, name) is { } value ? int.Parse(value) : fallback;
}
