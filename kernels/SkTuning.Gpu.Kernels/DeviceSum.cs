using ILGPU;
using ILGPU.Runtime;
using SkTuning.Gpu.Kernels.Gpu;

namespace SkTuning.Gpu.Kernels;

/// <summary>
/// Deterministic sums that stay on the device, so the host does not wait for values it reads only when it logs them
/// (the loss, the gradient norm): one group of <see cref="Threads"/> threads, each summing a fixed stride in fp64, then a
/// fixed-order tree in shared memory. Same inputs, same bits, on every run.
/// </summary>
public static class DeviceSum
{
    /// <summary>Threads of the single group that reduces.</summary>
    public const int Threads = 256;

    /// <summary>The group's total of every thread's <paramref name="value"/> (a power-of-two tree; valid in every thread).</summary>
    internal static double GroupTotal(double value, ArrayView<double> shared)
    {
        int t = Group.IdxX;
        shared[t] = value;
        Group.Barrier();
        for (int width = Threads / 2; width > 0; width /= 2)
        {
            if (t < width) shared[t] += shared[t + width];
            Group.Barrier();
        }
        return shared[0];
    }

    /// <summary>Σ values in fp64 over thread <c>Group.IdxX</c>'s stride, then the group's total.</summary>
    internal static double Total(ArrayView<float> values, ArrayView<double> shared)
    {
        double s = 0;
        for (long i = Group.IdxX; i < values.Length; i += Threads) s += values[i];
        return GroupTotal(s, shared);
    }

    internal static void MeanKernel(ArrayView<float> values, ArrayView<float> result, int divisor)
    {
        var shared = SharedMemory.Allocate<double>(Threads);
        double total = Total(values, shared);
        if (Group.IdxX == 0) result[0] = divisor == 0 ? 0f : (float)total / divisor;
    }

    /// <summary>The launch shape: one group.</summary>
    internal static KernelConfig Config => new(1, Threads);

    /// <summary>fp64 reference of <see cref="Mean"/>.</summary>
    public static float MeanReference(ReadOnlySpan<float> values, int divisor)
    {
        double s = 0;
        foreach (var v in values) s += v;
        return divisor == 0 ? 0f : (float)s / divisor;
    }

    /// <summary>GPU: <c>result[0] = (float)Σ values / divisor</c> (0 when <paramref name="divisor"/> is 0), without a host wait.</summary>
    /// <exception cref="ArgumentException"><paramref name="result"/> is not one value long.</exception>
    public static void Mean(GpuDevice device, ArrayView<float> values, ArrayView<float> result, int divisor)
    {
        OpsCheck.Length(result.Length, 1, nameof(result), "one value");
        var k = device.Kernel("DeviceSum.Mean", a => a.LoadStreamKernel<ArrayView<float>, ArrayView<float>, int>(MeanKernel));
        k(Config, values, result, divisor);
    }
}
