using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;

namespace SkTuning.Gpu.Runs;

/// <summary>The tensors and the string metadata of a safetensors file.</summary>
/// <param name="Tensors">Tensors by name.</param>
/// <param name="Metadata">The <c>__metadata__</c> entries (empty when the file has none).</param>
public sealed record SafeTensorsFile(IReadOnlyDictionary<string, NamedTensor> Tensors, IReadOnlyDictionary<string, string> Metadata);

/// <summary>
/// Reads and writes the safetensors format: an 8-byte little-endian header length N, N bytes of UTF-8 JSON
/// (<c>{"name": {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {..}}</c>, padded with spaces
/// to a multiple of 8), then the raw little-endian data. F32, I64 and I32 are supported. Writes are atomic and
/// deterministic (tensors in ordinal name order); reads validate everything and report a bad file as a one-line
/// <see cref="SkTuningException"/> naming it.
/// </summary>
public static class SafeTensors
{
    /// <summary>The reserved header key of the string metadata.</summary>
    public const string MetadataKey = "__metadata__";

    /// <summary>Writes <paramref name="tensors"/> (and optional <paramref name="metadata"/>) to <paramref name="path"/> atomically.</summary>
    public static void Write(string path, IReadOnlyDictionary<string, NamedTensor> tensors, IReadOnlyDictionary<string, string>? metadata = null)
    {
        var header = BuildHeader(tensors, metadata, out var order);
        AtomicFile.Write(path, stream => WriteTo(stream, header, order));
    }

    /// <summary>The bytes of the file <see cref="Write"/> would write.</summary>
    public static byte[] Serialize(IReadOnlyDictionary<string, NamedTensor> tensors, IReadOnlyDictionary<string, string>? metadata = null)
    {
        var header = BuildHeader(tensors, metadata, out var order);
        using var memory = new MemoryStream();
        WriteTo(memory, header, order);
        return memory.ToArray();
    }

    /// <summary>Reads and validates the file at <paramref name="path"/>.</summary>
    public static SafeTensorsFile Read(string path)
    {
        byte[] bytes;
        try
        {
            bytes = InputFile.ReadAllBytes(path);
        }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException)
        {
            throw new SkTuningException($"{path}: no such file");
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new SkTuningException($"{path}: cannot read: {OneLine(e.Message)}", e);
        }
        return Parse(bytes, path);
    }

    /// <summary>Parses and validates safetensors <paramref name="bytes"/>; errors name <paramref name="source"/>.</summary>
    public static SafeTensorsFile Parse(ReadOnlySpan<byte> bytes, string source)
    {
        if (bytes.Length < 8)
            throw new SkTuningException($"{source}: truncated safetensors file ({bytes.Length} bytes; the header length alone takes 8)");
        ulong headerLength = BinaryPrimitives.ReadUInt64LittleEndian(bytes);
        if (headerLength > (ulong)(bytes.Length - 8))
            throw new SkTuningException($"{source}: safetensors header length {headerLength} runs past the end of the file ({bytes.Length} bytes): truncated or not a safetensors file");
        var headerBytes = bytes.Slice(8, (int)headerLength);
        var data = bytes[(8 + (int)headerLength)..];

        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(headerBytes.ToArray());
        }
        catch (Exception e) when (e is JsonException or ArgumentException or DecoderFallbackException)
        {
            throw new SkTuningException($"{source}: safetensors header is not valid JSON: {OneLine(e.Message)}", e);
        }

        using (doc)
        {
            if (doc.RootElement.ValueKind != JsonValueKind.Object)
                throw new SkTuningException($"{source}: safetensors header is not a JSON object");
            var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
            var entries = new List<(string Name, TensorDType DType, int[] Shape, long Begin, long End)>();
            try
            {
                var seen = new HashSet<string>(StringComparer.Ordinal);
                foreach (var property in doc.RootElement.EnumerateObject())
                {
                    if (!seen.Add(property.Name))
                        throw new SkTuningException($"{source}: safetensors header names '{property.Name}' twice");
                    if (property.Name == MetadataKey)
                    {
                        if (property.Value.ValueKind != JsonValueKind.Object)
                            throw new SkTuningException($"{source}: safetensors {MetadataKey} is not a JSON object");
                        foreach (var m in property.Value.EnumerateObject())
                        {
                            if (m.Value.ValueKind != JsonValueKind.String)
                                throw new SkTuningException($"{source}: safetensors {MetadataKey} entry '{m.Name}' is not a string");
                            metadata[m.Name] = m.Value.GetString()!;
                        }
                        continue;
                    }
                    entries.Add(ParseEntry(source, property.Name, property.Value, data.Length));
                }
            }
            catch (Exception e) when (e is InvalidOperationException or ArgumentException)
            {
                // A name or string escape that is not valid UTF-16 (a lone surrogate such as \ud800) parses but cannot be read.
                throw new SkTuningException($"{source}: safetensors header holds a string that is not valid text: {OneLine(e.Message)}", e);
            }

            // No two tensors may share bytes (empty tensors take none).
            var byBegin = entries.Where(e => e.End > e.Begin).OrderBy(e => e.Begin).ToList();
            for (int i = 1; i < byBegin.Count; i++)
                if (byBegin[i].Begin < byBegin[i - 1].End)
                    throw new SkTuningException(
                        $"{source}: tensor '{byBegin[i].Name}' data_offsets [{byBegin[i].Begin}, {byBegin[i].End}] overlap tensor '{byBegin[i - 1].Name}' [{byBegin[i - 1].Begin}, {byBegin[i - 1].End}]");

            var tensors = new Dictionary<string, NamedTensor>(StringComparer.Ordinal);
            foreach (var (name, dtype, shape, begin, end) in entries)
                tensors[name] = Decode(dtype, shape, data[(int)begin..(int)end]);
            return new SafeTensorsFile(tensors, metadata);
        }
    }

    private static (string, TensorDType, int[], long, long) ParseEntry(string source, string name, JsonElement entry, int dataLength)
    {
        string where = $"{source}: tensor '{name}'";
        if (entry.ValueKind != JsonValueKind.Object)
            throw new SkTuningException($"{where}: header entry is not a JSON object");
        if (!entry.TryGetProperty("dtype", out var dtypeElement) || dtypeElement.ValueKind != JsonValueKind.String)
            throw new SkTuningException($"{where}: header entry has no \"dtype\" string");
        var dtypeName = dtypeElement.GetString()!;
        TensorDType dtype = dtypeName switch
        {
            "F32" => TensorDType.F32,
            "I64" => TensorDType.I64,
            "I32" => TensorDType.I32,
            _ => throw new SkTuningException($"{where}: unsupported dtype '{dtypeName}' (supported: F32, I64, I32)"),
        };
        if (!entry.TryGetProperty("shape", out var shapeElement) || shapeElement.ValueKind != JsonValueKind.Array)
            throw new SkTuningException($"{where}: header entry has no \"shape\" array");
        var shape = new int[shapeElement.GetArrayLength()];
        int k = 0;
        foreach (var d in shapeElement.EnumerateArray())
        {
            if (d.ValueKind != JsonValueKind.Number || !d.TryGetInt32(out shape[k]) || shape[k] < 0)
                throw new SkTuningException($"{where}: shape {shapeElement.GetRawText()} has a dimension that is not a non-negative integer");
            k++;
        }
        if (!entry.TryGetProperty("data_offsets", out var offsets) || offsets.ValueKind != JsonValueKind.Array || offsets.GetArrayLength() != 2)
            throw new SkTuningException($"{where}: header entry has no \"data_offsets\" [begin, end]");
        if (offsets[0].ValueKind != JsonValueKind.Number || !offsets[0].TryGetInt64(out long begin) ||
            offsets[1].ValueKind != JsonValueKind.Number || !offsets[1].TryGetInt64(out long end) || begin < 0 || end < begin)
            throw new SkTuningException($"{where}: data_offsets {offsets.GetRawText()} are not integers 0 <= begin <= end");
        if (end > dataLength)
            throw new SkTuningException($"{where}: data_offsets [{begin}, {end}] lie outside the data ({dataLength} bytes): the file is truncated or corrupt");

        long elements = 1;
        foreach (var d in shape)
        {
            elements *= d;
            if (elements > Array.MaxLength)
                throw new SkTuningException($"{where}: shape [{string.Join(", ", shape)}] is too large");
        }
        int size = NamedTensor.SizeOf(dtype);
        if (elements * size != end - begin)
            throw new SkTuningException(
                $"{where}: shape [{string.Join(", ", shape)}] needs {elements * size} bytes of {dtypeName} but data_offsets [{begin}, {end}] hold {end - begin}");
        return (name, dtype, shape, begin, end);
    }

    private static NamedTensor Decode(TensorDType dtype, int[] shape, ReadOnlySpan<byte> bytes)
    {
        switch (dtype)
        {
            case TensorDType.F32:
            {
                var a = new float[bytes.Length / 4];
                if (BitConverter.IsLittleEndian) bytes.CopyTo(MemoryMarshal.AsBytes(a.AsSpan()));
                else for (int i = 0; i < a.Length; i++) a[i] = BinaryPrimitives.ReadSingleLittleEndian(bytes[(4 * i)..]);
                return new NamedTensor(shape, a);
            }
            case TensorDType.I64:
            {
                var a = new long[bytes.Length / 8];
                if (BitConverter.IsLittleEndian) bytes.CopyTo(MemoryMarshal.AsBytes(a.AsSpan()));
                else for (int i = 0; i < a.Length; i++) a[i] = BinaryPrimitives.ReadInt64LittleEndian(bytes[(8 * i)..]);
                return NamedTensor.FromInt64(shape, a);
            }
            default:
            {
                var a = new int[bytes.Length / 4];
                if (BitConverter.IsLittleEndian) bytes.CopyTo(MemoryMarshal.AsBytes(a.AsSpan()));
                else for (int i = 0; i < a.Length; i++) a[i] = BinaryPrimitives.ReadInt32LittleEndian(bytes[(4 * i)..]);
                return NamedTensor.FromInt32(shape, a);
            }
        }
    }

    private static byte[] BuildHeader(IReadOnlyDictionary<string, NamedTensor> tensors, IReadOnlyDictionary<string, string>? metadata,
        out List<NamedTensor> order)
    {
        ArgumentNullException.ThrowIfNull(tensors);
        var names = tensors.Keys.ToList();
        names.Sort(StringComparer.Ordinal);
        order = new List<NamedTensor>(names.Count);
        using var json = new MemoryStream();
        using (var w = new Utf8JsonWriter(json))
        {
            w.WriteStartObject();
            if (metadata is { Count: > 0 })
            {
                w.WriteStartObject(MetadataKey);
                foreach (var key in metadata.Keys.OrderBy(k => k, StringComparer.Ordinal)) w.WriteString(key, metadata[key]);
                w.WriteEndObject();
            }
            long offset = 0;
            foreach (var name in names)
            {
                if (name.Length == 0 || name == MetadataKey)
                    throw new ArgumentException($"'{name}' is not a valid tensor name", nameof(tensors));
                var t = tensors[name];
                long bytes = t.ElementCount * NamedTensor.SizeOf(t.DType);
                w.WriteStartObject(name);
                w.WriteString("dtype", NamedTensor.NameOf(t.DType));
                w.WriteStartArray("shape");
                foreach (var d in t.Shape) w.WriteNumberValue(d);
                w.WriteEndArray();
                w.WriteStartArray("data_offsets");
                w.WriteNumberValue(offset);
                w.WriteNumberValue(offset + bytes);
                w.WriteEndArray();
                w.WriteEndObject();
                offset += bytes;
                order.Add(t);
            }
            w.WriteEndObject();
        }
        int length = (int)json.Length, padded = (length + 7) / 8 * 8;
        var header = new byte[padded];
        json.GetBuffer().AsSpan(0, length).CopyTo(header);
        header.AsSpan(length).Fill((byte)' ');
        return header;
    }

    private static void WriteTo(Stream stream, byte[] header, List<NamedTensor> order)
    {
        Span<byte> prefix = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(prefix, (ulong)header.Length);
        stream.Write(prefix);
        stream.Write(header);
        Span<byte> e = stackalloc byte[8];
        foreach (var t in order)
        {
            if (BitConverter.IsLittleEndian)
            {
                switch (t.DType)
                {
                    case TensorDType.F32: stream.Write(MemoryMarshal.AsBytes(t.Data.AsSpan())); break;
                    case TensorDType.I64: stream.Write(MemoryMarshal.AsBytes(t.Int64Data.AsSpan())); break;
                    default: stream.Write(MemoryMarshal.AsBytes(t.Int32Data.AsSpan())); break;
                }
                continue;
            }
            for (int i = 0; i < t.ElementCount; i++)
            {
                switch (t.DType)
                {
                    case TensorDType.F32: BinaryPrimitives.WriteSingleLittleEndian(e, t.Data[i]); stream.Write(e[..4]); break;
                    case TensorDType.I64: BinaryPrimitives.WriteInt64LittleEndian(e, t.Int64Data[i]); stream.Write(e); break;
                    default: BinaryPrimitives.WriteInt32LittleEndian(e, t.Int32Data[i]); stream.Write(e[..4]); break;
                }
            }
        }
    }

    internal static string OneLine(string message) =>
        string.Join(' ', message.Split(['\r', '\n'], StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries));
}
