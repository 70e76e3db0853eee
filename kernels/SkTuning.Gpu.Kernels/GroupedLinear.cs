using System.Buffers;
using ILGPU;
using ILGPU.Runtime;
using SkTuning.Gpu.Kernels.Gpu;

namespace SkTuning.Gpu.Kernels;

/// <summary>
/// G linear maps of one input, with inverted dropout on their outputs: <c>y[g] = dropout(x·W_g + b_g)</c>, x [rows, in],
/// y [G, rows, out]. Each map's parameters are packed as one [(in + 1), out] matrix — W_g's rows, then b_g as the row of a
/// constant-1 input — at stride (in + 1)·out, which is how a list of (weight [in, out], bias [out]) tensors lies in a flat
/// parameter buffer. Backward: <c>dWb_g += [x, 1]ᵀ·dz_g</c> with <c>dz = dy·mask/(1 − p)</c> (the dropout mask of
/// element i of y is <see cref="Dropout.Keep"/>(seed, offset + i)). On the GPU each direction is one launch for all G maps
/// (SK-Prefix's 2·L key/value maps were 2·L GEMMs, a dropout and 2·L bias sums); shapes are small (rows = m), so the
/// kernels are direct: one thread per output element.
/// </summary>
public static class GroupedLinear
{
    /// <summary>Scalar arguments of the kernels.</summary>
    internal readonly struct Args(int groups, int rows, int inWidth, int outWidth, float p, ulong seed, long offset)
    {
        public readonly int Groups = groups, Rows = rows, In = inWidth, Out = outWidth;
        public readonly ulong Seed = seed;
        public readonly long Offset = offset;
        public readonly float P = p, Scale = 1f / (1f - p);
    }

    private static void Validate(long x, long weights, long y, int groups, int rows, int inWidth, int outWidth, float p, string yName)
    {
        OpsCheck.Positive(groups, nameof(groups));
        OpsCheck.Positive(rows, nameof(rows));
        OpsCheck.Positive(inWidth, nameof(inWidth));
        OpsCheck.Positive(outWidth, nameof(outWidth));
        if (!(p >= 0f && p < 1f)) throw new ArgumentException($"drop probability p = {p} must be in [0, 1)", nameof(p));
        OpsCheck.Length(x, (long)rows * inWidth, nameof(x), $"rows·in = {rows}·{inWidth}");
        OpsCheck.Length(weights, (long)groups * (inWidth + 1) * outWidth, nameof(weights), $"G·(in+1)·out = {groups}·{inWidth + 1}·{outWidth}");
        OpsCheck.Length(y, (long)groups * rows * outWidth, yName, $"G·rows·out = {groups}·{rows}·{outWidth}");
    }

    // ---------------------------------------------------------------- fp64 reference

    /// <summary>fp64 reference forward.</summary>
    public static void ForwardReference(ReadOnlySpan<double> x, ReadOnlySpan<double> weights, Span<double> y, int groups, int rows,
        int inWidth, int outWidth, float p, ulong seed, long offset)
    {
        Validate(x.Length, weights.Length, y.Length, groups, rows, inWidth, outWidth, p, nameof(y));
        double scale = 1.0 / (1.0 - p);
        for (int g = 0; g < groups; g++)
        for (int r = 0; r < rows; r++)
        for (int c = 0; c < outWidth; c++)
        {
            int w0 = g * (inWidth + 1) * outWidth;
            double acc = weights[w0 + inWidth * outWidth + c];
            for (int k = 0; k < inWidth; k++) acc += x[r * inWidth + k] * weights[w0 + k * outWidth + c];
            int i = (g * rows + r) * outWidth + c;
            y[i] = Dropout.Keep(seed, offset + i, p) ? acc * scale : 0;
        }
    }

    /// <summary>fp64 reference backward (accumulates into <paramref name="dWeights"/>).</summary>
    public static void BackwardReference(ReadOnlySpan<double> x, ReadOnlySpan<double> dy, Span<double> dWeights, int groups, int rows,
        int inWidth, int outWidth, float p, ulong seed, long offset)
    {
        Validate(x.Length, dWeights.Length, dy.Length, groups, rows, inWidth, outWidth, p, nameof(dy));
        double scale = 1.0 / (1.0 - p);
        for (int g = 0; g < groups; g++)
        for (int r = 0; r < rows; r++)
        for (int c = 0; c < outWidth; c++)
        {
            int i = (g * rows + r) * outWidth + c;
            if (!Dropout.Keep(seed, offset + i, p)) continue;
            double dz = dy[i] * scale;
            int w0 = g * (inWidth + 1) * outWidth;
            for (int k = 0; k < inWidth; k++) dWeights[w0 + k * outWidth + c] += x[r * inWidth + k] * dz;
            dWeights[w0 + inWidth * outWidth + c] += dz;
        }
    }

    // ---------------------------------------------------------------- CPU (the SIMD GEMM per map)

    /// <summary>CPU forward: per map one GEMM with its bias, then the dropout in place.</summary>
    public static void Forward(ReadOnlySpan<float> x, ReadOnlySpan<float> weights, Span<float> y, int groups, int rows, int inWidth, int outWidth,
        float p, ulong seed, long offset)
    {
        Validate(x.Length, weights.Length, y.Length, groups, rows, inWidth, outWidth, p, nameof(y));
        int wLength = inWidth * outWidth, block = rows * outWidth;
        for (int g = 0; g < groups; g++)
        {
            var w = weights.Slice(g * (wLength + outWidth), wLength + outWidth);
            var yg = y.Slice(g * block, block);
            Gemm.NN(rows, outWidth, inWidth, x, w[..wLength], yg, w[wLength..]);
            if (p > 0f) Dropout.Forward(yg, yg, p, seed, offset + (long)g * block);
        }
    }

    /// <summary>CPU backward: per map the dropout's mask on dy, then one TN GEMM (dW) and the column sums (db).</summary>
    public static void Backward(ReadOnlySpan<float> x, ReadOnlySpan<float> dy, Span<float> dWeights, int groups, int rows, int inWidth, int outWidth,
        float p, ulong seed, long offset)
    {
        Validate(x.Length, dWeights.Length, dy.Length, groups, rows, inWidth, outWidth, p, nameof(dy));
        int wLength = inWidth * outWidth, block = rows * outWidth;
        var scratch = p > 0f ? ArrayPool<float>.Shared.Rent(block) : null;
        try
        {
            for (int g = 0; g < groups; g++)
            {
                ReadOnlySpan<float> dz = dy.Slice(g * block, block);
                if (scratch is not null)
                {
                    var masked = scratch.AsSpan(0, block);
                    masked.Clear();
                    Dropout.Backward(dz, masked, p, seed, offset + (long)g * block);
                    dz = masked;
                }
                var dw = dWeights.Slice(g * (wLength + outWidth), wLength + outWidth);
                Gemm.TN(inWidth, outWidth, rows, x, dz, dw[..wLength], accumulate: true);
                Bias.Backward(dz, dw[wLength..], rows, outWidth);
            }
        }
        finally
        {
            if (scratch is not null) ArrayPool<float>.Shared.Return(scratch);
        }
    }

    // ---------------------------------------------------------------- ILGPU

    /// <summary>Forward, one thread per element of y [G, rows, out] (consecutive threads: consecutive columns, coalesced).</summary>
    internal static void ForwardKernel(Index1D i, ArrayView<float> x, ArrayView<float> weights, ArrayView<float> y, Args a)
    {
        int c = i % a.Out, rest = i / a.Out, r = rest % a.Rows, g = rest / a.Rows;
        long w0 = (long)g * (a.In + 1) * a.Out;
        float acc = weights[w0 + (long)a.In * a.Out + c];
        for (int k = 0; k < a.In; k++) acc += x[(long)r * a.In + k] * weights[w0 + (long)k * a.Out + c];
        y[i] = Dropout.Keep(a.Seed, a.Offset + i, a.P) ? acc * a.Scale : 0f;
    }

    /// <summary>Backward, one thread per packed parameter [G, in + 1, out], summing the rows in order (deterministic).</summary>
    internal static void BackwardKernel(Index1D i, ArrayView<float> x, ArrayView<float> dy, ArrayView<float> dWeights, Args a)
    {
        int c = i % a.Out, rest = i / a.Out, k = rest % (a.In + 1), g = rest / (a.In + 1);
        float acc = 0f;
        for (int r = 0; r < a.Rows; r++)
        {
            long j = ((long)g * a.Rows + r) * a.Out + c;
            if (!Dropout.Keep(a.Seed, a.Offset + j, a.P)) continue;
            float input = k < a.In ? x[(long)r * a.In + k] : 1f;
            acc += input * (dy[j] * a.Scale);
        }
        dWeights[i] += acc;
    }

    /// <summary>GPU forward: one launch for all G maps.</summary>
    public static void Forward(GpuDevice device, ArrayView<float> x, ArrayView<float> weights, ArrayView<float> y, int groups, int rows,
        int inWidth, int outWidth, float p, ulong seed, long offset)
    {
        Validate(x.Length, weights.Length, y.Length, groups, rows, inWidth, outWidth, p, nameof(y));
        var k = device.Kernel("GroupedLinear.Forward", acc => acc.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>,
            ArrayView<float>, Args>(ForwardKernel));
        k((int)y.Length, x, weights, y, new Args(groups, rows, inWidth, outWidth, p, seed, offset));
    }

    /// <summary>GPU backward (accumulates into <paramref name="dWeights"/>): one launch for all G maps.</summary>
    public static void Backward(GpuDevice device, ArrayView<float> x, ArrayView<float> dy, ArrayView<float> dWeights, int groups, int rows,
        int inWidth, int outWidth, float p, ulong seed, long offset)
    {
        Validate(x.Length, dWeights.Length, dy.Length, groups, rows, inWidth, outWidth, p, nameof(dy));
        var k = device.Kernel("GroupedLinear.Backward", acc => acc.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>,
            ArrayView<float>, Args>(BackwardKernel));
        k((int)dWeights.Length, x, dy, dWeights, new Args(groups, rows, inWidth, outWidth, p, seed, offset));
    }
}
