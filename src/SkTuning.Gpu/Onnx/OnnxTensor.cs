using System.Buffers.Binary;
using System.Runtime.InteropServices;
using SkTuning.Gpu.Onnx.Proto;

namespace SkTuning.Gpu.Onnx;

/// <summary>ONNX tensor element types (the values of <c>TensorProto.DataType</c>).</summary>
public enum OnnxElementType
{
    /// <summary>Not set.</summary>
    Undefined = 0,
    /// <summary>32-bit float.</summary>
    Float = 1,
    /// <summary>Unsigned byte.</summary>
    UInt8 = 2,
    /// <summary>Signed byte.</summary>
    Int8 = 3,
    /// <summary>Unsigned 16-bit integer.</summary>
    UInt16 = 4,
    /// <summary>Signed 16-bit integer.</summary>
    Int16 = 5,
    /// <summary>Signed 32-bit integer.</summary>
    Int32 = 6,
    /// <summary>Signed 64-bit integer.</summary>
    Int64 = 7,
    /// <summary>String.</summary>
    String = 8,
    /// <summary>Boolean (one byte).</summary>
    Bool = 9,
    /// <summary>IEEE half precision.</summary>
    Float16 = 10,
    /// <summary>64-bit float.</summary>
    Double = 11,
    /// <summary>Unsigned 32-bit integer.</summary>
    UInt32 = 12,
    /// <summary>Unsigned 64-bit integer.</summary>
    UInt64 = 13,
    /// <summary>Complex of two floats.</summary>
    Complex64 = 14,
    /// <summary>Complex of two doubles.</summary>
    Complex128 = 15,
    /// <summary>Brain float 16.</summary>
    BFloat16 = 16,
}

/// <summary>
/// A tensor of an ONNX model: an initializer or a Constant node's <c>value</c>. The data stays in the
/// protobuf (or the external-data file) until read through <see cref="ToFloats"/> / <see cref="ToInt64s"/>.
/// </summary>
public sealed class OnnxTensor
{
    private readonly string _file;
    private readonly string? _externalPath;
    private readonly long _externalOffset;
    private readonly long _externalLength;

    internal OnnxTensor(TensorProto proto, string file, string? baseDirectory)
    {
        Proto = proto;
        _file = file;
        Name = proto.Name;
        ElementType = (OnnxElementType)proto.DataType;
        Dims = proto.Dims.ToArray();
        long count = 1;
        foreach (var d in Dims)
        {
            if (d < 0) throw new SkTuningException($"{file}: tensor '{Name}' has a negative dimension {d}");
            // A product past what one array holds cannot be data of a real file; refusing it here keeps every later size check in range.
            if (d > Array.MaxLength || (d > 0 && count > Array.MaxLength / d))
                throw new SkTuningException($"{file}: tensor '{Name}' declares shape [{string.Join(",", Dims)}], more elements than an array holds ({Array.MaxLength:N0})");
            count *= d;
        }
        ElementCount = count;
        if (proto.DataLocation == TensorProto.Types.DataLocation.External)
        {
            string? location = null;
            long offset = 0, length = -1;
            foreach (var kv in proto.ExternalData)
            {
                switch (kv.Key)
                {
                    case "location": location = kv.Value; break;
                    case "offset": offset = ParseLong(kv.Value, "offset"); break;
                    case "length": length = ParseLong(kv.Value, "length"); break;
                }
            }
            if (string.IsNullOrEmpty(location))
                throw new SkTuningException($"{file}: tensor '{Name}' has external data without a location");
            if (baseDirectory is null)
                throw new SkTuningException($"{file}: tensor '{Name}' keeps its data in {location}, but the model was not read from a folder");
            var path = InputFile.ResolveContained(baseDirectory, location, file, $"tensor '{Name}' external-data");
            if (!File.Exists(path))
                throw new SkTuningException($"{file}: external-data file {location} of tensor '{Name}' is missing (looked for {path})");
            InputFile.RequireRegular(path);
            long fileLength = new FileInfo(path).Length;
            if (offset < 0 || offset > fileLength)
                throw new SkTuningException($"{file}: external-data file {location} has {fileLength} bytes, tensor '{Name}' starts at offset {offset}");
            if (length < 0) length = fileLength - offset;
            if (length > fileLength - offset)
                throw new SkTuningException(
                    $"{file}: external-data file {location} has {fileLength} bytes, tensor '{Name}' needs {length} bytes from offset {offset}");
            _externalPath = path;
            _externalOffset = offset;
            _externalLength = length;
        }

        long ParseLong(string value, string key) =>
            long.TryParse(value, out var v) ? v
                : throw new SkTuningException($"{file}: tensor '{Name}' has external-data {key} '{value}', not a number");
    }

    internal TensorProto Proto { get; }

    /// <summary>The tensor's name (initializer name, or the Constant node's output).</summary>
    public string Name { get; }

    /// <summary>The element type.</summary>
    public OnnxElementType ElementType { get; }

    /// <summary>The shape; empty for a scalar.</summary>
    public IReadOnlyList<long> Dims { get; }

    /// <summary>The number of elements (1 for a scalar).</summary>
    public long ElementCount { get; }

    /// <summary>Whether the data lives in an external-data file.</summary>
    public bool IsExternal => _externalPath is not null;

    /// <summary>The shape as ints (throws if a dimension does not fit).</summary>
    public int[] Shape => Dims.Select(d => checked((int)d)).ToArray();

    /// <summary>The elements as float: float, float16, bfloat16 and double convert; integer types widen.</summary>
    public float[] ToFloats()
    {
        var n = checked((int)ElementCount);
        switch (ElementType)
        {
            case OnnxElementType.Float:
            {
                if (_externalPath is not null && BitConverter.IsLittleEndian) return ReadExternalFloats(n);
                var raw = RawBytes();
                if (raw is not null) return CheckLength(MemoryMarshal.Cast<byte, float>(Le(raw, 4)).ToArray(), n);
                return CheckLength(Proto.FloatData.ToArray(), n);
            }
            case OnnxElementType.Float16:
            case OnnxElementType.BFloat16:
            {
                var raw = RawBytes();
                // Sizes are checked before the n-element arrays exist: n comes from the declared shape, not from the data.
                if (raw is not null) CheckBytes(raw, n, 2);
                else CheckLength(Proto.Int32Data, n); // typed storage of 16-bit types is int32_data, one value per element
                var bits = new ushort[n];
                if (raw is not null)
                    for (int i = 0; i < n; i++) bits[i] = BinaryPrimitives.ReadUInt16LittleEndian(raw.AsSpan(2 * i));
                else
                    for (int i = 0; i < n; i++) bits[i] = (ushort)Proto.Int32Data[i];
                var f = new float[n];
                if (ElementType == OnnxElementType.Float16)
                    for (int i = 0; i < n; i++) f[i] = (float)BitConverter.UInt16BitsToHalf(bits[i]);
                else
                    for (int i = 0; i < n; i++) f[i] = BitConverter.Int32BitsToSingle(bits[i] << 16);
                return f;
            }
            case OnnxElementType.Double:
            {
                var raw = RawBytes();
                var d = raw is not null ? MemoryMarshal.Cast<byte, double>(Le(raw, 8)).ToArray() : Proto.DoubleData.ToArray();
                return Array.ConvertAll(CheckLength(d, n), x => (float)x);
            }
            default:
                return Array.ConvertAll(ToInt64s(), x => (float)x);
        }
    }

    /// <summary>The elements as 64-bit integers: every integer type and bool; floats truncate.</summary>
    public long[] ToInt64s()
    {
        var n = checked((int)ElementCount);
        var raw = RawBytes();
        switch (ElementType)
        {
            case OnnxElementType.Int64:
                return CheckLength(raw is not null ? MemoryMarshal.Cast<byte, long>(Le(raw, 8)).ToArray() : Proto.Int64Data.ToArray(), n);
            case OnnxElementType.UInt64:
                return CheckLength(raw is not null
                    ? MemoryMarshal.Cast<byte, long>(Le(raw, 8)).ToArray()
                    : Proto.Uint64Data.Select(x => unchecked((long)x)).ToArray(), n);
            case OnnxElementType.Int32:
                return CheckLength(raw is not null
                    ? Array.ConvertAll(MemoryMarshal.Cast<byte, int>(Le(raw, 4)).ToArray(), x => (long)x)
                    : Proto.Int32Data.Select(x => (long)x).ToArray(), n);
            case OnnxElementType.UInt32:
                return CheckLength(raw is not null
                    ? Array.ConvertAll(MemoryMarshal.Cast<byte, uint>(Le(raw, 4)).ToArray(), x => (long)x)
                    : Proto.Uint64Data.Select(x => (long)x).ToArray(), n);
            case OnnxElementType.Int16:
            case OnnxElementType.UInt16:
            case OnnxElementType.Int8:
            case OnnxElementType.UInt8:
            case OnnxElementType.Bool:
            {
                if (raw is null) return CheckLength(Proto.Int32Data.Select(x => (long)x).ToArray(), n);
                int size = ElementType is OnnxElementType.Int16 or OnnxElementType.UInt16 ? 2 : 1;
                CheckBytes(raw, n, size);
                var r = new long[n];
                for (int i = 0; i < n; i++)
                    r[i] = ElementType switch
                    {
                        OnnxElementType.Int16 => BinaryPrimitives.ReadInt16LittleEndian(raw.AsSpan(2 * i)),
                        OnnxElementType.UInt16 => BinaryPrimitives.ReadUInt16LittleEndian(raw.AsSpan(2 * i)),
                        OnnxElementType.Int8 => (sbyte)raw[i],
                        _ => raw[i],
                    };
                return r;
            }
            case OnnxElementType.Float:
            case OnnxElementType.Float16:
            case OnnxElementType.BFloat16:
            case OnnxElementType.Double:
                return Array.ConvertAll(ToFloats(), x => (long)x);
            default:
                throw new SkTuningException($"{_file}: tensor '{Name}' has element type {ElementType}, not a number");
        }
    }

    /// <summary>The single value of a one-element tensor, as float.</summary>
    public float ScalarFloat() => ElementCount == 1
        ? ToFloats()[0]
        : throw new SkTuningException($"{_file}: tensor '{Name}' has {ElementCount} elements, expected a scalar");

    /// <summary>The single value of a one-element tensor, as an integer.</summary>
    public long ScalarInt64() => ElementCount == 1
        ? ToInt64s()[0]
        : throw new SkTuningException($"{_file}: tensor '{Name}' has {ElementCount} elements, expected a scalar");

    /// <inheritdoc/>
    public override string ToString() => $"{Name}: {ElementType}[{string.Join(",", Dims)}]{(IsExternal ? " (external)" : "")}";

    /// <summary>
    /// fp32 external data read straight into the result (little-endian hosts): one copy of the tensor in memory, not a
    /// byte buffer beside it — the difference between 1 and 2 GB at a time for a large embedding table.
    /// </summary>
    private float[] ReadExternalFloats(int n)
    {
        if (_externalLength != 4L * n)
            throw new SkTuningException($"{_file}: tensor '{Name}' has {_externalLength} data bytes, shape [{string.Join(",", Dims)}] needs {4L * n}");
        var values = new float[n];
        using var fs = new FileStream(_externalPath!, FileMode.Open, FileAccess.Read, FileShare.Read);
        fs.Seek(_externalOffset, SeekOrigin.Begin);
        fs.ReadExactly(MemoryMarshal.AsBytes(values.AsSpan()));
        return values;
    }

    /// <summary>The raw little-endian bytes, from the external file or raw_data; null when typed fields hold the data.</summary>
    private byte[]? RawBytes()
    {
        if (_externalPath is not null)
        {
            var bytes = new byte[checked((int)_externalLength)];
            using var fs = new FileStream(_externalPath, FileMode.Open, FileAccess.Read, FileShare.Read);
            fs.Seek(_externalOffset, SeekOrigin.Begin);
            fs.ReadExactly(bytes);
            return bytes;
        }
        return Proto.RawData.IsEmpty ? null : Proto.RawData.ToByteArray();
    }

    private static Span<byte> Le(byte[] raw, int size)
    {
        if (!BitConverter.IsLittleEndian)
            for (int i = 0; i + size <= raw.Length; i += size) raw.AsSpan(i, size).Reverse();
        return raw.AsSpan(0, raw.Length - raw.Length % size);
    }

    private void CheckBytes(byte[] raw, int n, int size)
    {
        if (raw.Length != (long)n * size)
            throw new SkTuningException($"{_file}: tensor '{Name}' has {raw.Length} data bytes, shape [{string.Join(",", Dims)}] needs {(long)n * size}");
    }

    private TList CheckLength<TList>(TList values, int n) where TList : System.Collections.ICollection => values.Count == n
        ? values
        : throw new SkTuningException($"{_file}: tensor '{Name}' has {values.Count} values, shape [{string.Join(",", Dims)}] needs {n}");
}
