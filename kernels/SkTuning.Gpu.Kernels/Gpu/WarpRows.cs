using ILGPU;
using ILGPU.Runtime;

namespace SkTuning.Gpu.Kernels.Gpu;

/// <summary>
/// The launch layout of row-wise kernels that give each row one warp (norms): groups of <see cref="PerGroup"/> warps,
/// one row per warp. A thread per row left most of the GPU idle (MiniLM's 2048 rows are 2-3 of an H200's 132 SMs)
/// and read each row with stride d across threads (uncoalesced); a warp per row reads it contiguously.
/// </summary>
public static class WarpRows
{
    /// <summary>Warps (rows) per group.</summary>
    public const int PerGroup = 4;

    /// <summary>The grid for <paramref name="rows"/> rows on <paramref name="device"/>.</summary>
    public static KernelConfig Config(GpuDevice device, int rows) =>
        new((rows + PerGroup - 1) / PerGroup, PerGroup * device.Accelerator.WarpSize);

    /// <summary>In a kernel: the row of the calling thread's warp.</summary>
    public static int Row() => Grid.IdxX * PerGroup + Warp.WarpIdx;

    /// <summary>In a kernel: the sum of <paramref name="value"/> over the warp, in every lane (butterfly shuffles, fixed order).</summary>
    public static float Sum(float value)
    {
        for (int offset = Warp.WarpSize / 2; offset > 0; offset /= 2) value += Warp.ShuffleXor(value, offset);
        return value;
    }
}
