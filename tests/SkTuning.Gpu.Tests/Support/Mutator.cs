using System.Buffers.Binary;
using System.Text;

namespace SkTuning.Gpu.Tests.Support;

/// <summary>
/// Seeded mutations of a valid file, for the fuzz tests: bit flips, boundary bytes and integers written over the
/// data, deleted, duplicated and spliced ranges, truncation, and (for text formats) inserted tokens that readers
/// treat specially — delimiters, quotes, brackets, huge numbers, invalid UTF-8.
/// </summary>
internal static class Mutator
{
    private static readonly byte[][] TextTokens =
    [
        "\t"u8.ToArray(), ","u8.ToArray(), "\""u8.ToArray(), "\n"u8.ToArray(), "\r\n"u8.ToArray(), "{"u8.ToArray(), "}"u8.ToArray(),
        "["u8.ToArray(), "]"u8.ToArray(), ":"u8.ToArray(), "null"u8.ToArray(), "-"u8.ToArray(), "1e39"u8.ToArray(), "NaN"u8.ToArray(),
        "-2147483649"u8.ToArray(), "99999999999999999999"u8.ToArray(), "\"\""u8.ToArray(), " "u8.ToArray(), "\\u0000"u8.ToArray(),
        "B-"u8.ToArray(), "I-X"u8.ToArray(), "-DOCSTART-"u8.ToArray(), [0xEF, 0xBB, 0xBF], [0xC3, 0x28], [0xFF], [0],
    ];

    private static readonly long[] Integers = [0, -1, 1, 0x7F, 0x80, 0xFF, 0x7FFF_FFFF, 0x8000_0000, 0xFFFF_FFFF, 1L << 40, long.MaxValue, long.MinValue];

    /// <summary>One to four mutations of <paramref name="seed"/>.</summary>
    public static byte[] Mutate(byte[] seed, Random rng, bool text)
    {
        var data = new List<byte>(seed);
        int count = 1 + rng.Next(4);
        for (int k = 0; k < count; k++) MutateOnce(data, rng, text);
        return data.ToArray();
    }

    private static void MutateOnce(List<byte> d, Random rng, bool text)
    {
        int At(int extra = 0) => rng.Next(d.Count + extra);
        switch (rng.Next(text ? 9 : 7))
        {
            case 0 when d.Count > 0: // flip one bit
            {
                int i = At();
                d[i] ^= (byte)(1 << rng.Next(8));
                break;
            }
            case 1 when d.Count > 0: // a boundary byte
                d[At()] = (byte)Integers[rng.Next(Integers.Length)];
                break;
            case 2 when d.Count >= 8: // a boundary integer over 1, 2, 4 or 8 bytes (little-endian: sizes, offsets, dims)
            {
                int size = 1 << rng.Next(4);
                int i = rng.Next(d.Count - size + 1);
                Span<byte> v = stackalloc byte[8];
                BinaryPrimitives.WriteInt64LittleEndian(v, Integers[rng.Next(Integers.Length)]);
                for (int j = 0; j < size; j++) d[i + j] = v[j];
                break;
            }
            case 3 when d.Count > 0: // delete a range
            {
                int i = At(), n = Math.Min(d.Count - i, 1 + rng.Next(rng.Next(2) == 0 ? 4 : 64));
                d.RemoveRange(i, n);
                break;
            }
            case 4 when d.Count > 0: // duplicate a range in place
            {
                int i = At(), n = Math.Min(d.Count - i, 1 + rng.Next(64));
                d.InsertRange(At(1), d.GetRange(i, n));
                break;
            }
            case 5 when d.Count > 0: // truncate
            {
                int i = At();
                d.RemoveRange(i, d.Count - i);
                break;
            }
            case 6: // random bytes
            {
                var bytes = new byte[1 + rng.Next(8)];
                rng.NextBytes(bytes);
                d.InsertRange(At(1), bytes);
                break;
            }
            case 7: // a token readers treat specially
                d.InsertRange(At(1), TextTokens[rng.Next(TextTokens.Length)]);
                break;
            case 8: // a number rewritten as a boundary value
            {
                var s = Encoding.Latin1.GetString(d.ToArray());
                var digits = System.Text.RegularExpressions.Regex.Matches(s, "[0-9]+");
                if (digits.Count == 0) break;
                var m = digits[rng.Next(digits.Count)];
                var value = Encoding.ASCII.GetBytes(Integers[rng.Next(Integers.Length)].ToString(System.Globalization.CultureInfo.InvariantCulture));
                d.RemoveRange(m.Index, m.Length);
                d.InsertRange(m.Index, value);
                break;
            }
        }
    }
}
