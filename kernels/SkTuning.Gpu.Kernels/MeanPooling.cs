using System.Numerics.Tensors;
using ILGPU;
using ILGPU.Runtime;
using SkTuning.Gpu.Kernels.Gpu;

namespace SkTuning.Gpu.Kernels;

/// <summary>
/// Masked mean pooling over tokens: <c>out[b,:] = Σ_t mask[b,t]·x[b, skip+t, :] / Σ_t mask[b,t]</c>, where
/// <c>x</c> is <c>[B, T, d]</c> (T including a <c>skip</c>-row prompt prefix that is never pooled) and the key mask is
/// <c>[B, T − skip]</c> (1 = real token, 0 = padding), aligned with rows <c>skip … T−1</c>. An example with no real
/// token pools to zeros. Backward: <c>dx[b, skip+t, :] += mask[b,t]·dOut[b,:]/count_b</c>.
/// </summary>
public static class MeanPooling
{
    internal readonly struct Args
    {
        public readonly int SeqLen, Skip, Dim;
        public Args(int seqLen, int skip, int dim) { SeqLen = seqLen; Skip = skip; Dim = dim; }
    }

    internal static void Validate(long x, long mask, long output, int batch, int seqLen, int skip, int dim, string xName, string outName)
    {
        OpsCheck.Positive(batch, nameof(batch));
        OpsCheck.Positive(seqLen, nameof(seqLen));
        OpsCheck.Positive(dim, nameof(dim));
        if (skip < 0 || skip >= seqLen) throw new ArgumentException($"skip = {skip} must be in [0, T = {seqLen})", nameof(skip));
        OpsCheck.Length(x, (long)batch * seqLen * dim, xName, $"B·T·d = {batch}·{seqLen}·{dim}");
        OpsCheck.Length(mask, (long)batch * (seqLen - skip), nameof(mask), $"B·(T−skip) = {batch}·({seqLen}−{skip})");
        OpsCheck.Length(output, (long)batch * dim, outName, $"B·d = {batch}·{dim}");
    }

    private static int Count(ReadOnlySpan<int> mask) { int n = 0; foreach (var m in mask) n += m != 0 ? 1 : 0; return n; }

    /// <summary>fp64 reference forward.</summary>
    public static void ForwardReference(ReadOnlySpan<double> x, ReadOnlySpan<int> mask, Span<double> output, int batch, int seqLen, int skip, int dim)
    {
        Validate(x.Length, mask.Length, output.Length, batch, seqLen, skip, dim, nameof(x), nameof(output));
        int n = seqLen - skip;
        for (int b = 0; b < batch; b++)
        {
            var mb = mask.Slice(b * n, n);
            int count = Count(mb);
            for (int c = 0; c < dim; c++)
            {
                double s = 0;
                for (int t = 0; t < n; t++) if (mb[t] != 0) s += x[(b * seqLen + skip + t) * dim + c];
                output[b * dim + c] = count == 0 ? 0 : s / count;
            }
        }
    }

    /// <summary>fp64 reference backward (accumulates into dx).</summary>
    public static void BackwardReference(ReadOnlySpan<double> dOutput, ReadOnlySpan<int> mask, Span<double> dX, int batch, int seqLen, int skip, int dim)
    {
        Validate(dX.Length, mask.Length, dOutput.Length, batch, seqLen, skip, dim, nameof(dX), nameof(dOutput));
        int n = seqLen - skip;
        for (int b = 0; b < batch; b++)
        {
            var mb = mask.Slice(b * n, n);
            int count = Count(mb);
            for (int t = 0; t < n; t++)
                if (mb[t] != 0)
                    for (int c = 0; c < dim; c++) dX[(b * seqLen + skip + t) * dim + c] += dOutput[b * dim + c] / count;
        }
    }

    /// <summary>CPU forward (parallel over examples, SIMD over d).</summary>
    /// <exception cref="ArgumentException">Sizes disagree or skip is outside [0, T).</exception>
    public static unsafe void Forward(ReadOnlySpan<float> x, ReadOnlySpan<int> mask, Span<float> output, int batch, int seqLen, int skip, int dim)
    {
        Validate(x.Length, mask.Length, output.Length, batch, seqLen, skip, dim, nameof(x), nameof(output));
        int n = seqLen - skip;
        fixed (float* px = x, po = output)
        fixed (int* pm = mask)
        {
            var X = new OpsPtr<float>(px); var O = new OpsPtr<float>(po); var M = new OpsPtr<int>(pm);
            OpsParallel.For(batch, (long)batch * seqLen * dim, b =>
            {
                var o = O.Span((long)b * dim, dim);
                o.Clear();
                var mb = M.Span((long)b * n, n);
                int count = Count(mb);
                for (int t = 0; t < n; t++)
                    if (mb[t] != 0) TensorPrimitives.Add(o, X.Span(((long)b * seqLen + skip + t) * dim, dim), o);
                if (count > 0) TensorPrimitives.Multiply(o, 1f / count, o);
            });
        }
    }

    /// <summary>CPU backward (accumulates into dx; prefix rows and padding untouched).</summary>
    /// <exception cref="ArgumentException">Sizes disagree or skip is outside [0, T).</exception>
    public static unsafe void Backward(ReadOnlySpan<float> dOutput, ReadOnlySpan<int> mask, Span<float> dX, int batch, int seqLen, int skip, int dim)
    {
        Validate(dX.Length, mask.Length, dOutput.Length, batch, seqLen, skip, dim, nameof(dX), nameof(dOutput));
        int n = seqLen - skip;
        fixed (float* pd = dOutput, pdx = dX)
        fixed (int* pm = mask)
        {
            var Dout = new OpsPtr<float>(pd); var Dx = new OpsPtr<float>(pdx); var M = new OpsPtr<int>(pm);
            OpsParallel.For(batch, (long)batch * seqLen * dim, b =>
            {
                var mb = M.Span((long)b * n, n);
                int count = Count(mb);
                if (count == 0) return;
                float scale = 1f / count;
                var g = Dout.Span((long)b * dim, dim);
                for (int t = 0; t < n; t++)
                {
                    if (mb[t] == 0) continue;
                    var row = Dx.Span(((long)b * seqLen + skip + t) * dim, dim);
                    TensorPrimitives.MultiplyAdd(g, scale, row, row);
                }
            });
        }
    }

    /// <summary>In a kernel: the masked mean of column <paramref name="c"/> over example <paramref name="b"/>'s real tokens.</summary>
    internal static float MaskedMean(int b, int c, ArrayView<float> x, ArrayView<int> mask, int seqLen, int skip, int dim)
    {
        int n = seqLen - skip, count = 0;
        float s = 0;
        for (int t = 0; t < n; t++)
        {
            if (mask[(long)b * n + t] == 0) continue;
            count++;
            s += x[((long)b * seqLen + skip + t) * dim + c];
        }
        return count == 0 ? 0f : s * (1f / count);
    }

    /// <summary>
    /// In a kernel: the weight <c>1/count_b</c> with which dx element <paramref name="i"/> receives its example's pooled
    /// gradient (0 for prefix rows and padding), and that gradient's index in <paramref name="pooled"/>.
    /// </summary>
    internal static float BackwardShare(int i, ArrayView<int> mask, int seqLen, int skip, int dim, out long pooled)
    {
        int row = i / dim, c = i - row * dim, b = row / seqLen, t = row - b * seqLen - skip, n = seqLen - skip;
        pooled = (long)b * dim + c;
        if (t < 0 || mask[(long)b * n + t] == 0) return 0f;
        int count = 0;
        for (int k = 0; k < n; k++) count += mask[(long)b * n + k] != 0 ? 1 : 0;
        return 1f / count;
    }

    /// <summary>One thread per output element.</summary>
    internal static void ForwardKernel(Index1D i, ArrayView<float> x, ArrayView<int> mask, ArrayView<float> output, Args a) =>
        output[i] = MaskedMean(i / a.Dim, i % a.Dim, x, mask, a.SeqLen, a.Skip, a.Dim);

    /// <summary>One thread per dx element.</summary>
    internal static void BackwardKernel(Index1D i, ArrayView<float> dOutput, ArrayView<int> mask, ArrayView<float> dX, Args a)
    {
        float share = BackwardShare(i, mask, a.SeqLen, a.Skip, a.Dim, out long pooled);
        if (share != 0f) dX[i] += dOutput[pooled] * share;
    }

    /// <summary>GPU forward.</summary>
    public static void Forward(GpuDevice device, ArrayView<float> x, ArrayView<int> mask, ArrayView<float> output, int batch, int seqLen, int skip, int dim)
    {
        Validate(x.Length, mask.Length, output.Length, batch, seqLen, skip, dim, nameof(x), nameof(output));
        var k = device.Kernel("MeanPooling.Forward", acc => acc.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<int>, ArrayView<float>, Args>(ForwardKernel));
        k((int)output.Length, x, mask, output, new Args(seqLen, skip, dim));
    }

    /// <summary>GPU backward (accumulates into dx).</summary>
    public static void Backward(GpuDevice device, ArrayView<float> dOutput, ArrayView<int> mask, ArrayView<float> dX, int batch, int seqLen, int skip, int dim)
    {
        Validate(dX.Length, mask.Length, dOutput.Length, batch, seqLen, skip, dim, nameof(dX), nameof(dOutput));
        var k = device.Kernel("MeanPooling.Backward", acc => acc.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<int>, ArrayView<float>, Args>(BackwardKernel));
        k((int)dX.Length, dOutput, mask, dX, new Args(seqLen, skip, dim));
    }
}
