using System.Runtime.CompilerServices;

namespace SkTuning.Gpu.Kernels;

/// <summary>
/// bfloat16 storage for frozen weights: the high 16 bits of an fp32 (sign, the full 8-bit exponent, 7 explicit mantissa
/// bits, so ~3 significant decimal digits: relative rounding error ≤ 2⁻⁸ ≈ 3.9e-3). Values are rounded to nearest even
/// once at load; widening back to fp32 (a 16-bit shift) is exact, so a GEMM over widened bf16 weights computes in fp32
/// on exactly the rounded values.
/// </summary>
public static class BFloat16
{
    /// <summary>fp32 → bf16 bits, round to nearest even; NaN stays a (quiet) NaN, ±∞ and overflow to ∞ as IEEE rounding gives.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ushort FromFloat(float value)
    {
        uint bits = BitConverter.SingleToUInt32Bits(value);
        if (float.IsNaN(value)) return (ushort)((bits >> 16) | 0x0040);
        // Adding 0x7FFF plus the kept part's lowest bit rounds half to even; a carry into the exponent is the correct
        // rounding up (to the next binade, or to ∞ past the largest finite bf16).
        bits += 0x7FFFu + ((bits >> 16) & 1u);
        return (ushort)(bits >> 16);
    }

    /// <summary>bf16 bits → fp32 (exact).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float ToFloat(ushort bits) => BitConverter.UInt32BitsToSingle((uint)bits << 16);

    /// <summary>Rounds every value of <paramref name="source"/> into <paramref name="target"/> (same length).</summary>
    public static void FromFloat(ReadOnlySpan<float> source, Span<ushort> target)
    {
        OpsCheck.Length(target.Length, source.Length, nameof(target), "source.Length");
        for (int i = 0; i < source.Length; i++) target[i] = FromFloat(source[i]);
    }

    /// <summary>Widens every value of <paramref name="source"/> into <paramref name="target"/> (same length).</summary>
    public static void ToFloat(ReadOnlySpan<ushort> source, Span<float> target)
    {
        OpsCheck.Length(target.Length, source.Length, nameof(target), "source.Length");
        for (int i = 0; i < source.Length; i++) target[i] = ToFloat(source[i]);
    }

    /// <summary>The fp32 values rounded to bf16 and widened back: what a bf16 weight holds, for references and tests.</summary>
    public static float[] Round(ReadOnlySpan<float> values)
    {
        var r = new float[values.Length];
        for (int i = 0; i < values.Length; i++) r[i] = ToFloat(FromFloat(values[i]));
        return r;
    }
}
