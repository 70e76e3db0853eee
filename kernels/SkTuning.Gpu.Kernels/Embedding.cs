using System.Numerics.Tensors;
using ILGPU;
using ILGPU.Runtime;
using SkTuning.Gpu.Kernels.Gpu;

namespace SkTuning.Gpu.Kernels;

/// <summary>
/// BERT input embeddings: <c>out[b,t,:] = wte[ids[b,t]] + wpe[t] + wtt[types[b,t]]</c>, positions 0..T−1 per example.
/// Tables are row-major <c>[vocab, d]</c>, <c>[maxPositions, d]</c>, <c>[typeVocab, d]</c>; output is <c>[B·T, d]</c>.
/// An empty <c>types</c> means every token has type 0.
/// </summary>
public static class Embedding
{
    internal readonly struct Args
    {
        public readonly int SeqLen, Dim;
        public Args(int seqLen, int dim) { SeqLen = seqLen; Dim = dim; }
    }

    private static void Validate(ReadOnlySpan<int> ids, ReadOnlySpan<int> types, long wte, long wpe, long wtt, long output,
        int batch, int seqLen, int dim)
    {
        OpsCheck.Positive(batch, nameof(batch));
        OpsCheck.Positive(seqLen, nameof(seqLen));
        OpsCheck.Positive(dim, nameof(dim));
        long rows = (long)batch * seqLen;
        OpsCheck.Length(ids.Length, rows, nameof(ids), $"B·T = {batch}·{seqLen}");
        OpsCheck.Optional(types.Length, rows, nameof(types), $"B·T = {batch}·{seqLen}");
        OpsCheck.Length(output, rows * dim, nameof(output), $"B·T·d = {batch}·{seqLen}·{dim}");
        if (wte == 0 || wte % dim != 0) throw new ArgumentException($"wte has length {wte}, not a positive multiple of d = {dim}", "wte");
        if (wtt == 0 || wtt % dim != 0) throw new ArgumentException($"wtt has length {wtt}, not a positive multiple of d = {dim}", "wtt");
        if (wpe % dim != 0 || wpe / dim < seqLen)
            throw new ArgumentException($"wpe has length {wpe}, expected a multiple of d = {dim} with at least T = {seqLen} rows", "wpe");
        long vocab = wte / dim, typeVocab = wtt / dim;
        for (int r = 0; r < ids.Length; r++)
            if ((uint)ids[r] >= vocab)
                throw new ArgumentException($"token id {ids[r]} at [{r / seqLen},{r % seqLen}] is outside the vocabulary of {vocab}", nameof(ids));
        for (int r = 0; r < types.Length; r++)
            if ((uint)types[r] >= typeVocab)
                throw new ArgumentException($"token type {types[r]} at [{r / seqLen},{r % seqLen}] is outside the type vocabulary of {typeVocab}", nameof(types));
    }

    // ---------------------------------------------------------------- fp64 reference

    /// <summary>fp64 reference forward.</summary>
    public static void ForwardReference(ReadOnlySpan<int> ids, ReadOnlySpan<int> types, ReadOnlySpan<double> wte,
        ReadOnlySpan<double> wpe, ReadOnlySpan<double> wtt, Span<double> output, int batch, int seqLen, int dim)
    {
        Validate(ids, types, wte.Length, wpe.Length, wtt.Length, output.Length, batch, seqLen, dim);
        for (int r = 0; r < batch * seqLen; r++)
        {
            int id = ids[r], t = r % seqLen, ty = types.IsEmpty ? 0 : types[r];
            for (int c = 0; c < dim; c++)
                output[r * dim + c] = wte[id * dim + c] + wpe[t * dim + c] + wtt[ty * dim + c];
        }
    }

    /// <summary>fp64 reference backward: scatter-adds <paramref name="dOutput"/> into the table gradients (empty = skip).</summary>
    public static void BackwardReference(ReadOnlySpan<int> ids, ReadOnlySpan<int> types, ReadOnlySpan<double> dOutput,
        Span<double> dWte, Span<double> dWpe, Span<double> dWtt, int batch, int seqLen, int dim)
    {
        for (int r = 0; r < batch * seqLen; r++)
        {
            int id = ids[r], t = r % seqLen, ty = types.IsEmpty ? 0 : types[r];
            for (int c = 0; c < dim; c++)
            {
                double g = dOutput[r * dim + c];
                if (!dWte.IsEmpty) dWte[id * dim + c] += g;
                if (!dWpe.IsEmpty) dWpe[t * dim + c] += g;
                if (!dWtt.IsEmpty) dWtt[ty * dim + c] += g;
            }
        }
    }

    // ---------------------------------------------------------------- CPU

    /// <summary>CPU forward (SIMD per row, parallel over rows).</summary>
    /// <exception cref="ArgumentException">Sizes disagree, or an id/type is outside its table.</exception>
    public static unsafe void Forward(ReadOnlySpan<int> ids, ReadOnlySpan<int> types, ReadOnlySpan<float> wte,
        ReadOnlySpan<float> wpe, ReadOnlySpan<float> wtt, Span<float> output, int batch, int seqLen, int dim)
    {
        Validate(ids, types, wte.Length, wpe.Length, wtt.Length, output.Length, batch, seqLen, dim);
        int rows = batch * seqLen;
        bool hasTypes = !types.IsEmpty;
        fixed (int* pi = ids, pty = types)
        fixed (float* pte = wte, ppe = wpe, ptt = wtt, po = output)
        {
            var I = new OpsPtr<int>(pi); var Ty = new OpsPtr<int>(pty);
            var Te = new OpsPtr<float>(pte); var Pe = new OpsPtr<float>(ppe); var Tt = new OpsPtr<float>(ptt); var O = new OpsPtr<float>(po);
            OpsParallel.For(rows, (long)rows * dim, r =>
            {
                var o = O.Span((long)r * dim, dim);
                TensorPrimitives.Add(Te.Span((long)I[r] * dim, dim), Pe.Span((long)(r % seqLen) * dim, dim), o);
                TensorPrimitives.Add(o, Tt.Span((long)(hasTypes ? Ty[r] : 0) * dim, dim), o);
            });
        }
    }

    /// <summary>
    /// CPU backward: <c>dWte[ids[r]] += dOut[r]</c>, <c>dWpe[t] += dOut[r]</c>, <c>dWtt[types[r]] += dOut[r]</c>; an empty
    /// gradient is skipped. Deterministic: parallel over column blocks, rows visited in order within each block.
    /// </summary>
    /// <exception cref="ArgumentException">Sizes disagree.</exception>
    public static unsafe void Backward(ReadOnlySpan<int> ids, ReadOnlySpan<int> types, ReadOnlySpan<float> dOutput,
        Span<float> dWte, Span<float> dWpe, Span<float> dWtt, int batch, int seqLen, int dim)
    {
        OpsCheck.Positive(dim, nameof(dim));
        long rowsL = (long)batch * seqLen;
        OpsCheck.Length(dOutput.Length, rowsL * dim, nameof(dOutput), $"B·T·d = {batch}·{seqLen}·{dim}");
        if (dWte.Length % dim != 0) throw new ArgumentException($"dWte has length {dWte.Length}, not a multiple of d = {dim}", nameof(dWte));
        if (dWtt.Length % dim != 0) throw new ArgumentException($"dWtt has length {dWtt.Length}, not a multiple of d = {dim}", nameof(dWtt));
        if (!dWpe.IsEmpty && (dWpe.Length % dim != 0 || dWpe.Length / dim < seqLen))
            throw new ArgumentException($"dWpe has length {dWpe.Length}, expected 0 or a multiple of d = {dim} with at least T = {seqLen} rows", nameof(dWpe));
        // Reuse the forward's id validation with the gradient tables' sizes (vocab/type vocab), when present.
        Validate(ids, types, dWte.IsEmpty ? (long)(MaxOf(ids) + 1) * dim : dWte.Length, (long)seqLen * dim,
            dWtt.IsEmpty ? (long)(MaxOf(types) + 1) * dim : dWtt.Length, dOutput.Length, batch, seqLen, dim);
        int rows = (int)rowsL;
        bool hasTypes = !types.IsEmpty, te = !dWte.IsEmpty, pe = !dWpe.IsEmpty, tt = !dWtt.IsEmpty;
        const int Block = 64;
        int blocks = (dim + Block - 1) / Block;
        fixed (int* pi = ids, pty = types)
        fixed (float* pd = dOutput, pte = dWte, ppe = dWpe, ptt = dWtt)
        {
            var I = new OpsPtr<int>(pi); var Ty = new OpsPtr<int>(pty); var D = new OpsPtr<float>(pd);
            var Te = new OpsPtr<float>(pte); var Pe = new OpsPtr<float>(ppe); var Tt = new OpsPtr<float>(ptt);
            OpsParallel.For(blocks, rowsL * dim, blk =>
            {
                int c0 = blk * Block, len = Math.Min(Block, dim - c0);
                for (int r = 0; r < rows; r++)
                {
                    var g = D.Span((long)r * dim + c0, len);
                    if (te) { var s = Te.Span((long)I[r] * dim + c0, len); TensorPrimitives.Add(s, g, s); }
                    if (pe) { var s = Pe.Span((long)(r % seqLen) * dim + c0, len); TensorPrimitives.Add(s, g, s); }
                    if (tt) { var s = Tt.Span((long)(hasTypes ? Ty[r] : 0) * dim + c0, len); TensorPrimitives.Add(s, g, s); }
                }
            });
        }
    }

    private static int MaxOf(ReadOnlySpan<int> a) => a.IsEmpty ? 0 : Math.Max(0, TensorPrimitives.Max(a));

    // ---------------------------------------------------------------- ILGPU

    internal static void ForwardKernel(Index1D i, ArrayView<int> ids, ArrayView<int> types, ArrayView<float> wte,
        ArrayView<float> wpe, ArrayView<float> wtt, ArrayView<float> output, Args a)
    {
        int r = i / a.Dim, c = i - r * a.Dim;
        int ty = types.Length == 0 ? 0 : types[r];
        output[i] = wte[(long)ids[r] * a.Dim + c] + wpe[(long)(r % a.SeqLen) * a.Dim + c] + wtt[(long)ty * a.Dim + c];
    }

    internal static void BackwardKernel(Index1D i, ArrayView<int> ids, ArrayView<int> types, ArrayView<float> dOutput,
        ArrayView<float> dWte, ArrayView<float> dWpe, ArrayView<float> dWtt, Args a)
    {
        int r = i / a.Dim, c = i - r * a.Dim;
        float g = dOutput[i];
        if (dWte.Length != 0) Atomic.Add(ref dWte[(long)ids[r] * a.Dim + c], g);
        if (dWpe.Length != 0) Atomic.Add(ref dWpe[(long)(r % a.SeqLen) * a.Dim + c], g);
        if (dWtt.Length != 0) Atomic.Add(ref dWtt[(long)(types.Length == 0 ? 0 : types[r]) * a.Dim + c], g);
    }

    /// <summary>GPU forward. Ids are not range-checked on the device; validate them on the host.</summary>
    public static void Forward(GpuDevice device, ArrayView<int> ids, ArrayView<int> types, ArrayView<float> wte,
        ArrayView<float> wpe, ArrayView<float> wtt, ArrayView<float> output, int batch, int seqLen, int dim)
    {
        long rows = (long)batch * seqLen;
        OpsCheck.Length(ids.Length, rows, nameof(ids), $"B·T = {batch}·{seqLen}");
        OpsCheck.Optional(types.Length, rows, nameof(types), $"B·T = {batch}·{seqLen}");
        OpsCheck.Length(output.Length, rows * dim, nameof(output), $"B·T·d = {batch}·{seqLen}·{dim}");
        if (wpe.Length < (long)seqLen * dim) throw new ArgumentException($"wpe has length {wpe.Length} < T·d = {seqLen}·{dim}", nameof(wpe));
        var k = device.Kernel("Embedding.Forward", acc => acc.LoadAutoGroupedStreamKernel<Index1D, ArrayView<int>, ArrayView<int>,
            ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, Args>(ForwardKernel));
        k((int)(rows * dim), ids, types, wte, wpe, wtt, output, new Args(seqLen, dim));
    }

    /// <summary>GPU backward (float atomics: not bitwise deterministic); empty gradient views are skipped.</summary>
    public static void Backward(GpuDevice device, ArrayView<int> ids, ArrayView<int> types, ArrayView<float> dOutput,
        ArrayView<float> dWte, ArrayView<float> dWpe, ArrayView<float> dWtt, int batch, int seqLen, int dim)
    {
        long rows = (long)batch * seqLen;
        OpsCheck.Length(ids.Length, rows, nameof(ids), $"B·T = {batch}·{seqLen}");
        OpsCheck.Optional(types.Length, rows, nameof(types), $"B·T = {batch}·{seqLen}");
        OpsCheck.Length(dOutput.Length, rows * dim, nameof(dOutput), $"B·T·d = {batch}·{seqLen}·{dim}");
        var k = device.Kernel("Embedding.Backward", acc => acc.LoadAutoGroupedStreamKernel<Index1D, ArrayView<int>, ArrayView<int>,
            ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, Args>(BackwardKernel));
        k((int)(rows * dim), ids, types, dOutput, dWte, dWpe, dWtt, new Args(seqLen, dim));
    }
}
