namespace SkTuning.Gpu.Data;

/// <summary>Finds the shared data folder: <c>--data</c> if given, else <c>../shared/data</c>.</summary>
public static class DataLocator
{
    /// <summary>The solution file that marks the repository root.</summary>
    public const string SolutionFile = "SkTuning.Gpu.sln";

    /// <summary>
    /// <c>../shared/data</c> relative to the current directory when that exists, else relative to the
    /// repository root found from the application's base directory, else (neither exists) the first of them.
    /// </summary>
    public static string DefaultRoot()
    {
        string fromCwd = Path.GetFullPath(Path.Combine(Environment.CurrentDirectory, "..", "shared", "data"));
        if (Directory.Exists(fromCwd)) return fromCwd;
        if (FindRepoRoot() is { } repo)
        {
            string fromRepo = Path.GetFullPath(Path.Combine(repo, "..", "shared", "data"));
            if (Directory.Exists(fromRepo)) return fromRepo;
        }
        return fromCwd;
    }

    /// <summary>The data root to use: <paramref name="option"/> (the <c>--data</c> value) when given, else <see cref="DefaultRoot"/>; a missing folder is a <see cref="SkTuningException"/>.</summary>
    public static string Resolve(string? option)
    {
        string root = string.IsNullOrWhiteSpace(option) ? DefaultRoot() : Path.GetFullPath(option);
        if (!Directory.Exists(root))
            throw new SkTuningException($"{root}: data folder not found (pass --data <folder>)");
        return root;
    }

    /// <summary>The nearest folder at or above <paramref name="start"/> (default: the application's base directory) that holds <see cref="SolutionFile"/>; null if none.</summary>
    public static string? FindRepoRoot(string? start = null)
    {
        for (var dir = new DirectoryInfo(start ?? AppContext.BaseDirectory); dir != null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, SolutionFile))) return dir.FullName;
        return null;
    }
}
