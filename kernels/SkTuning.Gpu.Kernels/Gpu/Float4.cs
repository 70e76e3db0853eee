using ILGPU;

namespace SkTuning.Gpu.Kernels.Gpu;

/// <summary>
/// Four consecutive floats, 16-byte aligned: a view cast to <c>ArrayView&lt;Float4&gt;</c> makes ILGPU's PTX backend load
/// and store 128 bits at once (<c>ld.global.v4.f32</c>, <c>ld.shared.v4.f32</c>). A plain struct rather than
/// <see cref="System.Numerics.Vector4"/>, whose operators are .NET hardware intrinsics that ILGPU does not compile.
/// </summary>
public struct Float4
{
    /// <summary>Components in memory order.</summary>
    public float X, Y, Z, W;

    /// <summary>Packs four components.</summary>
    public Float4(float x, float y, float z, float w) { X = x; Y = y; Z = z; W = w; }

    /// <summary><c>acc + s·v</c> per component (the GEMM micro-tile update).</summary>
    public static Float4 MultiplyAdd(Float4 acc, float s, Float4 v) =>
        new(acc.X + s * v.X, acc.Y + s * v.Y, acc.Z + s * v.Z, acc.W + s * v.W);

    /// <summary>Component-wise sum.</summary>
    public static Float4 Add(Float4 a, Float4 b) => new(a.X + b.X, a.Y + b.Y, a.Z + b.Z, a.W + b.W);

    /// <summary>The four floats of <paramref name="v"/> starting at <paramref name="offset"/> (scalar loads, any alignment).</summary>
    public static Float4 Load(ArrayView<float> v, long offset) => new(v[offset], v[offset + 1], v[offset + 2], v[offset + 3]);

    /// <summary>
    /// True when <paramref name="view"/> starts on a 16-byte boundary (host side), so it can be read as <see cref="Float4"/>.
    /// Device buffers are 256-byte aligned; a view into one is aligned when its element offset is a multiple of 4.
    /// </summary>
    public static bool IsAligned(ArrayView<float> view) =>
        view.Length == 0 || ((((IArrayView)view).Buffer.NativePtr.ToInt64() + ((IContiguousArrayView)view).IndexInBytes) & 15) == 0;
}
