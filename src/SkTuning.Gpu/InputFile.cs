using System.Runtime.InteropServices;

namespace SkTuning.Gpu;

/// <summary>
/// The one way sktune opens a file it did not write itself: only regular files are read (a FIFO would block the
/// open forever, a device such as <c>/dev/zero</c> never ends), reads stop at the length the file had when it was
/// checked, and paths a file names (ONNX external data) are resolved through symbolic links and must stay inside
/// their folder. Problems are one-line <see cref="SkTuningException"/>s naming the file.
/// </summary>
public static partial class InputFile
{
    /// <summary>
    /// Refuses <paramref name="path"/> when it exists but is not a regular file (after following links). A missing
    /// path passes, so the caller's open reports it in its own words.
    /// </summary>
    public static void RequireRegular(string path)
    {
        if (Directory.Exists(path)) throw new SkTuningException($"{path}: a folder, not a file");
        if (KindOf(path) is { } kind && kind != "regular file")
            throw new SkTuningException($"{path}: a {kind}, not a regular file; sktune reads only regular files");
    }

    /// <summary>Opens a regular file for reading (see <see cref="RequireRegular"/>).</summary>
    public static FileStream OpenRead(string path, int bufferSize = 4096, FileOptions options = FileOptions.None)
    {
        RequireRegular(path);
        return new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, bufferSize, options);
    }

    /// <summary>
    /// Reads a regular file whole: exactly the length it has when opened, so the allocation is bounded by the file
    /// and a file that grows meanwhile is not followed.
    /// </summary>
    public static byte[] ReadAllBytes(string path)
    {
        using var stream = OpenRead(path, bufferSize: 1);
        long length = stream.Length;
        if (length > Array.MaxLength) throw new SkTuningException($"{path}: {length:N0} bytes, larger than sktune reads into memory ({Array.MaxLength:N0})");
        var bytes = new byte[length];
        int read = stream.ReadAtLeast(bytes, bytes.Length, throwOnEndOfStream: false);
        if (read != bytes.Length) throw new SkTuningException($"{path}: shrank while being read ({read} of {length} bytes)");
        return bytes;
    }

    /// <summary>Reads a regular file whole as UTF-8 text (see <see cref="ReadAllBytes"/>); a leading BOM is skipped.</summary>
    public static string ReadAllText(string path)
    {
        var bytes = ReadAllBytes(path);
        return new System.Text.UTF8Encoding(false).GetString(bytes.AsSpan(bytes.AsSpan().StartsWith("\xEF\xBB\xBF"u8) ? 3 : 0));
    }

    /// <summary>Reads a regular file's lines ("\n" or "\r\n" ends a line; encoding detected from a BOM, else UTF-8).</summary>
    public static List<string> ReadAllLines(string path)
    {
        using var reader = new StreamReader(OpenRead(path));
        var lines = new List<string>();
        while (reader.ReadLine() is { } line) lines.Add(line);
        return lines;
    }

    /// <summary>
    /// Resolves <paramref name="location"/>, a relative path stored in <paramref name="file"/>, against
    /// <paramref name="folder"/> and returns the real path (every symbolic link followed). An absolute location, a
    /// <c>..</c> segment, or a link that leads out of <paramref name="folder"/> is refused, naming
    /// <paramref name="file"/> and the location.
    /// </summary>
    public static string ResolveContained(string folder, string location, string file, string what)
    {
        void Refuse(string why) => throw new SkTuningException($"{file}: {what} location '{location}' {why}; only files inside {folder} are read");
        if (Path.IsPathRooted(location)) Refuse("is an absolute path");
        if (location.Split('/', '\\').Contains("..")) Refuse("climbs out of the model's folder with '..'");
        string root = RealPath(folder);
        string real = RealPath(Path.Combine(folder, location));
        if (!real.StartsWith(Path.EndsInDirectorySeparator(root) ? root : root + Path.DirectorySeparatorChar, StringComparison.Ordinal))
            Refuse($"leads to {real} through a symbolic link");
        return real;
    }

    /// <summary>The absolute path with every symbolic link along it followed (as POSIX realpath, for existing prefixes).</summary>
    public static string RealPath(string path)
    {
        string full = Path.GetFullPath(path);
        string current = Path.GetPathRoot(full)!;
        foreach (var part in full[current.Length..].Split(Path.DirectorySeparatorChar, StringSplitOptions.RemoveEmptyEntries))
        {
            string next = Path.Combine(current, part);
            FileSystemInfo info = Directory.Exists(next) ? new DirectoryInfo(next) : new FileInfo(next);
            if (info.LinkTarget is not null)
            {
                // ResolveLinkTarget follows a chain (and fails on a loop); the target's own folders may be links too.
                var target = info.ResolveLinkTarget(returnFinalTarget: true);
                if (target is not null) next = RealPath(target.FullName);
            }
            current = next;
        }
        return current;
    }

    /// <summary>What <paramref name="path"/> is after following links ("regular file", "FIFO", ...); null when it does not exist.</summary>
    private static string? KindOf(string path)
    {
        if (OperatingSystem.IsWindows())
            return File.Exists(path) ? (File.GetAttributes(path).HasFlag(FileAttributes.Device) ? "device" : "regular file") : null;
        // .NET has no managed file-type query; its own native shim's stat (a layout .NET defines, the same on every Unix) does.
        if (SystemNativeStat(path, out var status) != 0) return null;
        return (status.Mode & 0xF000) switch
        {
            0x8000 => "regular file",
            0x4000 => "folder",
            0x1000 => "FIFO (named pipe)",
            0x2000 => "character device",
            0x6000 => "block device",
            0xC000 => "socket",
            _ => "special file",
        };
    }

    [StructLayout(LayoutKind.Sequential)]
    private struct FileStatus
    {
        public int Flags;
        public int Mode;
        public uint Uid, Gid;
        public long Size, ATime, ATimeNsec, MTime, MTimeNsec, CTime, CTimeNsec, BirthTime, BirthTimeNsec, Dev, RDev, Ino;
        public uint UserFlags;
        // Room for fields a later runtime may append.
        public long Reserved0, Reserved1, Reserved2, Reserved3;
    }

    [LibraryImport("libSystem.Native", EntryPoint = "SystemNative_Stat", StringMarshalling = StringMarshalling.Utf8)]
    private static partial int SystemNativeStat(string path, out FileStatus output);
}
