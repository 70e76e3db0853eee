using System.Runtime.Intrinsics;
using ILGPU;
using ILGPU.Runtime;
using SkTuning.Gpu.Kernels.Gpu;

namespace SkTuning.Gpu.Kernels;

/// <summary>
/// Rotary position embedding, in place, Hugging Face <c>rotate_half</c> layout (LLaMA, GPT-NeoX, Phi): row r of x starts at
/// <c>r·stride</c> and holds <c>heads</c> blocks of <c>headDim</c>; within each block the first <c>rotaryDim</c> values pair
/// <c>i ↔ i + h</c> (<c>h = rotaryDim/2</c>, <c>i &lt; h</c>) and turn by the angle of position <c>positions[r]</c>, frequency i:
/// <c>x'ᵢ = xᵢ·cos − xᵢ₊ₕ·sin</c>, <c>x'ᵢ₊ₕ = xᵢ₊ₕ·cos + xᵢ·sin</c>. Columns ≥ rotaryDim of a head, and columns past
/// <c>heads·headDim</c> in a row, are untouched. cos/sin are tables <c>[maxPositions, h]</c> (<see cref="Tables"/>).
/// The backward is the transpose, which for a rotation is the inverse: the same turn with −sin.
/// </summary>
public static class Rope
{
    internal readonly struct Args
    {
        public readonly int Stride, Heads, HeadDim, Half;
        public readonly float Sign;
        public Args(int stride, int heads, int headDim, int half, float sign)
        {
            Stride = stride; Heads = heads; HeadDim = headDim; Half = half; Sign = sign;
        }
    }

    /// <summary>
    /// HF's <c>inv_freq</c> [rotaryDim/2]: <c>1/θ^(2i/r)</c> with an fp32 exponent, power and division — the constant a
    /// torch export bakes into the graph, so an exported graph and <see cref="Tables"/> agree bit for bit.
    /// </summary>
    /// <exception cref="ArgumentException">rotaryDim is not positive and even, or θ is not positive.</exception>
    public static float[] InverseFrequencies(int rotaryDim, float theta)
    {
        OpsCheck.Positive(rotaryDim, nameof(rotaryDim));
        if (rotaryDim % 2 != 0) throw new ArgumentException($"rotaryDim must be even, got {rotaryDim}", nameof(rotaryDim));
        if (!(theta > 0)) throw new ArgumentException($"theta must be positive, got {theta}", nameof(theta));
        var invFreq = new float[rotaryDim / 2];
        for (int i = 0; i < invFreq.Length; i++) invFreq[i] = 1f / MathF.Pow(theta, (float)(2 * i) / rotaryDim);
        return invFreq;
    }

    /// <summary>
    /// The cos and sin tables <c>[maxPositions, rotaryDim/2]</c>, computed as Hugging Face does in fp32:
    /// <c>inv_freq[i] = 1/θ^(2i/r)</c> (fp32 exponent, power and division), <c>angle = (float)pos·inv_freq[i]</c> (fp32 product),
    /// then cos/sin of that fp32 angle (evaluated in fp64 and rounded, i.e. the correctly rounded value torch's fp32 cos/sin
    /// approximate to an ulp or so).
    /// </summary>
    /// <exception cref="ArgumentException">A size is not positive, rotaryDim is odd, or θ is not positive.</exception>
    public static (float[] Cos, float[] Sin) Tables(int maxPositions, int rotaryDim, float theta)
    {
        OpsCheck.Positive(maxPositions, nameof(maxPositions));
        OpsCheck.Positive(rotaryDim, nameof(rotaryDim));
        if (rotaryDim % 2 != 0) throw new ArgumentException($"rotaryDim must be even, got {rotaryDim}", nameof(rotaryDim));
        if (!(theta > 0)) throw new ArgumentException($"theta must be positive, got {theta}", nameof(theta));
        int half = rotaryDim / 2;
        var invFreq = InverseFrequencies(rotaryDim, theta);
        float[] cos = new float[maxPositions * half], sin = new float[maxPositions * half];
        for (int p = 0; p < maxPositions; p++)
            for (int i = 0; i < half; i++)
            {
                float angle = (float)p * invFreq[i];
                cos[p * half + i] = (float)Math.Cos(angle);
                sin[p * half + i] = (float)Math.Sin(angle);
            }
        return (cos, sin);
    }

    /// <summary>Sizes, and (when <paramref name="positions"/> is given) every position inside the tables.</summary>
    private static void Validate(long x, long positionCount, ReadOnlySpan<int> positions, long cos, long sin, int rows, int stride, int heads,
        int headDim, int rotaryDim)
    {
        OpsCheck.Positive(rows, nameof(rows));
        OpsCheck.Positive(heads, nameof(heads));
        OpsCheck.Positive(headDim, nameof(headDim));
        OpsCheck.Positive(rotaryDim, nameof(rotaryDim));
        if (rotaryDim % 2 != 0 || rotaryDim > headDim)
            throw new ArgumentException($"rotaryDim must be even and at most headDim = {headDim}, got {rotaryDim}", nameof(rotaryDim));
        long width = (long)heads * headDim;
        if (stride < width) throw new ArgumentException($"stride {stride} is less than heads·headDim = {heads}·{headDim}", nameof(stride));
        long need = (long)(rows - 1) * stride + width;
        if (x < need)
            throw new ArgumentException($"x has length {x}, expected at least (rows − 1)·stride + heads·headDim = {rows - 1}·{stride} + {width} = {need}", nameof(x));
        OpsCheck.Length(positionCount, rows, nameof(positions), "rows");
        int half = rotaryDim / 2;
        if (cos == 0 || cos % half != 0) throw new ArgumentException($"cos has length {cos}, not a positive multiple of rotaryDim/2 = {half}", nameof(cos));
        OpsCheck.Length(sin, cos, nameof(sin), "length of cos");
        long maxPositions = cos / half;
        for (int r = 0; r < positions.Length; r++)
            if ((uint)positions[r] >= maxPositions)
                throw new ArgumentException($"position {positions[r]} at row {r} is outside the tables' {maxPositions} positions", nameof(positions));
    }

    // ---------------------------------------------------------------- fp64 reference

    /// <summary>fp64 reference forward (in place), from fp64 copies of the tables.</summary>
    public static void ForwardReference(Span<double> x, ReadOnlySpan<int> positions, ReadOnlySpan<double> cos, ReadOnlySpan<double> sin,
        int rows, int stride, int heads, int headDim, int rotaryDim) =>
        RotateReference(x, positions, cos, sin, rows, stride, heads, headDim, rotaryDim, 1);

    /// <summary>fp64 reference backward (in place): the inverse rotation.</summary>
    public static void BackwardReference(Span<double> dx, ReadOnlySpan<int> positions, ReadOnlySpan<double> cos, ReadOnlySpan<double> sin,
        int rows, int stride, int heads, int headDim, int rotaryDim) =>
        RotateReference(dx, positions, cos, sin, rows, stride, heads, headDim, rotaryDim, -1);

    private static void RotateReference(Span<double> x, ReadOnlySpan<int> positions, ReadOnlySpan<double> cos, ReadOnlySpan<double> sin,
        int rows, int stride, int heads, int headDim, int rotaryDim, int sign)
    {
        Validate(x.Length, positions.Length, positions, cos.Length, sin.Length, rows, stride, heads, headDim, rotaryDim);
        int half = rotaryDim / 2;
        for (int r = 0; r < rows; r++)
            for (int h = 0; h < heads; h++)
                for (int i = 0; i < half; i++)
                {
                    int o = r * stride + h * headDim + i, t = positions[r] * half + i;
                    double a = x[o], b = x[o + half], c = cos[t], s = sign * sin[t];
                    x[o] = a * c - b * s;
                    x[o + half] = b * c + a * s;
                }
    }

    // ---------------------------------------------------------------- CPU

    /// <summary>CPU forward, in place (Vector512 over each head's pairs, parallel over rows).</summary>
    /// <exception cref="ArgumentException">Sizes disagree, or a position is outside the tables.</exception>
    public static void Forward(Span<float> x, ReadOnlySpan<int> positions, ReadOnlySpan<float> cos, ReadOnlySpan<float> sin,
        int rows, int stride, int heads, int headDim, int rotaryDim) =>
        Rotate(x, positions, cos, sin, rows, stride, heads, headDim, rotaryDim, 1f);

    /// <summary>CPU backward, in place: the inverse rotation (turns d/d(rotated) into d/d(unrotated)).</summary>
    /// <exception cref="ArgumentException">Sizes disagree, or a position is outside the tables.</exception>
    public static void Backward(Span<float> dx, ReadOnlySpan<int> positions, ReadOnlySpan<float> cos, ReadOnlySpan<float> sin,
        int rows, int stride, int heads, int headDim, int rotaryDim) =>
        Rotate(dx, positions, cos, sin, rows, stride, heads, headDim, rotaryDim, -1f);

    private static unsafe void Rotate(Span<float> x, ReadOnlySpan<int> positions, ReadOnlySpan<float> cos, ReadOnlySpan<float> sin,
        int rows, int stride, int heads, int headDim, int rotaryDim, float sign)
    {
        Validate(x.Length, positions.Length, positions, cos.Length, sin.Length, rows, stride, heads, headDim, rotaryDim);
        int half = rotaryDim / 2;
        fixed (float* px = x, pc = cos, ps = sin)
        fixed (int* pp = positions)
        {
            var X = new OpsPtr<float>(px); var C = new OpsPtr<float>(pc); var S = new OpsPtr<float>(ps); var P = new OpsPtr<int>(pp);
            OpsParallel.For(rows, (long)rows * heads * rotaryDim * 3, r =>
            {
                var c = C.Span((long)P[r] * half, half); var s = S.Span((long)P[r] * half, half);
                for (int h = 0; h < heads; h++) RotateHead(X.Span((long)r * stride + (long)h * headDim, rotaryDim), c, s, sign);
            });
        }
    }

    /// <summary>Turns the pairs (i, i + h) of one head's rotary part by the row's angles (sin scaled by ±1).</summary>
    private static void RotateHead(Span<float> x, ReadOnlySpan<float> cos, ReadOnlySpan<float> sin, float sign)
    {
        int half = cos.Length, i = 0;
        var lo = x.Slice(0, half); var hi = x.Slice(half, half);
        if (Vector512.IsHardwareAccelerated)
        {
            var vsign = Vector512.Create(sign);
            for (; i + 16 <= half; i += 16)
            {
                var a = Vector512.Create<float>(lo.Slice(i, 16)); var b = Vector512.Create<float>(hi.Slice(i, 16));
                var c = Vector512.Create<float>(cos.Slice(i, 16)); var s = Vector512.Create<float>(sin.Slice(i, 16)) * vsign;
                (a * c - b * s).CopyTo(lo.Slice(i, 16));
                (b * c + a * s).CopyTo(hi.Slice(i, 16));
            }
        }
        for (; i < half; i++)
        {
            float a = lo[i], b = hi[i], c = cos[i], s = sign * sin[i];
            lo[i] = a * c - b * s;
            hi[i] = b * c + a * s;
        }
    }

    // ---------------------------------------------------------------- ILGPU

    /// <summary>One thread per (row, head, pair); each thread owns its two elements, so in place is safe.</summary>
    internal static void RotateKernel(Index1D idx, ArrayView<float> x, ArrayView<int> positions, ArrayView<float> cos, ArrayView<float> sin, Args a)
    {
        int pair = idx % a.Half, t = idx / a.Half, h = t % a.Heads, r = t / a.Heads;
        long o = (long)r * a.Stride + (long)h * a.HeadDim + pair, k = (long)positions[r] * a.Half + pair;
        float c = cos[k], s = a.Sign * sin[k], x0 = x[o], x1 = x[o + a.Half];
        x[o] = x0 * c - x1 * s;
        x[o + a.Half] = x1 * c + x0 * s;
    }

    private static void Rotate(GpuDevice device, ArrayView<float> x, ArrayView<int> positions, ArrayView<float> cos, ArrayView<float> sin,
        int rows, int stride, int heads, int headDim, int rotaryDim, float sign)
    {
        Validate(x.Length, positions.Length, default, cos.Length, sin.Length, rows, stride, heads, headDim, rotaryDim);
        var k = device.Kernel("Rope.Rotate", acc => acc.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<int>,
            ArrayView<float>, ArrayView<float>, Args>(RotateKernel));
        k(rows * heads * (rotaryDim / 2), x, positions, cos, sin, new Args(stride, heads, headDim, rotaryDim / 2, sign));
    }

    /// <summary>GPU forward, in place. Positions are not range-checked on the device; validate them on the host.</summary>
    /// <exception cref="ArgumentException">Sizes disagree.</exception>
    public static void Forward(GpuDevice device, ArrayView<float> x, ArrayView<int> positions, ArrayView<float> cos, ArrayView<float> sin,
        int rows, int stride, int heads, int headDim, int rotaryDim) =>
        Rotate(device, x, positions, cos, sin, rows, stride, heads, headDim, rotaryDim, 1f);

    /// <summary>GPU backward, in place: the inverse rotation.</summary>
    /// <exception cref="ArgumentException">Sizes disagree.</exception>
    public static void Backward(GpuDevice device, ArrayView<float> dx, ArrayView<int> positions, ArrayView<float> cos, ArrayView<float> sin,
        int rows, int stride, int heads, int headDim, int rotaryDim) =>
        Rotate(device, dx, positions, cos, sin, rows, stride, heads, headDim, rotaryDim, -1f);
}
