using System.Collections.Concurrent;
using System.Security.Cryptography;

namespace SkTuning.Gpu.Import;

/// <summary>
/// SHA-256 of a model file, as lowercase hex. Identifies the frozen model in caches and in saved adapters;
/// memoized per (path, size, modification time) because hashing 90 MB costs a few hundred milliseconds.
/// </summary>
public static class ModelHash
{
    private static readonly ConcurrentDictionary<(string, long, DateTime), string> Memo = new();

    /// <summary>Hash of the file at <paramref name="path"/>.</summary>
    public static string Of(string path)
    {
        var info = new FileInfo(path);
        return Memo.GetOrAdd((info.FullName, info.Length, info.LastWriteTimeUtc), _ =>
        {
            using var stream = info.OpenRead();
            return Convert.ToHexStringLower(SHA256.HashData(stream));
        });
    }
}
