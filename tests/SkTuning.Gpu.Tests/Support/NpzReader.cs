using System.IO.Compression;
using System.Text.RegularExpressions;

namespace SkTuning.Gpu.Tests.Support;

/// <summary>
/// Reads the decoder fixtures' reference.npz (numpy's savez: a zip of .npy v1/v2 files, little-endian float32 '&lt;f4'
/// or int64 '&lt;i8', C order) into arrays by name.
/// </summary>
internal static partial class NpzReader
{
    /// <summary>One array: its shape and values (int64 arrays are returned as doubles-free longs).</summary>
    public sealed record Array(int[] Shape, float[]? Floats, long[]? Longs);

    /// <summary>Every array in the file, by name (the entry name without ".npy").</summary>
    public static Dictionary<string, Array> Read(string path)
    {
        var result = new Dictionary<string, Array>(StringComparer.Ordinal);
        using var zip = ZipFile.OpenRead(path);
        foreach (var entry in zip.Entries)
        {
            using var s = entry.Open();
            using var ms = new MemoryStream();
            s.CopyTo(ms);
            result[entry.FullName[..^4]] = Parse(ms.ToArray());
        }
        return result;
    }

    private static Array Parse(byte[] b)
    {
        if (b[0] != 0x93 || b[1] != (byte)'N') throw new InvalidDataException("not an .npy entry");
        int major = b[6], headerLength, offset;
        if (major == 1) (headerLength, offset) = (BitConverter.ToUInt16(b, 8), 10);
        else (headerLength, offset) = ((int)BitConverter.ToUInt32(b, 8), 12);
        var header = System.Text.Encoding.ASCII.GetString(b, offset, headerLength);
        var descr = Descr().Match(header).Groups[1].Value;
        if (header.Contains("'fortran_order': True")) throw new InvalidDataException("Fortran order");
        var shape = Shape().Match(header).Groups[1].Value.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Select(int.Parse).ToArray();
        var data = b.AsSpan(offset + headerLength);
        return descr switch
        {
            "<f4" => new Array(shape, System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(data).ToArray(), null),
            "<i8" => new Array(shape, null, System.Runtime.InteropServices.MemoryMarshal.Cast<byte, long>(data).ToArray()),
            _ => throw new InvalidDataException($"dtype {descr}"),
        };
    }

    [GeneratedRegex(@"'descr':\s*'([^']+)'")]
    private static partial Regex Descr();

    [GeneratedRegex(@"'shape':\s*\(([^)]*)\)")]
    private static partial Regex Shape();
}
