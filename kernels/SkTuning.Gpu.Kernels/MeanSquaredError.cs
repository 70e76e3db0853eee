using ILGPU;
using ILGPU.Runtime;
using SkTuning.Gpu.Kernels.Gpu;

namespace SkTuning.Gpu.Kernels;

/// <summary>Regression loss <c>loss = (1/n)·Σ (p − t)²</c>; backward <c>dp += 2(p − t)/n</c>.</summary>
public static class MeanSquaredError
{
    private static void Validate(long p, long t, long dp)
    {
        OpsCheck.Positive((int)Math.Min(p, int.MaxValue), "predictions.Length");
        OpsCheck.Length(t, p, "targets", "length of predictions");
        OpsCheck.Optional(dp, p, "dPredictions", "length of predictions");
    }

    /// <summary>fp64 reference: returns the loss and accumulates the gradient (empty = skip).</summary>
    public static double ForwardBackwardReference(ReadOnlySpan<double> predictions, ReadOnlySpan<double> targets, Span<double> dPredictions)
    {
        Validate(predictions.Length, targets.Length, dPredictions.Length);
        int n = predictions.Length;
        double loss = 0;
        for (int i = 0; i < n; i++)
        {
            double e = predictions[i] - targets[i];
            loss += e * e;
            if (!dPredictions.IsEmpty) dPredictions[i] += 2 * e / n;
        }
        return loss / n;
    }

    /// <summary>CPU: returns the loss (fp64 accumulation) and accumulates the gradient (empty = loss only).</summary>
    /// <exception cref="ArgumentException">Lengths disagree or are zero.</exception>
    public static float ForwardBackward(ReadOnlySpan<float> predictions, ReadOnlySpan<float> targets, Span<float> dPredictions)
    {
        Validate(predictions.Length, targets.Length, dPredictions.Length);
        int n = predictions.Length;
        float k = 2f / n;
        double loss = 0;
        for (int i = 0; i < n; i++)
        {
            float e = predictions[i] - targets[i];
            loss += (double)e * e;
            if (!dPredictions.IsEmpty) dPredictions[i] += k * e;
        }
        return (float)(loss / n);
    }

    /// <summary>Element-wise: squared error out, gradient accumulated (when dPredictions is not empty).</summary>
    internal static void ForwardBackwardKernel(Index1D i, ArrayView<float> predictions, ArrayView<float> targets,
        ArrayView<float> squaredError, ArrayView<float> dPredictions, float twoOverN)
    {
        float e = predictions[i] - targets[i];
        squaredError[i] = e * e;
        if (dPredictions.Length != 0) dPredictions[i] += twoOverN * e;
    }

    /// <summary>
    /// GPU: writes <c>(p − t)²</c> per element into <paramref name="squaredError"/> (loss = their mean) and accumulates the
    /// gradient into <paramref name="dPredictions"/> (empty view = loss only).
    /// </summary>
    public static void ForwardBackward(GpuDevice device, ArrayView<float> predictions, ArrayView<float> targets,
        ArrayView<float> squaredError, ArrayView<float> dPredictions)
    {
        Validate(predictions.Length, targets.Length, dPredictions.Length);
        OpsCheck.Length(squaredError.Length, predictions.Length, nameof(squaredError), "length of predictions");
        var k = device.Kernel("MeanSquaredError.ForwardBackward", acc => acc.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>,
            ArrayView<float>, ArrayView<float>, ArrayView<float>, float>(ForwardBackwardKernel));
        k((int)predictions.Length, predictions, targets, squaredError, dPredictions, 2f / predictions.Length);
    }
}
