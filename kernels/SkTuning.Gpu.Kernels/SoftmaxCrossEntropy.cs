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

    internal readonly struct Args(int rows, int classes, int validCount)
    {
        public readonly int Rows = rows, Classes = classes, ValidCount = validCount;
        public readonly float Scale = validCount == 0 ? 0f : 1f / validCount;
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

    /// <summary>Row r's loss (0 when ignored); when <paramref name="dLogits"/> is not empty, its gradient scaled by 1/count is accumulated.</summary>
    private static float Row(int r, ArrayView<float> logits, ArrayView<int> labels, ArrayView<float> dLogits, Args a)
    {
        int label = labels[r];
        if (label == IgnoreIndex) return 0f;
        long o = (long)r * a.Classes;
        float max = logits[o];
        for (int c = 1; c < a.Classes; c++) max = Math.Max(max, logits[o + c]);
        float sum = 0;
        for (int c = 0; c < a.Classes; c++) sum += MathF.Exp(logits[o + c] - max);
        if (dLogits.Length != 0)
        {
            float k = a.Scale / sum;
            for (int c = 0; c < a.Classes; c++)
                dLogits[o + c] += MathF.Exp(logits[o + c] - max) * k - (c == label ? a.Scale : 0f);
        }
        return MathF.Log(sum) + max - logits[o + label];
    }

    /// <summary>
    /// One group of <see cref="DeviceSum.Threads"/> threads: each takes rows r ≡ its index, summing their losses in fp64;
    /// the group's fixed-order tree gives the total and thread 0 writes the mean (deterministic: same bits every run).
    /// </summary>
    internal static void ForwardBackwardMeanKernel(ArrayView<float> logits, ArrayView<int> labels, ArrayView<float> dLogits, ArrayView<float> loss, Args a)
    {
        var shared = SharedMemory.Allocate<double>(DeviceSum.Threads);
        double s = 0;
        for (int r = Group.IdxX; r < a.Rows; r += DeviceSum.Threads) s += Row(r, logits, labels, dLogits, a);
        double total = DeviceSum.GroupTotal(s, shared);
        if (Group.IdxX == 0) loss[0] = a.ValidCount == 0 ? 0f : (float)total / a.ValidCount;
    }

    /// <summary>
    /// GPU, one launch: the mean loss into <paramref name="loss"/>[0] (never read back here) and the gradient accumulated into
    /// <paramref name="dLogits"/> (empty view = loss only). <paramref name="validCount"/> is <see cref="CountValid"/> of the
    /// labels, computed on the host; labels are not range-checked on the device.
    /// </summary>
    public static void ForwardBackwardMean(GpuDevice device, ArrayView<float> logits, ArrayView<int> labels, ArrayView<float> dLogits,
        ArrayView<float> loss, int rows, int classes, int validCount)
    {
        OpsCheck.Length(logits.Length, (long)rows * classes, nameof(logits), $"N·C = {rows}·{classes}");
        OpsCheck.Length(labels.Length, rows, nameof(labels), "N");
        OpsCheck.Optional(dLogits.Length, (long)rows * classes, nameof(dLogits), $"N·C = {rows}·{classes}");
        OpsCheck.Length(loss.Length, 1, nameof(loss), "one value");
        var k = device.Kernel("SoftmaxCrossEntropy.ForwardBackwardMean", acc => acc.LoadStreamKernel<ArrayView<float>, ArrayView<int>,
            ArrayView<float>, ArrayView<float>, Args>(ForwardBackwardMeanKernel));
        k(DeviceSum.Config, logits, labels, dLogits, loss, new Args(rows, classes, validCount));
    }
}
