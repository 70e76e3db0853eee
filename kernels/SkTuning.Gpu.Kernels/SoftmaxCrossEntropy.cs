using System.Numerics.Tensors;
using ILGPU;
using ILGPU.Runtime;
using SkTuning.Gpu.Kernels.Gpu;

namespace SkTuning.Gpu.Kernels;

/// <summary>
/// Fused softmax + cross-entropy over logits <c>[N, C]</c> with int labels (<see cref="IgnoreIndex"/> = −100 skips a row):
/// <c>loss = (1/count)·Σ_valid (logsumexp(z_r) − z_r[label_r])</c>; backward <c>dz_r += (softmax(z_r) − onehot)/count</c> for
/// valid rows, ignored rows untouched. With no valid row the loss is 0 and no gradient is written.
/// </summary>
public static class SoftmaxCrossEntropy
{
    /// <summary>The label value that marks a row as ignored (as torch).</summary>
    public const int IgnoreIndex = -100;

    internal readonly struct Args
    {
        public readonly int Classes;
        public readonly float Scale;
        public Args(int classes, float scale) { Classes = classes; Scale = scale; }
    }

    /// <summary>Number of labels that are not <see cref="IgnoreIndex"/>.</summary>
    public static int CountValid(ReadOnlySpan<int> labels)
    {
        int n = 0;
        foreach (var l in labels) if (l != IgnoreIndex) n++;
        return n;
    }

    private static void Validate(long logits, ReadOnlySpan<int> labels, long dLogits, int rows, int classes)
    {
        OpsCheck.Positive(rows, nameof(rows));
        OpsCheck.Positive(classes, nameof(classes));
        OpsCheck.Length(logits, (long)rows * classes, nameof(logits), $"N·C = {rows}·{classes}");
        OpsCheck.Length(labels.Length, rows, nameof(labels), "N");
        OpsCheck.Optional(dLogits, (long)rows * classes, nameof(dLogits), $"N·C = {rows}·{classes}");
        for (int r = 0; r < labels.Length; r++)
            if (labels[r] != IgnoreIndex && (uint)labels[r] >= (uint)classes)
                throw new ArgumentException($"label {labels[r]} at row {r} is outside [0, C = {classes}) and not {IgnoreIndex}", nameof(labels));
    }

    /// <summary>fp64 reference: returns the mean loss and accumulates the gradient into <paramref name="dLogits"/> (empty = skip).</summary>
    public static double ForwardBackwardReference(ReadOnlySpan<double> logits, ReadOnlySpan<int> labels, Span<double> dLogits, int rows, int classes)
    {
        Validate(logits.Length, labels, dLogits.Length, rows, classes);
        int count = CountValid(labels);
        if (count == 0) return 0;
        double loss = 0;
        for (int r = 0; r < rows; r++)
        {
            if (labels[r] == IgnoreIndex) continue;
            var z = logits.Slice(r * classes, classes);
            double max = double.NegativeInfinity;
            foreach (var v in z) max = Math.Max(max, v);
            double sum = 0;
            foreach (var v in z) sum += Math.Exp(v - max);
            loss += Math.Log(sum) + max - z[labels[r]];
            if (dLogits.IsEmpty) continue;
            for (int c = 0; c < classes; c++)
                dLogits[r * classes + c] += (Math.Exp(z[c] - max) / sum - (c == labels[r] ? 1 : 0)) / count;
        }
        return loss / count;
    }

    /// <summary>
    /// CPU: returns the mean loss (per-row losses summed in fp64, in order) and accumulates the gradient into
    /// <paramref name="dLogits"/> (empty = loss only).
    /// </summary>
    /// <exception cref="ArgumentException">Sizes disagree or a label is out of range.</exception>
    public static unsafe float ForwardBackward(ReadOnlySpan<float> logits, ReadOnlySpan<int> labels, Span<float> dLogits, int rows, int classes)
    {
        Validate(logits.Length, labels, dLogits.Length, rows, classes);
        int count = CountValid(labels);
        if (count == 0) return 0;
        var rowLoss = new double[rows];
        bool grad = !dLogits.IsEmpty;
        float scale = 1f / count;
        fixed (float* pz = logits, pd = dLogits)
        fixed (int* pl = labels)
        fixed (double* prl = rowLoss)
        {
            var Z = new OpsPtr<float>(pz); var Dz = new OpsPtr<float>(pd); var L = new OpsPtr<int>(pl); var RL = new OpsPtr<double>(prl);
            OpsParallel.For(rows, (long)rows * classes * 4, r =>
            {
                int label = L[r];
                if (label == IgnoreIndex) return;
                var z = Z.Span((long)r * classes, classes);
                float max = TensorPrimitives.Max(z);
                Span<float> e = classes <= 4096 ? stackalloc float[classes] : new float[classes];
                TensorPrimitives.Subtract(z, max, e);
                TensorPrimitives.Exp(e, e);
                float sum = TensorPrimitives.Sum(e);
                RL[r] = Math.Log(sum) + max - z[label];
                if (!grad) return;
                var d = Dz.Span((long)r * classes, classes);
                TensorPrimitives.MultiplyAdd(e, scale / sum, d, d);
                d[label] -= scale;
            });
        }
        double loss = 0;
        foreach (var l in rowLoss) loss += l;
        return (float)(loss / count);
    }

    /// <summary>
    /// One thread per row: writes the row's loss (0 when ignored) into <paramref name="rowLoss"/> and, when
    /// <paramref name="dLogits"/> is not empty, accumulates the gradient scaled by <c>Args.Scale</c> = 1/count.
    /// </summary>
    internal static void ForwardBackwardKernel(Index1D r, ArrayView<float> logits, ArrayView<int> labels, ArrayView<float> rowLoss,
        ArrayView<float> dLogits, Args a)
    {
        int label = labels[r];
        if (label == IgnoreIndex) { rowLoss[r] = 0f; return; }
        long o = (long)(int)r * a.Classes;
        float max = logits[o];
        for (int c = 1; c < a.Classes; c++) max = Math.Max(max, logits[o + c]);
        float sum = 0;
        for (int c = 0; c < a.Classes; c++) sum += MathF.Exp(logits[o + c] - max);
        rowLoss[r] = MathF.Log(sum) + max - logits[o + label];
        if (dLogits.Length == 0) return;
        float k = a.Scale / sum;
        for (int c = 0; c < a.Classes; c++)
            dLogits[o + c] += MathF.Exp(logits[o + c] - max) * k - (c == label ? a.Scale : 0f);
    }

    /// <summary>
    /// GPU: writes per-row losses into <paramref name="rowLoss"/> [N] (mean loss = their sum / <paramref name="validCount"/>)
    /// and accumulates the gradient into <paramref name="dLogits"/> (empty view = loss only). <paramref name="validCount"/> is
    /// <see cref="CountValid"/> of the labels, computed on the host; labels are not range-checked on the device.
    /// </summary>
    public static void ForwardBackward(GpuDevice device, ArrayView<float> logits, ArrayView<int> labels, ArrayView<float> rowLoss,
        ArrayView<float> dLogits, int rows, int classes, int validCount)
    {
        OpsCheck.Length(logits.Length, (long)rows * classes, nameof(logits), $"N·C = {rows}·{classes}");
        OpsCheck.Length(labels.Length, rows, nameof(labels), "N");
        OpsCheck.Length(rowLoss.Length, rows, nameof(rowLoss), "N");
        OpsCheck.Optional(dLogits.Length, (long)rows * classes, nameof(dLogits), $"N·C = {rows}·{classes}");
        var k = device.Kernel("SoftmaxCrossEntropy.ForwardBackward", acc => acc.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>,
            ArrayView<int>, ArrayView<float>, ArrayView<float>, Args>(ForwardBackwardKernel));
        k(rows, logits, labels, rowLoss, dLogits, new Args(classes, validCount == 0 ? 0f : 1f / validCount));
    }
}
