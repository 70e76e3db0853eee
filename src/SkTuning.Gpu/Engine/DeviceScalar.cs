namespace SkTuning.Gpu.Engine;

/// <summary>
/// One float the device wrote (a step's loss or gradient norm) that the host has not waited for: <see cref="Read"/> waits
/// for the device and downloads it, so read it only when it is logged.
/// </summary>
/// <param name="backend">The backend that owns the value.</param>
/// <param name="value">A view of length 1.</param>
public readonly struct DeviceScalar(Backend backend, DeviceView<float> value)
{
    /// <summary>Waits for the device and returns the value.</summary>
    public float Read() => backend.ToHost(value)[0];
}
