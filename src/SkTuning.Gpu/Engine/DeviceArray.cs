namespace SkTuning.Gpu.Engine;

/// <summary>An array that lives on a backend: host memory for the CPU backend, device memory for CUDA.</summary>
/// <typeparam name="T">float for tensors, int for token ids.</typeparam>
public abstract class DeviceArray<T> : IDisposable where T : unmanaged
{
    /// <summary>Creates the array record.</summary>
    protected DeviceArray(int length) => Length = length;

    /// <summary>Number of elements.</summary>
    public int Length { get; }

    /// <summary>The whole array as a view.</summary>
    public DeviceView<T> All => new(this, 0, Length);

    /// <summary>A sub-range as a view.</summary>
    public DeviceView<T> Slice(int offset, int length) => All.Slice(offset, length);

    /// <inheritdoc />
    public abstract void Dispose();
}

/// <summary>A contiguous range of a <see cref="DeviceArray{T}"/>; empty views stand for "no buffer".</summary>
public readonly record struct DeviceView<T>(DeviceArray<T>? Array, int Offset, int Length) where T : unmanaged
{
    /// <summary>True when the view has no elements (an optional buffer that is absent).</summary>
    public bool IsEmpty => Length == 0;

    /// <summary>A sub-range of this view.</summary>
    public DeviceView<T> Slice(int offset, int length)
    {
        if (offset < 0 || length < 0 || offset + length > Length)
            throw new ArgumentOutOfRangeException(nameof(offset), $"slice [{offset}, {offset + length}) of a view of {Length}");
        return new DeviceView<T>(Array, Offset + offset, length);
    }
}
