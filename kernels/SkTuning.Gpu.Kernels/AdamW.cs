using System.Numerics.Tensors;
using System.Runtime.Intrinsics;
using ILGPU;
using ILGPU.Runtime;
using SkTuning.Gpu.Kernels.Gpu;

namespace SkTuning.Gpu.Kernels;

/// <summary>
/// Hyper-parameters of one AdamW step, with the bias corrections for step <c>t</c> precomputed in fp64. The gradient clip
/// factor (<see cref="GradientNorm.ClipScale(double, double)"/>) is passed beside it: on the GPU it lives in device memory.
/// </summary>
public readonly struct AdamWStep
{
    /// <summary>Learning rate.</summary>
    public readonly float LearningRate;
    /// <summary>First-moment decay β₁.</summary>
    public readonly float Beta1;
    /// <summary>Second-moment decay β₂.</summary>
    public readonly float Beta2;
    /// <summary>ε added to √v̂.</summary>
    public readonly float Epsilon;
    /// <summary>Decoupled weight decay.</summary>
    public readonly float WeightDecay;
    /// <summary>1/(1 − β₁ᵗ).</summary>
    public readonly float Correction1;
    /// <summary>1/(1 − β₂ᵗ).</summary>
    public readonly float Correction2;

    /// <summary>Builds the step's constants; <paramref name="step"/> counts from 1.</summary>
    /// <exception cref="ArgumentException">step &lt; 1, or β outside [0, 1).</exception>
    public AdamWStep(float learningRate, float beta1, float beta2, float epsilon, float weightDecay, int step)
    {
        if (step < 1) throw new ArgumentException($"step = {step} must be ≥ 1", nameof(step));
        if (!(beta1 >= 0 && beta1 < 1)) throw new ArgumentException($"beta1 = {beta1} must be in [0, 1)", nameof(beta1));
        if (!(beta2 >= 0 && beta2 < 1)) throw new ArgumentException($"beta2 = {beta2} must be in [0, 1)", nameof(beta2));
        LearningRate = learningRate; Beta1 = beta1; Beta2 = beta2; Epsilon = epsilon; WeightDecay = weightDecay;
        Correction1 = (float)(1.0 / (1.0 - Math.Pow(beta1, step)));
        Correction2 = (float)(1.0 / (1.0 - Math.Pow(beta2, step)));
    }
}

/// <summary>
/// One fused AdamW step over a flat parameter buffer: <c>g = grad·clip</c>, <c>m = β₁m + (1−β₁)g</c>,
/// <c>v = β₂v + (1−β₂)g²</c>, <c>θ ← θ − lr·(m̂/(√v̂ + ε) + wd·θ)</c> with <c>m̂ = m/(1−β₁ᵗ)</c>, <c>v̂ = v/(1−β₂ᵗ)</c>.
/// </summary>
public static class AdamW
{
    private static void Validate(long param, long grad, long m, long v)
    {
        OpsCheck.Length(grad, param, "gradient", "length of parameters");
        OpsCheck.Length(m, param, "m", "length of parameters");
        OpsCheck.Length(v, param, "v", "length of parameters");
    }

    /// <summary>fp64 reference step (t counts from 1).</summary>
    public static void StepReference(Span<double> parameters, ReadOnlySpan<double> gradient, Span<double> m, Span<double> v,
        double learningRate, double beta1, double beta2, double epsilon, double weightDecay, int step, double clipScale)
    {
        Validate(parameters.Length, gradient.Length, m.Length, v.Length);
        double c1 = 1 - Math.Pow(beta1, step), c2 = 1 - Math.Pow(beta2, step);
        for (int i = 0; i < parameters.Length; i++)
        {
            double g = gradient[i] * clipScale;
            m[i] = beta1 * m[i] + (1 - beta1) * g;
            v[i] = beta2 * v[i] + (1 - beta2) * g * g;
            double mh = m[i] / c1, vh = v[i] / c2;
            parameters[i] -= learningRate * (mh / (Math.Sqrt(vh) + epsilon) + weightDecay * parameters[i]);
        }
    }

    private static float Update(ref float theta, float grad, float clipScale, ref float m, ref float v, in AdamWStep s)
    {
        float g = grad * clipScale;
        float mi = s.Beta1 * m + (1f - s.Beta1) * g;
        float vi = s.Beta2 * v + (1f - s.Beta2) * g * g;
        m = mi;
        v = vi;
        float t = theta;
        theta = t - s.LearningRate * (mi * s.Correction1 / (MathF.Sqrt(vi * s.Correction2) + s.Epsilon) + s.WeightDecay * t);
        return theta;
    }

    private const int Chunk = 16384;

    /// <summary>CPU step over the whole buffer (Vector512 where available, parallel over chunks); the gradient is multiplied by <paramref name="clipScale"/>.</summary>
    /// <exception cref="ArgumentException">Lengths disagree.</exception>
    public static unsafe void Step(Span<float> parameters, ReadOnlySpan<float> gradient, Span<float> m, Span<float> v, AdamWStep step, float clipScale = 1f)
    {
        Validate(parameters.Length, gradient.Length, m.Length, v.Length);
        int n = parameters.Length, chunks = (n + Chunk - 1) / Chunk;
        fixed (float* pp = parameters, pg = gradient, pm = m, pv = v)
        {
            var P = new OpsPtr<float>(pp); var G = new OpsPtr<float>(pg); var M = new OpsPtr<float>(pm); var V = new OpsPtr<float>(pv);
            OpsParallel.For(chunks, (long)n * 12, c =>
            {
                int end = Math.Min(n, (c + 1) * Chunk), i = c * Chunk;
                if (Vector512.IsHardwareAccelerated)
                {
                    var s = step;
                    for (; i + 16 <= end; i += 16)
                    {
                        Span<float> ps = P.Span(i, 16), ms = M.Span(i, 16), vs = V.Span(i, 16);
                        var g = Vector512.Create<float>(G.Span(i, 16)) * clipScale;
                        var mi = s.Beta1 * Vector512.Create<float>(ms) + (1f - s.Beta1) * g;
                        var vi = s.Beta2 * Vector512.Create<float>(vs) + (1f - s.Beta2) * g * g;
                        var t = Vector512.Create<float>(ps);
                        t -= s.LearningRate * (mi * s.Correction1 / (Vector512.Sqrt(vi * s.Correction2) + Vector512.Create(s.Epsilon)) + s.WeightDecay * t);
                        mi.CopyTo(ms); vi.CopyTo(vs); t.CopyTo(ps);
                    }
                }
                for (; i < end; i++) Update(ref P[i], G[i], clipScale, ref M[i], ref V[i], step);
            });
        }
    }

    /// <summary>
    /// Baseline for benchmarks: the same step as an eager framework without a fused optimizer runs it — one whole-buffer
    /// pass per arithmetic operation (nine passes, two temporaries allocated per call) instead of <see cref="Step(Span{float}, ReadOnlySpan{float}, Span{float}, Span{float}, AdamWStep, float)"/>'s
    /// single pass. Same results up to float rounding.
    /// </summary>
    /// <exception cref="ArgumentException">Lengths disagree.</exception>
    public static void StepUnfused(Span<float> parameters, ReadOnlySpan<float> gradient, Span<float> m, Span<float> v, AdamWStep s, float clipScale = 1f)
    {
        Validate(parameters.Length, gradient.Length, m.Length, v.Length);
        var g = new float[parameters.Length];
        var u = new float[parameters.Length];
        TensorPrimitives.Multiply(gradient, clipScale, g);                   // g = grad·clip
        TensorPrimitives.Multiply(m, s.Beta1, m);                               // m = β₁m + (1−β₁)g
        TensorPrimitives.MultiplyAdd(g, 1f - s.Beta1, m, m);
        TensorPrimitives.Multiply(g, g, g);                                     // v = β₂v + (1−β₂)g²
        TensorPrimitives.Multiply(v, s.Beta2, v);
        TensorPrimitives.MultiplyAdd(g, 1f - s.Beta2, v, v);
        TensorPrimitives.Multiply(v, s.Correction2, u);                         // u = √v̂ + ε
        TensorPrimitives.Sqrt(u, u);
        TensorPrimitives.Add(u, s.Epsilon, u);
        TensorPrimitives.Multiply(m, s.Correction1, g);                         // g = m̂ / u
        TensorPrimitives.Divide(g, u, g);
        TensorPrimitives.MultiplyAdd(parameters, s.WeightDecay, g, g);          // θ −= lr·(g + wd·θ)
        TensorPrimitives.MultiplyAdd(g, -s.LearningRate, parameters, parameters);
    }

    internal static void StepKernel(Index1D i, ArrayView<float> parameters, ArrayView<float> gradient, ArrayView<float> m,
        ArrayView<float> v, ArrayView<float> clipScale, AdamWStep s)
    {
        float clip = clipScale[0];
        if (float.IsNaN(clip)) return;   // the gradient norm was not finite: the step is skipped
        float theta = parameters[i], mi = m[i], vi = v[i];
        Update(ref theta, gradient[i], clip, ref mi, ref vi, s);
        parameters[i] = theta;
        m[i] = mi;
        v[i] = vi;
    }

    /// <summary>
    /// GPU step; the clip factor is read on the device from <paramref name="clipScale"/>[0] (written there by
    /// <see cref="GradientNorm.ClipScale(GpuDevice, ArrayView{float}, ArrayView{double}, ArrayView{float}, ArrayView{float}, double)"/>,
    /// so the host never waits for the norm); NaN there skips the step.
    /// </summary>
    public static void Step(GpuDevice device, ArrayView<float> parameters, ArrayView<float> gradient, ArrayView<float> m,
        ArrayView<float> v, ArrayView<float> clipScale, AdamWStep step)
    {
        Validate(parameters.Length, gradient.Length, m.Length, v.Length);
        OpsCheck.Length(clipScale.Length, 1, nameof(clipScale), "one value");
        if (parameters.Length == 0) return;   // CUDA refuses an empty grid
        var k = device.Kernel("AdamW.Step", a => a.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>,
            ArrayView<float>, ArrayView<float>, ArrayView<float>, AdamWStep>(StepKernel));
        k((int)parameters.Length, parameters, gradient, m, v, clipScale, step);
    }
}
