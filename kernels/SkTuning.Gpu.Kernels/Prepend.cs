using System.Numerics.Tensors;
using ILGPU;
using ILGPU.Runtime;
using SkTuning.Gpu.Kernels.Gpu;

namespace SkTuning.Gpu.Kernels;

/// <summary>
/// Prompt prefix: <c>out[b] = concat(prompt[0:m], x[b][0:T])</c>, building <c>[B, m+T, d]</c> from a shared
/// <c>prompt [m, d]</c> and <c>x [B, T, d]</c>. <see cref="PromptGradient(ReadOnlySpan{float}, Span{float}, int, int, int, int)"/>
/// sums the prefix rows of the output gradient over the batch (<c>dPrompt += Σ_b dOut[b, 0:m]</c>);
/// <see cref="InputGradient(ReadOnlySpan{float}, Span{float}, int, int, int, int)"/> gives <c>dx[b] += dOut[b, m:m+T]</c>.
/// The forward also takes a per-example prompt choice: A runs' prompts stacked <c>[A, m, d]</c>, example b prepending
/// prompt <c>choice[b]</c> (several runs' rows in one inference batch; the gradients take one shared prompt).
/// </summary>
public static class Prepend
{
    internal readonly struct Args
    {
        public readonly int Prefix, SeqLen, Dim, Choice;
        public Args(int prefix, int seqLen, int dim, bool choice = false) { Prefix = prefix; SeqLen = seqLen; Dim = dim; Choice = choice ? 1 : 0; }
    }

    /// <summary>
    /// A, the prompts stacked for a per-example choice of <paramref name="choices"/> entries (0: no choice, A = 1), after
    /// checking that there is one entry per example and that the prompt holds whole prompts of m·d.
    /// </summary>
    private static int Adapters(long prompt, long choices, int batch, int prefix, int dim)
    {
        if (choices == 0) return 1;
        OpsCheck.Length(choices, batch, "promptChoice", $"B = {batch}");
        long block = (long)prefix * dim;
        if (block == 0 || prompt == 0 || prompt % block != 0)
            throw new ArgumentException($"prompt has {prompt} elements: with a prompt choice it must hold A ≥ 1 whole prompts of m·d = {prefix}·{dim}");
        return (int)(prompt / block);
    }

    private static void CheckChoice(ReadOnlySpan<int> choice, int adapters)
    {
        for (int b = 0; b < choice.Length; b++)
            if ((uint)choice[b] >= (uint)adapters)
                throw new ArgumentException($"promptChoice[{b}] = {choice[b]} is outside the {adapters} stacked prompts");
    }

    private static void Validate(long prompt, long x, long output, int batch, int prefix, int seqLen, int dim, string promptName, string xName, string outName)
    {
        OpsCheck.Positive(batch, nameof(batch));
        OpsCheck.NonNegative(prefix, nameof(prefix));
        OpsCheck.Positive(seqLen, nameof(seqLen));
        OpsCheck.Positive(dim, nameof(dim));
        OpsCheck.Length(prompt, (long)prefix * dim, promptName, $"m·d = {prefix}·{dim}");
        OpsCheck.Length(x, (long)batch * seqLen * dim, xName, $"B·T·d = {batch}·{seqLen}·{dim}");
        OpsCheck.Length(output, (long)batch * (prefix + seqLen) * dim, outName, $"B·(m+T)·d = {batch}·({prefix}+{seqLen})·{dim}");
    }

    // ---------------------------------------------------------------- fp64 reference

    /// <summary>fp64 reference forward; with <paramref name="promptChoice"/> [B] example b takes prompt promptChoice[b] of the stacked [A, m, d].</summary>
    public static void ForwardReference(ReadOnlySpan<double> prompt, ReadOnlySpan<double> x, Span<double> output,
        int batch, int prefix, int seqLen, int dim, int[]? promptChoice = null)
    {
        int adapters = Adapters(prompt.Length, promptChoice?.Length ?? 0, batch, prefix, dim);
        CheckChoice(promptChoice, adapters);
        Validate(prompt.Length / adapters, x.Length, output.Length, batch, prefix, seqLen, dim, nameof(prompt), nameof(x), nameof(output));
        int total = prefix + seqLen;
        for (int b = 0; b < batch; b++)
        {
            int first = (promptChoice?[b] ?? 0) * prefix * dim;
            for (int t = 0; t < total; t++)
                for (int c = 0; c < dim; c++)
                    output[(b * total + t) * dim + c] = t < prefix ? prompt[first + t * dim + c] : x[(b * seqLen + t - prefix) * dim + c];
        }
    }

    /// <summary>fp64 reference: <c>dPrompt += Σ_b dOut[b, 0:m]</c>.</summary>
    public static void PromptGradientReference(ReadOnlySpan<double> dOutput, Span<double> dPrompt, int batch, int prefix, int seqLen, int dim)
    {
        int total = prefix + seqLen;
        for (int b = 0; b < batch; b++)
            for (int t = 0; t < prefix; t++)
                for (int c = 0; c < dim; c++)
                    dPrompt[t * dim + c] += dOutput[(b * total + t) * dim + c];
    }

    /// <summary>fp64 reference: <c>dx[b] += dOut[b, m:m+T]</c>.</summary>
    public static void InputGradientReference(ReadOnlySpan<double> dOutput, Span<double> dX, int batch, int prefix, int seqLen, int dim)
    {
        int total = prefix + seqLen;
        for (int b = 0; b < batch; b++)
            for (int t = 0; t < seqLen; t++)
                for (int c = 0; c < dim; c++)
                    dX[(b * seqLen + t) * dim + c] += dOutput[(b * total + prefix + t) * dim + c];
    }

    // ---------------------------------------------------------------- CPU

    /// <summary>
    /// CPU forward: copies the prompt into every example's first m rows and x after it; with <paramref name="promptChoice"/>
    /// [B], example b's prompt is promptChoice[b] of the stacked [A, m, d] (inference only).
    /// </summary>
    /// <exception cref="ArgumentException">Sizes disagree, or a choice outside the stacked prompts.</exception>
    public static void Forward(ReadOnlySpan<float> prompt, ReadOnlySpan<float> x, Span<float> output, int batch, int prefix, int seqLen, int dim,
        ReadOnlySpan<int> promptChoice = default)
    {
        int adapters = Adapters(prompt.Length, promptChoice.Length, batch, prefix, dim);
        CheckChoice(promptChoice, adapters);
        Validate(prompt.Length / adapters, x.Length, output.Length, batch, prefix, seqLen, dim, nameof(prompt), nameof(x), nameof(output));
        int block = prefix * dim, rest = seqLen * dim, total = block + rest;
        for (int b = 0; b < batch; b++)
        {
            prompt.Slice(promptChoice.IsEmpty ? 0 : promptChoice[b] * block, block).CopyTo(output.Slice(b * total, block));
            x.Slice(b * rest, rest).CopyTo(output.Slice(b * total + block, rest));
        }
    }

    /// <summary>CPU: <c>dPrompt += Σ_b dOut[b, 0:m]</c>, summed over b in order (deterministic).</summary>
    /// <exception cref="ArgumentException">Sizes disagree.</exception>
    public static unsafe void PromptGradient(ReadOnlySpan<float> dOutput, Span<float> dPrompt, int batch, int prefix, int seqLen, int dim)
    {
        Validate(dPrompt.Length, (long)batch * seqLen * dim, dOutput.Length, batch, prefix, seqLen, dim, nameof(dPrompt), "x", nameof(dOutput));
        int block = prefix * dim, total = (prefix + seqLen) * dim;
        const int Chunk = 4096;
        int chunks = (block + Chunk - 1) / Chunk;
        fixed (float* pd = dOutput, pp = dPrompt)
        {
            var D = new OpsPtr<float>(pd); var P = new OpsPtr<float>(pp);
            OpsParallel.For(chunks, (long)batch * block, ch =>
            {
                int c0 = ch * Chunk, len = Math.Min(Chunk, block - c0);
                var acc = P.Span(c0, len);
                for (int b = 0; b < batch; b++) TensorPrimitives.Add(acc, D.Span((long)b * total + c0, len), acc);
            });
        }
    }

    /// <summary>CPU: <c>dx[b] += dOut[b, m:m+T]</c>.</summary>
    /// <exception cref="ArgumentException">Sizes disagree.</exception>
    public static void InputGradient(ReadOnlySpan<float> dOutput, Span<float> dX, int batch, int prefix, int seqLen, int dim)
    {
        Validate((long)prefix * dim, dX.Length, dOutput.Length, batch, prefix, seqLen, dim, "prompt", nameof(dX), nameof(dOutput));
        int block = prefix * dim, rest = seqLen * dim, total = block + rest;
        for (int b = 0; b < batch; b++)
        {
            var dst = dX.Slice(b * rest, rest);
            TensorPrimitives.Add(dst, dOutput.Slice(b * total + block, rest), dst);
        }
    }

    // ---------------------------------------------------------------- ILGPU

    internal static void ForwardKernel(Index1D i, ArrayView<float> prompt, ArrayView<float> x, ArrayView<int> choice, ArrayView<float> output, Args a)
    {
        int total = (a.Prefix + a.SeqLen) * a.Dim, b = i / total, j = i - b * total, block = a.Prefix * a.Dim;
        output[i] = j < block ? prompt[(a.Choice != 0 ? choice[b] * block : 0) + j] : x[(long)b * a.SeqLen * a.Dim + j - block];
    }

    /// <summary>One thread per prompt element, summing over the batch in order (deterministic).</summary>
    internal static void PromptGradientKernel(Index1D i, ArrayView<float> dOutput, ArrayView<float> dPrompt, int batch, Args a)
    {
        long total = (long)(a.Prefix + a.SeqLen) * a.Dim;
        float s = 0;
        for (int b = 0; b < batch; b++) s += dOutput[b * total + i];
        dPrompt[i] += s;
    }

    internal static void InputGradientKernel(Index1D i, ArrayView<float> dOutput, ArrayView<float> dX, Args a)
    {
        int rest = a.SeqLen * a.Dim, b = i / rest, j = i - b * rest;
        dX[i] += dOutput[(long)b * (a.Prefix + a.SeqLen) * a.Dim + a.Prefix * a.Dim + j];
    }

    /// <summary>GPU forward; with <paramref name="promptChoice"/> [B] as the CPU one (the caller keeps its entries in [0, A)).</summary>
    public static void Forward(GpuDevice device, ArrayView<float> prompt, ArrayView<float> x, ArrayView<float> output, int batch, int prefix, int seqLen, int dim,
        ArrayView<int> promptChoice = default)
    {
        int adapters = Adapters(prompt.Length, promptChoice.Length, batch, prefix, dim);
        Validate(prompt.Length / adapters, x.Length, output.Length, batch, prefix, seqLen, dim, nameof(prompt), nameof(x), nameof(output));
        var k = device.Kernel("Prepend.Forward", acc => acc.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<int>, ArrayView<float>, Args>(ForwardKernel));
        k((int)output.Length, prompt, x, promptChoice, output, new Args(prefix, seqLen, dim, promptChoice.Length > 0));
    }

    /// <summary>GPU: <c>dPrompt += Σ_b dOut[b, 0:m]</c> (deterministic).</summary>
    public static void PromptGradient(GpuDevice device, ArrayView<float> dOutput, ArrayView<float> dPrompt, int batch, int prefix, int seqLen, int dim)
    {
        Validate(dPrompt.Length, (long)batch * seqLen * dim, dOutput.Length, batch, prefix, seqLen, dim, nameof(dPrompt), "x", nameof(dOutput));
        if (prefix == 0) return;
        var k = device.Kernel("Prepend.PromptGradient", acc => acc.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>, int, Args>(PromptGradientKernel));
        k((int)dPrompt.Length, dOutput, dPrompt, batch, new Args(prefix, seqLen, dim));
    }

    /// <summary>GPU: <c>dx[b] += dOut[b, m:m+T]</c>.</summary>
    public static void InputGradient(GpuDevice device, ArrayView<float> dOutput, ArrayView<float> dX, int batch, int prefix, int seqLen, int dim)
    {
        Validate((long)prefix * dim, dX.Length, dOutput.Length, batch, prefix, seqLen, dim, "prompt", nameof(dX), nameof(dOutput));
        var k = device.Kernel("Prepend.InputGradient", acc => acc.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>, Args>(InputGradientKernel));
        k((int)dX.Length, dOutput, dX, new Args(prefix, seqLen, dim));
    }
}
