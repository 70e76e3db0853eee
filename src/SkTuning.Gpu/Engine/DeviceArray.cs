namespace SkTuning.Gpu.Engine;

/// <summary>An array that lives on a backend: host memory for the CPU backend, device memory for CUDA.</summary>
/// <typeparam name="T">float for tensors, int for token ids.</typeparam>
public abstract class DeviceArray<T> : IDisposable where T : unmanaged
{
    private MemoryMeter? _meter;

    /// <summary>Creates the array record.</summary>
    protected DeviceArray(int length) => Length = length;

    /// <summary>Counts this array's bytes in <paramref name="meter"/> until it is released.</summary>
    internal DeviceArray<T> Metered(MemoryMeter meter)
    {
        _meter = meter;
        meter.Add((long)Length * System.Runtime.CompilerServices.Unsafe.SizeOf<T>());
        return this;
    }

    /// <summary>Stops counting this array (call from <see cref="Dispose"/>).</summary>
    protected void Release()
    {
        _meter?.Add(-(long)Length * System.Runtime.CompilerServices.Unsafe.SizeOf<T>());
        _meter = null;
    }

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

/// <summary>Bytes a backend has allocated: now, and the peak since the last <see cref="ResetPeak"/>.</summary>
public sealed class MemoryMeter
{
    private long _current, _peak;

    /// <summary>Bytes allocated and not yet released.</summary>
    public long Current => Interlocked.Read(ref _current);

    /// <summary>The most bytes allocated at once since the last reset.</summary>
    public long Peak => Interlocked.Read(ref _peak);

    /// <summary>Starts a new peak measurement from the current level.</summary>
    public void ResetPeak() => Interlocked.Exchange(ref _peak, Current);

    internal void Add(long bytes)
    {
        long now = Interlocked.Add(ref _current, bytes);
        long peak;
        while (now > (peak = Interlocked.Read(ref _peak)) && Interlocked.CompareExchange(ref _peak, now, peak) != peak) { }
    }
}
