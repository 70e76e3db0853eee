namespace SkTuning.Gpu.Runs;

/// <summary>The element types a <see cref="NamedTensor"/> (and so a safetensors file of ours) can hold.</summary>
public enum TensorDType
{
    /// <summary>32-bit IEEE float ("F32"): weights and optimizer moments.</summary>
    F32,

    /// <summary>64-bit signed integer ("I64"): step counters.</summary>
    I64,

    /// <summary>32-bit signed integer ("I32"): small counters.</summary>
    I32,
}

/// <summary>
/// A dense row-major tensor: its shape and its data, one of <c>float[]</c> (F32), <c>long[]</c> (I64) or
/// <c>int[]</c> (I32). The shape's product must equal the data length (an empty shape is a scalar: one element).
/// </summary>
public sealed class NamedTensor
{
    /// <summary>An F32 tensor of <paramref name="shape"/> over <paramref name="data"/> (not copied).</summary>
    public NamedTensor(int[] shape, float[] data) : this(shape, TensorDType.F32, data) { }

    private NamedTensor(int[] shape, TensorDType dtype, Array data)
    {
        ArgumentNullException.ThrowIfNull(shape);
        ArgumentNullException.ThrowIfNull(data);
        long count = ElementCountOf(shape);
        if (count != data.Length)
            throw new ArgumentException($"shape [{string.Join(", ", shape)}] holds {count} elements but the data has {data.Length}", nameof(data));
        Shape = shape;
        DType = dtype;
        Values = data;
    }

    /// <summary>An I64 tensor of <paramref name="shape"/> over <paramref name="data"/> (not copied).</summary>
    public static NamedTensor FromInt64(int[] shape, long[] data) => new(shape, TensorDType.I64, data);

    /// <summary>An I32 tensor of <paramref name="shape"/> over <paramref name="data"/> (not copied).</summary>
    public static NamedTensor FromInt32(int[] shape, int[] data) => new(shape, TensorDType.I32, data);

    /// <summary>An F32 vector (shape [n]) over <paramref name="data"/>.</summary>
    public static NamedTensor Vector(float[] data) => new([data.Length], data);

    /// <summary>An I64 scalar (shape []): a step counter.</summary>
    public static NamedTensor Scalar(long value) => FromInt64([], [value]);

    /// <summary>The dimensions, outermost first.</summary>
    public int[] Shape { get; }

    /// <summary>The element type.</summary>
    public TensorDType DType { get; }

    /// <summary>The data array: <c>float[]</c>, <c>long[]</c> or <c>int[]</c> by <see cref="DType"/>.</summary>
    public Array Values { get; }

    /// <summary>The F32 data; throws when the tensor is not F32.</summary>
    public float[] Data => Values as float[] ?? throw new InvalidOperationException($"tensor is {DType}, not F32");

    /// <summary>The I64 data; throws when the tensor is not I64.</summary>
    public long[] Int64Data => Values as long[] ?? throw new InvalidOperationException($"tensor is {DType}, not I64");

    /// <summary>The I32 data; throws when the tensor is not I32.</summary>
    public int[] Int32Data => Values as int[] ?? throw new InvalidOperationException($"tensor is {DType}, not I32");

    /// <summary>Number of elements (the product of the shape).</summary>
    public long ElementCount => Values.Length;

    /// <summary>Bytes per element of <paramref name="dtype"/>.</summary>
    public static int SizeOf(TensorDType dtype) => dtype == TensorDType.I64 ? 8 : 4;

    /// <summary>The safetensors name of <paramref name="dtype"/> ("F32", "I64", "I32").</summary>
    public static string NameOf(TensorDType dtype) => dtype switch
    {
        TensorDType.F32 => "F32",
        TensorDType.I64 => "I64",
        TensorDType.I32 => "I32",
        _ => throw new ArgumentOutOfRangeException(nameof(dtype)),
    };

    /// <summary>Whether shapes, types and every element (bitwise for floats) are equal.</summary>
    public bool ContentEquals(NamedTensor other) =>
        DType == other.DType && Shape.AsSpan().SequenceEqual(other.Shape) && DType switch
        {
            TensorDType.F32 => System.Runtime.InteropServices.MemoryMarshal.AsBytes(Data.AsSpan())
                .SequenceEqual(System.Runtime.InteropServices.MemoryMarshal.AsBytes(other.Data.AsSpan())),
            TensorDType.I64 => Int64Data.AsSpan().SequenceEqual(other.Int64Data),
            _ => Int32Data.AsSpan().SequenceEqual(other.Int32Data),
        };

    internal static long ElementCountOf(int[] shape)
    {
        long count = 1;
        foreach (var d in shape)
        {
            if (d < 0) throw new ArgumentException($"negative dimension {d} in shape [{string.Join(", ", shape)}]", nameof(shape));
            count *= d;
            if (count > Array.MaxLength) throw new ArgumentException($"shape [{string.Join(", ", shape)}] is too large", nameof(shape));
        }
        return count;
    }
}
