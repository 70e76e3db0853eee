using SkTuning.Gpu.Data;

namespace SkTuning.Gpu.Tests.Data;

/// <summary>The shared data folder: ../shared/data beside the repository root (null when absent).</summary>
internal static class SharedData
{
    public const string MissingReason = "../shared/data not found";

    public static string? Root { get; } = Find();

    private static string? Find()
    {
        var repo = DataLocator.FindRepoRoot(AppContext.BaseDirectory);
        if (repo is null) return null;
        string root = Path.GetFullPath(Path.Combine(repo, "..", "shared", "data"));
        return Directory.Exists(root) ? root : null;
    }
}

/// <summary>A fact that needs the shared data folder; skipped with a stated reason when it is absent.</summary>
public sealed class DataFactAttribute : FactAttribute
{
    public DataFactAttribute()
    {
        if (SharedData.Root is null) Skip = SharedData.MissingReason;
    }
}

/// <summary>A theory that needs the shared data folder; skipped with a stated reason when it is absent.</summary>
public sealed class DataTheoryAttribute : TheoryAttribute
{
    public DataTheoryAttribute()
    {
        if (SharedData.Root is null) Skip = SharedData.MissingReason;
    }
}

/// <summary>A temporary folder for files written by a test; deleted on dispose.</summary>
public sealed class TempDir : IDisposable
{
    public string Path { get; } = Directory.CreateTempSubdirectory("sktuning-data-").FullName;

    /// <summary>Writes UTF-8 text (no BOM) and returns the full path.</summary>
    public string Write(string name, string text) => WriteBytes(name, new System.Text.UTF8Encoding(false).GetBytes(text));

    public string WriteBytes(string name, byte[] bytes)
    {
        string p = System.IO.Path.Combine(Path, name);
        File.WriteAllBytes(p, bytes);
        return p;
    }

    public void Dispose()
    {
        try { Directory.Delete(Path, true); } catch (IOException) { }
    }
}
