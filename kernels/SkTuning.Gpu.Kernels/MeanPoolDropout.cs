using System.Buffers;
using ILGPU;
using ILGPU.Runtime;
using SkTuning.Gpu.Kernels.Gpu;

namespace SkTuning.Gpu.Kernels;

/// <summary>
/// A sequence head's input: <see cref="MeanPooling"/> then inverted <see cref="Dropout"/> on the pooled [B, d]
/// (element b·d + c keeps with the mask at (seed, b·d + c)). Backward: <c>dx += MeanPoolingᵀ(dy·mask/(1 − p))</c>. On the
/// GPU each direction is one launch instead of two (the pooled values and their gradient never reach memory).
/// </summary>
public static class MeanPoolDropout
{
    internal readonly struct Args(int seqLen, int skip, int dim, float p, ulong seed)
    {
        public readonly int SeqLen = seqLen, Skip = skip, Dim = dim;
        public readonly float P = p, Scale = 1f / (1f - p);
        public readonly ulong Seed = seed;
    }

    /// <summary>fp64 reference forward.</summary>
    public static void ForwardReference(ReadOnlySpan<double> x, ReadOnlySpan<int> mask, Span<double> output, int batch, int seqLen, int skip, int dim,
        float p, ulong seed)
    {
        MeanPooling.ForwardReference(x, mask, output, batch, seqLen, skip, dim);
        var pooled = output.ToArray();
        Dropout.ForwardReference(pooled, output, p, seed, 0);
    }

    /// <summary>fp64 reference backward (accumulates into dX).</summary>
    public static void BackwardReference(ReadOnlySpan<double> dOutput, ReadOnlySpan<int> mask, Span<double> dX, int batch, int seqLen, int skip, int dim,
        float p, ulong seed)
    {
        var dPooled = new double[dOutput.Length];
        Dropout.BackwardReference(dOutput, dPooled, p, seed, 0);
        MeanPooling.BackwardReference(dPooled, mask, dX, batch, seqLen, skip, dim);
    }

    /// <summary>CPU forward: the pooling, then the dropout in place.</summary>
    public static void Forward(ReadOnlySpan<float> x, ReadOnlySpan<int> mask, Span<float> output, int batch, int seqLen, int skip, int dim, float p, ulong seed)
    {
        MeanPooling.Forward(x, mask, output, batch, seqLen, skip, dim);
        if (p > 0f) Dropout.Forward(output, output, p, seed, 0);
    }

    /// <summary>CPU backward: the dropout's mask on dy, then the pooling's backward.</summary>
    public static void Backward(ReadOnlySpan<float> dOutput, ReadOnlySpan<int> mask, Span<float> dX, int batch, int seqLen, int skip, int dim, float p, ulong seed)
    {
        if (p == 0f)
        {
            MeanPooling.Backward(dOutput, mask, dX, batch, seqLen, skip, dim);
            return;
        }
        var masked = ArrayPool<float>.Shared.Rent(dOutput.Length);
        try
        {
            var dPooled = masked.AsSpan(0, dOutput.Length);
            dPooled.Clear();
            Dropout.Backward(dOutput, dPooled, p, seed, 0);
            MeanPooling.Backward(dPooled, mask, dX, batch, seqLen, skip, dim);
        }
        finally
        {
            ArrayPool<float>.Shared.Return(masked);
        }
    }

    /// <summary>One thread per output element: the masked mean, then its dropout.</summary>
    internal static void ForwardKernel(Index1D i, ArrayView<float> x, ArrayView<int> mask, ArrayView<float> output, Args a)
    {
        float mean = MeanPooling.MaskedMean(i / a.Dim, i % a.Dim, x, mask, a.SeqLen, a.Skip, a.Dim);
        output[i] = Dropout.Keep(a.Seed, i, a.P) ? mean * a.Scale : 0f;
    }

    /// <summary>One thread per dx element.</summary>
    internal static void BackwardKernel(Index1D i, ArrayView<float> dOutput, ArrayView<int> mask, ArrayView<float> dX, Args a)
    {
        float share = MeanPooling.BackwardShare(i, mask, a.SeqLen, a.Skip, a.Dim, out long pooled);
        if (share != 0f && Dropout.Keep(a.Seed, pooled, a.P)) dX[i] += dOutput[pooled] * a.Scale * share;
    }

    /// <summary>GPU forward: one launch.</summary>
    public static void Forward(GpuDevice device, ArrayView<float> x, ArrayView<int> mask, ArrayView<float> output, int batch, int seqLen, int skip, int dim,
        float p, ulong seed)
    {
        MeanPooling.Validate(x.Length, mask.Length, output.Length, batch, seqLen, skip, dim, nameof(x), nameof(output));
        Dropout.CheckP(p);
        var k = device.Kernel("MeanPoolDropout.Forward", acc => acc.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<int>,
            ArrayView<float>, Args>(ForwardKernel));
        k((int)output.Length, x, mask, output, new Args(seqLen, skip, dim, p, seed));
    }

    /// <summary>GPU backward (accumulates into dX): one launch.</summary>
    public static void Backward(GpuDevice device, ArrayView<float> dOutput, ArrayView<int> mask, ArrayView<float> dX, int batch, int seqLen, int skip, int dim,
        float p, ulong seed)
    {
        MeanPooling.Validate(dX.Length, mask.Length, dOutput.Length, batch, seqLen, skip, dim, nameof(dX), nameof(dOutput));
        Dropout.CheckP(p);
        var k = device.Kernel("MeanPoolDropout.Backward", acc => acc.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<int>,
            ArrayView<float>, Args>(BackwardKernel));
        k((int)dX.Length, dOutput, mask, dX, new Args(seqLen, skip, dim, p, seed));
    }
}
