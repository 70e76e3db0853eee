using System.Runtime.Intrinsics;
using ILGPU;
using ILGPU.Runtime;
using SkTuning.Gpu.Kernels.Gpu;

namespace SkTuning.Gpu.Kernels;

/// <summary>
/// SwiGLU (LLaMA/Mistral/Qwen MLP): <c>y[r, j] = silu(g)·u</c> with <c>g = gateUp[r, j]</c>, <c>u = gateUp[r, F + j]</c>;
/// <c>gateUp</c> is the fused <c>[rows, 2F]</c> projection (columns gate | up), <c>y</c> is <c>[rows, F]</c>,
/// <c>silu(g) = g·σ(g)</c>. Backward (accumulates into <c>dGateUp</c>): <c>dg += dy·u·σ(g)·(1 + g·(1 − σ(g)))</c>,
/// <c>du += dy·silu(g)</c>.
/// </summary>
public static class SwiGlu
{
    internal readonly struct Args
    {
        public readonly int Ffn;
        public Args(int ffn) { Ffn = ffn; }
    }

    private static void Validate(long gateUp, long y, string yName, long dGateUp, bool backward, int rows, int ffn)
    {
        OpsCheck.Positive(rows, nameof(rows));
        OpsCheck.Positive(ffn, nameof(ffn));
        OpsCheck.Length(gateUp, 2L * rows * ffn, nameof(gateUp), $"rows·2F = {rows}·2·{ffn}");
        OpsCheck.Length(y, (long)rows * ffn, yName, $"rows·F = {rows}·{ffn}");
        if (backward) OpsCheck.Length(dGateUp, 2L * rows * ffn, nameof(dGateUp), $"rows·2F = {rows}·2·{ffn}");
    }

    // ---------------------------------------------------------------- fp64 reference

    private static double SigmoidReference(double z) => 1 / (1 + Math.Exp(-z));

    /// <summary>fp64 reference forward.</summary>
    public static void ForwardReference(ReadOnlySpan<double> gateUp, Span<double> y, int rows, int ffn)
    {
        Validate(gateUp.Length, y.Length, nameof(y), 0, false, rows, ffn);
        for (int r = 0; r < rows; r++)
            for (int j = 0; j < ffn; j++)
            {
                double g = gateUp[r * 2 * ffn + j], u = gateUp[r * 2 * ffn + ffn + j];
                y[r * ffn + j] = g * SigmoidReference(g) * u;
            }
    }

    /// <summary>fp64 reference backward (accumulates into <paramref name="dGateUp"/>).</summary>
    public static void BackwardReference(ReadOnlySpan<double> dy, ReadOnlySpan<double> gateUp, Span<double> dGateUp, int rows, int ffn)
    {
        Validate(gateUp.Length, dy.Length, nameof(dy), dGateUp.Length, true, rows, ffn);
        for (int r = 0; r < rows; r++)
            for (int j = 0; j < ffn; j++)
            {
                int o = r * 2 * ffn + j;
                double g = gateUp[o], u = gateUp[o + ffn], s = SigmoidReference(g), d = dy[r * ffn + j];
                dGateUp[o] += d * u * s * (1 + g * (1 - s));
                dGateUp[o + ffn] += d * g * s;
            }
    }

    // ---------------------------------------------------------------- shared float math (CPU and ILGPU)

    private static float Value(float g, float u) => g * Sigmoid.Value(g) * u;

    /// <summary>The gate and up gradients for one element, given its output gradient <paramref name="dy"/>.</summary>
    private static void Gradient(float g, float u, float dy, out float dGate, out float dUp)
    {
        float s = Sigmoid.Value(g);
        dGate = dy * u * s * (1f + g * (1f - s));
        dUp = dy * g * s;
    }

    // ---------------------------------------------------------------- CPU

    /// <summary>CPU forward (Vector512 along each row, parallel over rows).</summary>
    /// <exception cref="ArgumentException">Sizes disagree.</exception>
    public static unsafe void Forward(ReadOnlySpan<float> gateUp, Span<float> y, int rows, int ffn)
    {
        Validate(gateUp.Length, y.Length, nameof(y), 0, false, rows, ffn);
        fixed (float* pgu = gateUp, py = y)
        {
            var GU = new OpsPtr<float>(pgu); var Y = new OpsPtr<float>(py);
            OpsParallel.For(rows, (long)rows * ffn * 10, r =>
            {
                var g = GU.Span((long)r * 2 * ffn, ffn); var u = GU.Span((long)r * 2 * ffn + ffn, ffn); var yr = Y.Span((long)r * ffn, ffn);
                int j = 0;
                if (Vector512.IsHardwareAccelerated)
                    for (; j + 16 <= ffn; j += 16)
                    {
                        var gv = Vector512.Create<float>(g.Slice(j, 16));
                        (gv * Sigmoid.Value(gv) * Vector512.Create<float>(u.Slice(j, 16))).CopyTo(yr.Slice(j, 16));
                    }
                for (; j < ffn; j++) yr[j] = Value(g[j], u[j]);
            });
        }
    }

    /// <summary>CPU backward (accumulates into <paramref name="dGateUp"/>; Vector512 along each row, parallel over rows).</summary>
    /// <exception cref="ArgumentException">Sizes disagree.</exception>
    public static unsafe void Backward(ReadOnlySpan<float> dy, ReadOnlySpan<float> gateUp, Span<float> dGateUp, int rows, int ffn)
    {
        Validate(gateUp.Length, dy.Length, nameof(dy), dGateUp.Length, true, rows, ffn);
        fixed (float* pdy = dy, pgu = gateUp, pd = dGateUp)
        {
            var Dy = new OpsPtr<float>(pdy); var GU = new OpsPtr<float>(pgu); var DGU = new OpsPtr<float>(pd);
            OpsParallel.For(rows, (long)rows * ffn * 14, r =>
            {
                long o = (long)r * 2 * ffn;
                var g = GU.Span(o, ffn); var u = GU.Span(o + ffn, ffn); var dyr = Dy.Span((long)r * ffn, ffn);
                var dg = DGU.Span(o, ffn); var du = DGU.Span(o + ffn, ffn);
                int j = 0;
                if (Vector512.IsHardwareAccelerated)
                    for (; j + 16 <= ffn; j += 16)
                    {
                        var gv = Vector512.Create<float>(g.Slice(j, 16)); var d = Vector512.Create<float>(dyr.Slice(j, 16));
                        var s = Sigmoid.Value(gv);
                        var dgv = Vector512.Create<float>(dg.Slice(j, 16)) +
                            d * Vector512.Create<float>(u.Slice(j, 16)) * s * (Vector512<float>.One + gv * (Vector512<float>.One - s));
                        dgv.CopyTo(dg.Slice(j, 16));
                        (Vector512.Create<float>(du.Slice(j, 16)) + d * gv * s).CopyTo(du.Slice(j, 16));
                    }
                for (; j < ffn; j++)
                {
                    Gradient(g[j], u[j], dyr[j], out float a, out float b);
                    dg[j] += a;
                    du[j] += b;
                }
            });
        }
    }

    // ---------------------------------------------------------------- ILGPU

    /// <summary>One thread per output element.</summary>
    internal static void ForwardKernel(Index1D i, ArrayView<float> gateUp, ArrayView<float> y, Args a)
    {
        int r = i / a.Ffn;
        long o = (long)r * 2 * a.Ffn + (i - r * a.Ffn);
        y[i] = Value(gateUp[o], gateUp[o + a.Ffn]);
    }

    /// <summary>One thread per output element; it owns its gate and up gradient entries (no atomics).</summary>
    internal static void BackwardKernel(Index1D i, ArrayView<float> dy, ArrayView<float> gateUp, ArrayView<float> dGateUp, Args a)
    {
        int r = i / a.Ffn;
        long o = (long)r * 2 * a.Ffn + (i - r * a.Ffn);
        Gradient(gateUp[o], gateUp[o + a.Ffn], dy[i], out float dGate, out float dUp);
        dGateUp[o] += dGate;
        dGateUp[o + a.Ffn] += dUp;
    }

    /// <summary>GPU forward.</summary>
    /// <exception cref="ArgumentException">Sizes disagree.</exception>
    public static void Forward(GpuDevice device, ArrayView<float> gateUp, ArrayView<float> y, int rows, int ffn)
    {
        Validate(gateUp.Length, y.Length, nameof(y), 0, false, rows, ffn);
        var k = device.Kernel("SwiGlu.Forward", acc => acc.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>, Args>(ForwardKernel));
        k((int)y.Length, gateUp, y, new Args(ffn));
    }

    /// <summary>GPU backward (accumulates into <paramref name="dGateUp"/>).</summary>
    /// <exception cref="ArgumentException">Sizes disagree.</exception>
    public static void Backward(GpuDevice device, ArrayView<float> dy, ArrayView<float> gateUp, ArrayView<float> dGateUp, int rows, int ffn)
    {
        Validate(gateUp.Length, dy.Length, nameof(dy), dGateUp.Length, true, rows, ffn);
        var k = device.Kernel("SwiGlu.Backward", acc => acc.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>,
            ArrayView<float>, Args>(BackwardKernel));
        k((int)dy.Length, dy, gateUp, dGateUp, new Args(ffn));
    }
}
