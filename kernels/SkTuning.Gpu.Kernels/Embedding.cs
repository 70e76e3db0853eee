using System.Numerics.Tensors;
using ILGPU;
using ILGPU.Runtime;
using SkTuning.Gpu.Kernels.Gpu;

namespace SkTuning.Gpu.Kernels;

/// <summary>
/// Input embeddings: <c>out[r,:] = wte[ids[r]] + wpe[positions[r]] + wtt[types[r]]</c> for the <c>B·T</c> rows.
/// Tables are row-major <c>[vocab, d]</c>, <c>[maxPositions, d]</c>, <c>[typeVocab, d]</c>; output is <c>[B·T, d]</c>.
/// An empty <c>wpe</c> means no learned position table (RoPE models; <c>positions</c> is then ignored), an empty <c>wtt</c>
/// no token types (GPT-2; <c>types</c> ignored), and an empty <c>types</c> with a type table means every token has type 0.
/// Positions are explicit so callers can offset them (a prefix, left padding).
/// </summary>
public static class Embedding
{
    internal readonly struct Args
    {
        public readonly int Dim;
        public Args(int dim) { Dim = dim; }
    }

    /// <summary>Rows of a <c>[rows, d]</c> table (0 for an empty one).</summary>
    internal static long TableRows(long length, int dim, string name, bool required)
    {
        if (length % dim != 0 || (required && length == 0))
            throw new ArgumentException($"{name} has length {length}, not a {(required ? "positive multiple" : "multiple")} of d = {dim}", name);
        return length / dim;
    }

    /// <summary>
    /// Checks the index arrays' lengths and that every index used lies inside its table; a table with 0 rows is absent
    /// (its indices are not read, so not checked).
    /// </summary>
    private static void CheckIndices(ReadOnlySpan<int> ids, ReadOnlySpan<int> types, ReadOnlySpan<int> positions,
        long vocab, long maxPositions, long typeVocab, int batch, int seqLen, int dim)
    {
        OpsCheck.Positive(batch, nameof(batch));
        OpsCheck.Positive(seqLen, nameof(seqLen));
        OpsCheck.Positive(dim, nameof(dim));
        long rows = (long)batch * seqLen;
        string shape = $"B·T = {batch}·{seqLen}";
        OpsCheck.Length(ids.Length, rows, nameof(ids), shape);
        OpsCheck.Optional(types.Length, rows, nameof(types), shape);
        if (maxPositions > 0) OpsCheck.Length(positions.Length, rows, nameof(positions), shape);
        else OpsCheck.Optional(positions.Length, rows, nameof(positions), shape);
        if (vocab > 0) InRange(ids, vocab, seqLen, "token id", "the vocabulary", nameof(ids));
        if (maxPositions > 0) InRange(positions, maxPositions, seqLen, "position", "the position table", nameof(positions));
        if (typeVocab > 0) InRange(types, typeVocab, seqLen, "token type", "the type vocabulary", nameof(types));
    }

    private static void InRange(ReadOnlySpan<int> index, long count, int seqLen, string what, string table, string name)
    {
        for (int r = 0; r < index.Length; r++)
            if ((uint)index[r] >= count)
                throw new ArgumentException($"{what} {index[r]} at [{r / seqLen},{r % seqLen}] is outside {table} of {count}", name);
    }

    private static void ValidateForward(ReadOnlySpan<int> ids, ReadOnlySpan<int> types, ReadOnlySpan<int> positions, long wte, long wpe,
        long wtt, long output, int batch, int seqLen, int dim)
    {
        OpsCheck.Positive(dim, nameof(dim));
        long vocab = TableRows(wte, dim, nameof(wte), required: true);
        long maxPositions = TableRows(wpe, dim, nameof(wpe), required: false), typeVocab = TableRows(wtt, dim, nameof(wtt), required: false);
        CheckIndices(ids, types, positions, vocab, maxPositions, typeVocab, batch, seqLen, dim);
        OpsCheck.Length(output, (long)batch * seqLen * dim, nameof(output), $"B·T·d = {batch}·{seqLen}·{dim}");
    }

    private static void ValidateBackward(ReadOnlySpan<int> ids, ReadOnlySpan<int> types, ReadOnlySpan<int> positions, long dOutput,
        long dWte, long dWpe, long dWtt, int batch, int seqLen, int dim)
    {
        OpsCheck.Positive(dim, nameof(dim));
        long vocab = TableRows(dWte, dim, nameof(dWte), required: false);
        long maxPositions = TableRows(dWpe, dim, nameof(dWpe), required: false), typeVocab = TableRows(dWtt, dim, nameof(dWtt), required: false);
        CheckIndices(ids, types, positions, vocab, maxPositions, typeVocab, batch, seqLen, dim);
        OpsCheck.Length(dOutput, (long)batch * seqLen * dim, nameof(dOutput), $"B·T·d = {batch}·{seqLen}·{dim}");
    }

    // ---------------------------------------------------------------- fp64 reference

    /// <summary>fp64 reference forward.</summary>
    public static void ForwardReference(ReadOnlySpan<int> ids, ReadOnlySpan<int> types, ReadOnlySpan<int> positions, ReadOnlySpan<double> wte,
        ReadOnlySpan<double> wpe, ReadOnlySpan<double> wtt, Span<double> output, int batch, int seqLen, int dim)
    {
        ValidateForward(ids, types, positions, wte.Length, wpe.Length, wtt.Length, output.Length, batch, seqLen, dim);
        for (int r = 0; r < batch * seqLen; r++)
        {
            int ty = types.IsEmpty ? 0 : types[r];
            for (int c = 0; c < dim; c++)
            {
                double v = wte[ids[r] * dim + c];
                if (!wpe.IsEmpty) v += wpe[positions[r] * dim + c];
                if (!wtt.IsEmpty) v += wtt[ty * dim + c];
                output[r * dim + c] = v;
            }
        }
    }

    /// <summary>fp64 reference backward: scatter-adds <paramref name="dOutput"/> into the table gradients (empty = skip).</summary>
    public static void BackwardReference(ReadOnlySpan<int> ids, ReadOnlySpan<int> types, ReadOnlySpan<int> positions, ReadOnlySpan<double> dOutput,
        Span<double> dWte, Span<double> dWpe, Span<double> dWtt, int batch, int seqLen, int dim)
    {
        ValidateBackward(ids, types, positions, dOutput.Length, dWte.Length, dWpe.Length, dWtt.Length, batch, seqLen, dim);
        for (int r = 0; r < batch * seqLen; r++)
        {
            int ty = types.IsEmpty ? 0 : types[r];
            for (int c = 0; c < dim; c++)
            {
                double g = dOutput[r * dim + c];
                if (!dWte.IsEmpty) dWte[ids[r] * dim + c] += g;
                if (!dWpe.IsEmpty) dWpe[positions[r] * dim + c] += g;
                if (!dWtt.IsEmpty) dWtt[ty * dim + c] += g;
            }
        }
    }

    // ---------------------------------------------------------------- CPU

    /// <summary>CPU forward (SIMD per row, parallel over rows).</summary>
    /// <exception cref="ArgumentException">Sizes disagree, or an id/position/type is outside its table.</exception>
    public static unsafe void Forward(ReadOnlySpan<int> ids, ReadOnlySpan<int> types, ReadOnlySpan<int> positions, ReadOnlySpan<float> wte,
        ReadOnlySpan<float> wpe, ReadOnlySpan<float> wtt, Span<float> output, int batch, int seqLen, int dim)
    {
        ValidateForward(ids, types, positions, wte.Length, wpe.Length, wtt.Length, output.Length, batch, seqLen, dim);
        int rows = batch * seqLen;
        bool hasTypes = !types.IsEmpty, pe = !wpe.IsEmpty, tt = !wtt.IsEmpty;
        fixed (int* pi = ids, pty = types, pp = positions)
        fixed (float* pte = wte, ppe = wpe, ptt = wtt, po = output)
        {
            var I = new OpsPtr<int>(pi); var Ty = new OpsPtr<int>(pty); var P = new OpsPtr<int>(pp);
            var Te = new OpsPtr<float>(pte); var Pe = new OpsPtr<float>(ppe); var Tt = new OpsPtr<float>(ptt); var O = new OpsPtr<float>(po);
            OpsParallel.For(rows, (long)rows * dim, r =>
            {
                var o = O.Span((long)r * dim, dim);
                Te.Span((long)I[r] * dim, dim).CopyTo(o);
                if (pe) TensorPrimitives.Add(o, Pe.Span((long)P[r] * dim, dim), o);
                if (tt) TensorPrimitives.Add(o, Tt.Span((long)(hasTypes ? Ty[r] : 0) * dim, dim), o);
            });
        }
    }

    /// <summary>
    /// CPU forward with the word table stored as bf16 words [V, d] (<see cref="BFloat16"/>): each gathered row is widened
    /// (exact) before the position and type rows are added, so the result is the fp32 forward on the bf16-rounded table.
    /// </summary>
    /// <exception cref="ArgumentException">Sizes disagree, or an id/position/type is outside its table.</exception>
    public static unsafe void ForwardBf16(ReadOnlySpan<int> ids, ReadOnlySpan<int> types, ReadOnlySpan<int> positions, ReadOnlySpan<ushort> wte,
        ReadOnlySpan<float> wpe, ReadOnlySpan<float> wtt, Span<float> output, int batch, int seqLen, int dim)
    {
        ValidateForward(ids, types, positions, wte.Length, wpe.Length, wtt.Length, output.Length, batch, seqLen, dim);
        int rows = batch * seqLen;
        bool hasTypes = !types.IsEmpty, pe = !wpe.IsEmpty, tt = !wtt.IsEmpty;
        fixed (int* pi = ids, pty = types, pp = positions)
        fixed (ushort* pte = wte)
        fixed (float* ppe = wpe, ptt = wtt, po = output)
        {
            var I = new OpsPtr<int>(pi); var Ty = new OpsPtr<int>(pty); var P = new OpsPtr<int>(pp);
            var Te = new OpsPtr<ushort>(pte); var Pe = new OpsPtr<float>(ppe); var Tt = new OpsPtr<float>(ptt); var O = new OpsPtr<float>(po);
            OpsParallel.For(rows, (long)rows * dim, r =>
            {
                var o = O.Span((long)r * dim, dim);
                BFloat16.ToFloat(Te.Span((long)I[r] * dim, dim), o);
                if (pe) TensorPrimitives.Add(o, Pe.Span((long)P[r] * dim, dim), o);
                if (tt) TensorPrimitives.Add(o, Tt.Span((long)(hasTypes ? Ty[r] : 0) * dim, dim), o);
            });
        }
    }

    /// <summary>
    /// CPU backward: <c>dWte[ids[r]] += dOut[r]</c>, <c>dWpe[positions[r]] += dOut[r]</c>, <c>dWtt[types[r]] += dOut[r]</c>; an
    /// empty gradient is skipped. Deterministic: parallel over column blocks, rows visited in order within each block.
    /// </summary>
    /// <exception cref="ArgumentException">Sizes disagree, or an index is outside its gradient table.</exception>
    public static unsafe void Backward(ReadOnlySpan<int> ids, ReadOnlySpan<int> types, ReadOnlySpan<int> positions, ReadOnlySpan<float> dOutput,
        Span<float> dWte, Span<float> dWpe, Span<float> dWtt, int batch, int seqLen, int dim)
    {
        ValidateBackward(ids, types, positions, dOutput.Length, dWte.Length, dWpe.Length, dWtt.Length, batch, seqLen, dim);
        int rows = batch * seqLen;
        bool hasTypes = !types.IsEmpty, te = !dWte.IsEmpty, pe = !dWpe.IsEmpty, tt = !dWtt.IsEmpty;
        const int Block = 64;
        int blocks = (dim + Block - 1) / Block;
        fixed (int* pi = ids, pty = types, pp = positions)
        fixed (float* pd = dOutput, pte = dWte, ppe = dWpe, ptt = dWtt)
        {
            var I = new OpsPtr<int>(pi); var Ty = new OpsPtr<int>(pty); var P = new OpsPtr<int>(pp); var D = new OpsPtr<float>(pd);
            var Te = new OpsPtr<float>(pte); var Pe = new OpsPtr<float>(ppe); var Tt = new OpsPtr<float>(ptt);
            OpsParallel.For(blocks, (long)rows * dim, blk =>
            {
                int c0 = blk * Block, len = Math.Min(Block, dim - c0);
                for (int r = 0; r < rows; r++)
                {
                    var g = D.Span((long)r * dim + c0, len);
                    if (te) { var s = Te.Span((long)I[r] * dim + c0, len); TensorPrimitives.Add(s, g, s); }
                    if (pe) { var s = Pe.Span((long)P[r] * dim + c0, len); TensorPrimitives.Add(s, g, s); }
                    if (tt) { var s = Tt.Span((long)(hasTypes ? Ty[r] : 0) * dim + c0, len); TensorPrimitives.Add(s, g, s); }
                }
            });
        }
    }

    // ---------------------------------------------------------------- ILGPU

    internal static void ForwardKernel(Index1D i, ArrayView<int> ids, ArrayView<int> types, ArrayView<int> positions, ArrayView<float> wte,
        ArrayView<float> wpe, ArrayView<float> wtt, ArrayView<float> output, Args a)
    {
        int r = i / a.Dim, c = i - r * a.Dim;
        float v = wte[(long)ids[r] * a.Dim + c];
        if (wpe.Length != 0) v += wpe[(long)positions[r] * a.Dim + c];
        if (wtt.Length != 0) v += wtt[(long)(types.Length == 0 ? 0 : types[r]) * a.Dim + c];
        output[i] = v;
    }

    internal static void BackwardKernel(Index1D i, ArrayView<int> ids, ArrayView<int> types, ArrayView<int> positions, ArrayView<float> dOutput,
        ArrayView<float> dWte, ArrayView<float> dWpe, ArrayView<float> dWtt, Args a)
    {
        int r = i / a.Dim, c = i - r * a.Dim;
        float g = dOutput[i];
        if (dWte.Length != 0) Atomic.Add(ref dWte[(long)ids[r] * a.Dim + c], g);
        if (dWpe.Length != 0) Atomic.Add(ref dWpe[(long)positions[r] * a.Dim + c], g);
        if (dWtt.Length != 0) Atomic.Add(ref dWtt[(long)(types.Length == 0 ? 0 : types[r]) * a.Dim + c], g);
    }

    /// <summary>Lengths only: the index values live on the device and are validated on the host before upload.</summary>
    internal static void ValidateGpu(long ids, long types, long positions, bool hasPositionTable, long output, string outputName,
        int batch, int seqLen, int dim)
    {
        OpsCheck.Positive(batch, nameof(batch));
        OpsCheck.Positive(seqLen, nameof(seqLen));
        OpsCheck.Positive(dim, nameof(dim));
        long rows = (long)batch * seqLen;
        string shape = $"B·T = {batch}·{seqLen}";
        OpsCheck.Length(ids, rows, nameof(ids), shape);
        OpsCheck.Optional(types, rows, nameof(types), shape);
        if (hasPositionTable) OpsCheck.Length(positions, rows, nameof(positions), shape);
        else OpsCheck.Optional(positions, rows, nameof(positions), shape);
        OpsCheck.Length(output, rows * dim, outputName, $"B·T·d = {batch}·{seqLen}·{dim}");
    }

    /// <summary>GPU forward. Ids, positions and types are not range-checked on the device; validate them on the host.</summary>
    public static void Forward(GpuDevice device, ArrayView<int> ids, ArrayView<int> types, ArrayView<int> positions, ArrayView<float> wte,
        ArrayView<float> wpe, ArrayView<float> wtt, ArrayView<float> output, int batch, int seqLen, int dim)
    {
        ValidateGpu(ids.Length, types.Length, positions.Length, wpe.Length != 0, output.Length, nameof(output), batch, seqLen, dim);
        TableRows(wte.Length, dim, nameof(wte), required: true);
        TableRows(wpe.Length, dim, nameof(wpe), required: false);
        TableRows(wtt.Length, dim, nameof(wtt), required: false);
        var k = device.Kernel("Embedding.Forward", acc => acc.LoadAutoGroupedStreamKernel<Index1D, ArrayView<int>, ArrayView<int>, ArrayView<int>,
            ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, Args>(ForwardKernel));
        k((int)output.Length, ids, types, positions, wte, wpe, wtt, output, new Args(dim));
    }

    /// <summary>GPU backward (float atomics: not bitwise deterministic); empty gradient views are skipped.</summary>
    public static void Backward(GpuDevice device, ArrayView<int> ids, ArrayView<int> types, ArrayView<int> positions, ArrayView<float> dOutput,
        ArrayView<float> dWte, ArrayView<float> dWpe, ArrayView<float> dWtt, int batch, int seqLen, int dim)
    {
        ValidateGpu(ids.Length, types.Length, positions.Length, dWpe.Length != 0, dOutput.Length, nameof(dOutput), batch, seqLen, dim);
        TableRows(dWte.Length, dim, nameof(dWte), required: false);
        TableRows(dWpe.Length, dim, nameof(dWpe), required: false);
        TableRows(dWtt.Length, dim, nameof(dWtt), required: false);
        var k = device.Kernel("Embedding.Backward", acc => acc.LoadAutoGroupedStreamKernel<Index1D, ArrayView<int>, ArrayView<int>, ArrayView<int>,
            ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, Args>(BackwardKernel));
        k((int)dOutput.Length, ids, types, positions, dOutput, dWte, dWpe, dWtt, new Args(dim));
    }
}
