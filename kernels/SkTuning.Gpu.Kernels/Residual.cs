using System.Numerics.Tensors;
using ILGPU;
using ILGPU.Runtime;
using SkTuning.Gpu.Kernels.Gpu;

namespace SkTuning.Gpu.Kernels;

/// <summary>Residual add: <c>y = a + b</c>; backward <c>da += dy</c>, <c>db += dy</c> (an empty gradient is skipped).</summary>
public static class Residual
{
    private static void Validate(long a, long b, long y, string aName, string bName, string yName)
    {
        OpsCheck.Length(b, a, bName, $"length of {aName}");
        OpsCheck.Length(y, a, yName, $"length of {aName}");
    }

    /// <summary>fp64 reference forward.</summary>
    public static void ForwardReference(ReadOnlySpan<double> a, ReadOnlySpan<double> b, Span<double> y)
    {
        Validate(a.Length, b.Length, y.Length, nameof(a), nameof(b), nameof(y));
        for (int i = 0; i < y.Length; i++) y[i] = a[i] + b[i];
    }

    /// <summary>fp64 reference backward.</summary>
    public static void BackwardReference(ReadOnlySpan<double> dy, Span<double> da, Span<double> db)
    {
        for (int i = 0; i < dy.Length; i++)
        {
            if (!da.IsEmpty) da[i] += dy[i];
            if (!db.IsEmpty) db[i] += dy[i];
        }
    }

    /// <summary>CPU forward (y may alias a or b).</summary>
    /// <exception cref="ArgumentException">Lengths disagree.</exception>
    public static void Forward(ReadOnlySpan<float> a, ReadOnlySpan<float> b, Span<float> y)
    {
        Validate(a.Length, b.Length, y.Length, nameof(a), nameof(b), nameof(y));
        TensorPrimitives.Add(a, b, y);
    }

    /// <summary>CPU backward: <c>da += dy</c>, <c>db += dy</c>; empty = skip.</summary>
    /// <exception cref="ArgumentException">Lengths disagree.</exception>
    public static void Backward(ReadOnlySpan<float> dy, Span<float> da, Span<float> db)
    {
        OpsCheck.Optional(da.Length, dy.Length, nameof(da), "length of dy");
        OpsCheck.Optional(db.Length, dy.Length, nameof(db), "length of dy");
        if (!da.IsEmpty) TensorPrimitives.Add(da, dy, da);
        if (!db.IsEmpty) TensorPrimitives.Add(db, dy, db);
    }

    internal static void ForwardKernel(Index1D i, ArrayView<float> a, ArrayView<float> b, ArrayView<float> y) => y[i] = a[i] + b[i];

    internal static void AccumulateKernel(Index1D i, ArrayView<float> dy, ArrayView<float> g) => g[i] += dy[i];

    /// <summary>GPU forward.</summary>
    public static void Forward(GpuDevice device, ArrayView<float> a, ArrayView<float> b, ArrayView<float> y)
    {
        Validate(a.Length, b.Length, y.Length, nameof(a), nameof(b), nameof(y));
        if (y.Length == 0) return;   // CUDA refuses an empty grid
        var k = device.Kernel("Residual.Forward", acc => acc.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>>(ForwardKernel));
        k((int)y.Length, a, b, y);
    }

    /// <summary>GPU backward: <c>da += dy</c>, <c>db += dy</c>; empty = skip.</summary>
    public static void Backward(GpuDevice device, ArrayView<float> dy, ArrayView<float> da, ArrayView<float> db)
    {
        OpsCheck.Optional(da.Length, dy.Length, nameof(da), "length of dy");
        OpsCheck.Optional(db.Length, dy.Length, nameof(db), "length of dy");
        if (dy.Length == 0) return;   // CUDA refuses an empty grid
        var k = device.Kernel("Residual.Accumulate", acc => acc.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>>(AccumulateKernel));
        if (da.Length != 0) k((int)dy.Length, dy, da);
        if (db.Length != 0) k((int)dy.Length, dy, db);
    }
}
