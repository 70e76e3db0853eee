using System.Numerics.Tensors;
using System.Runtime.Intrinsics;
using ILGPU;
using ILGPU.Runtime;
using SkTuning.Gpu.Kernels.Gpu;

namespace SkTuning.Gpu.Kernels;

/// <summary>
/// RMSNorm over the last axis (LLaMA/Mistral/Qwen): <c>y = x·rstd·γ</c>, <c>rstd = 1/√(mean(x²) + eps)</c>; no centring and
/// no bias. The forward saves <c>rstd</c> per row. Backward: <c>dx += rstd·(g − x̂·mean(g·x̂))</c> with <c>g = dy·γ</c>,
/// <c>x̂ = x·rstd</c>; <c>dγ += Σ_r dy·x̂</c> (empty <c>dx</c>/<c>dγ</c> = skip).
/// </summary>
public static class RmsNorm
{
    internal readonly struct Args
    {
        public readonly int Rows, Dim;
        public readonly float Eps;
        public Args(int rows, int dim, float eps) { Rows = rows; Dim = dim; Eps = eps; }
    }

    private static void ValidateForward(long x, long gamma, long y, long rstd, int rows, int dim)
    {
        OpsCheck.Positive(rows, nameof(rows));
        OpsCheck.Positive(dim, nameof(dim));
        string shape = $"rows·d = {rows}·{dim}";
        OpsCheck.Length(x, (long)rows * dim, nameof(x), shape);
        OpsCheck.Length(y, (long)rows * dim, nameof(y), shape);
        OpsCheck.Length(gamma, dim, nameof(gamma), "d");
        OpsCheck.Length(rstd, rows, nameof(rstd), "rows");
    }

    private static void ValidateBackward(long dy, long x, long gamma, long rstd, long dx, long dGamma, int rows, int dim)
    {
        OpsCheck.Positive(rows, nameof(rows));
        OpsCheck.Positive(dim, nameof(dim));
        string shape = $"rows·d = {rows}·{dim}";
        OpsCheck.Length(dy, (long)rows * dim, nameof(dy), shape);
        OpsCheck.Length(x, (long)rows * dim, nameof(x), shape);
        OpsCheck.Optional(dx, (long)rows * dim, nameof(dx), shape);
        OpsCheck.Length(gamma, dim, nameof(gamma), "d");
        OpsCheck.Optional(dGamma, dim, nameof(dGamma), "d");
        OpsCheck.Length(rstd, rows, nameof(rstd), "rows");
    }

    // ---------------------------------------------------------------- fp64 reference

    /// <summary>fp64 reference forward.</summary>
    public static void ForwardReference(ReadOnlySpan<double> x, ReadOnlySpan<double> gamma, Span<double> y, Span<double> rstd,
        int rows, int dim, double eps)
    {
        ValidateForward(x.Length, gamma.Length, y.Length, rstd.Length, rows, dim);
        for (int r = 0; r < rows; r++)
        {
            double sq = 0;
            for (int c = 0; c < dim; c++) sq += x[r * dim + c] * x[r * dim + c];
            double s = 1 / Math.Sqrt(sq / dim + eps);
            for (int c = 0; c < dim; c++) y[r * dim + c] = x[r * dim + c] * s * gamma[c];
            rstd[r] = s;
        }
    }

    /// <summary>fp64 reference backward (accumulates; empty gradients skipped).</summary>
    public static void BackwardReference(ReadOnlySpan<double> dy, ReadOnlySpan<double> x, ReadOnlySpan<double> gamma,
        ReadOnlySpan<double> rstd, Span<double> dx, Span<double> dGamma, int rows, int dim)
    {
        ValidateBackward(dy.Length, x.Length, gamma.Length, rstd.Length, dx.Length, dGamma.Length, rows, dim);
        for (int r = 0; r < rows; r++)
        {
            double mgx = 0;
            for (int c = 0; c < dim; c++)
            {
                double xh = x[r * dim + c] * rstd[r];
                mgx += dy[r * dim + c] * gamma[c] * xh;
                if (!dGamma.IsEmpty) dGamma[c] += dy[r * dim + c] * xh;
            }
            mgx /= dim;
            if (dx.IsEmpty) continue;
            for (int c = 0; c < dim; c++)
                dx[r * dim + c] += rstd[r] * (dy[r * dim + c] * gamma[c] - x[r * dim + c] * rstd[r] * mgx);
        }
    }

    // ---------------------------------------------------------------- CPU

    /// <summary>CPU forward (one fused Vector512 row pass for Σx², one for y; parallel over rows); writes y and rstd.</summary>
    /// <exception cref="ArgumentException">Sizes disagree.</exception>
    public static unsafe void Forward(ReadOnlySpan<float> x, ReadOnlySpan<float> gamma, Span<float> y, Span<float> rstd, int rows, int dim, float eps)
    {
        ValidateForward(x.Length, gamma.Length, y.Length, rstd.Length, rows, dim);
        fixed (float* px = x, pg = gamma, py = y, ps = rstd)
        {
            var X = new OpsPtr<float>(px); var G = new OpsPtr<float>(pg); var Y = new OpsPtr<float>(py); var S = new OpsPtr<float>(ps);
            OpsParallel.For(rows, (long)rows * dim * 3, r => S[r] = ForwardRow(X.Span((long)r * dim, dim), G.Span(0, dim), Y.Span((long)r * dim, dim), eps));
        }
    }

    /// <summary>
    /// CPU backward (accumulates). <paramref name="dx"/> and <paramref name="dGamma"/> may each be empty to skip; the γ gradient is
    /// reduced deterministically (fixed row chunks, summed in order).
    /// </summary>
    /// <exception cref="ArgumentException">Sizes disagree.</exception>
    public static unsafe void Backward(ReadOnlySpan<float> dy, ReadOnlySpan<float> x, ReadOnlySpan<float> gamma, ReadOnlySpan<float> rstd,
        Span<float> dx, Span<float> dGamma, int rows, int dim)
    {
        ValidateBackward(dy.Length, x.Length, gamma.Length, rstd.Length, dx.Length, dGamma.Length, rows, dim);
        fixed (float* pdy = dy, px = x, pg = gamma, ps = rstd, pdx = dx)
        {
            var Dy = new OpsPtr<float>(pdy); var X = new OpsPtr<float>(px); var G = new OpsPtr<float>(pg);
            var S = new OpsPtr<float>(ps); var Dx = new OpsPtr<float>(pdx);
            if (!dx.IsEmpty)
                OpsParallel.For(rows, (long)rows * dim * 5, r =>
                    InputGradientRow(Dy.Span((long)r * dim, dim), X.Span((long)r * dim, dim), G.Span(0, dim), Dx.Span((long)r * dim, dim), S[r]));
            if (dGamma.IsEmpty) return;
            OpsParallel.ReduceRows(rows, dim, 3L * dim, dGamma, (start, end, acc) =>
            {
                Span<float> xh = dim <= 2048 ? stackalloc float[dim] : new float[dim];
                for (int r = start; r < end; r++)
                {
                    TensorPrimitives.Multiply(X.Span((long)r * dim, dim), S[r], xh);
                    TensorPrimitives.FusedMultiplyAdd(Dy.Span((long)r * dim, dim), xh, acc, acc);
                }
            });
        }
    }

    /// <summary>One row of the forward: Σx² (Vector512 accumulator, scalar tail), then <c>y = x·rstd·γ</c>; returns rstd.</summary>
    private static float ForwardRow(ReadOnlySpan<float> xr, ReadOnlySpan<float> gr, Span<float> yr, float eps)
    {
        int dim = xr.Length, vec = Vector512.IsHardwareAccelerated ? dim & ~15 : 0;
        float sq = 0;
        if (vec > 0)
        {
            Vector512<float> acc = default;
            for (int i = 0; i < vec; i += 16) { var v = Vector512.Create<float>(xr.Slice(i, 16)); acc += v * v; }
            sq = Vector512.Sum(acc);
        }
        for (int i = vec; i < dim; i++) sq += xr[i] * xr[i];
        float s = 1f / MathF.Sqrt(sq / dim + eps);
        if (vec > 0)
        {
            var vs = Vector512.Create(s);
            for (int i = 0; i < vec; i += 16)
                (Vector512.Create<float>(xr.Slice(i, 16)) * vs * Vector512.Create<float>(gr.Slice(i, 16))).CopyTo(yr.Slice(i, 16));
        }
        for (int i = vec; i < dim; i++) yr[i] = xr[i] * s * gr[i];
        return s;
    }

    /// <summary>
    /// One row of <c>dx += s·(g − x̂·mean(g·x̂))</c>, <c>g = dy·γ</c>, <c>x̂ = x·s</c>: two fused passes (the sum, then the
    /// update) recomputing g and x̂ instead of storing them.
    /// </summary>
    private static void InputGradientRow(ReadOnlySpan<float> dyr, ReadOnlySpan<float> xr, ReadOnlySpan<float> gr, Span<float> dxr, float s)
    {
        int dim = xr.Length, vec = Vector512.IsHardwareAccelerated ? dim & ~15 : 0;
        float sumGx = 0;
        if (vec > 0)
        {
            Vector512<float> acc = default;
            for (int i = 0; i < vec; i += 16)
                acc += Vector512.Create<float>(dyr.Slice(i, 16)) * Vector512.Create<float>(gr.Slice(i, 16)) * Vector512.Create<float>(xr.Slice(i, 16));
            sumGx = Vector512.Sum(acc);
        }
        for (int i = vec; i < dim; i++) sumGx += dyr[i] * gr[i] * xr[i];
        // mean(g·x̂)·s = Σ(g·x)·s²/d: the coefficient of x in the update.
        float k = sumGx * s * s / dim;
        if (vec > 0)
        {
            var vs = Vector512.Create(s); var vk = Vector512.Create(k);
            for (int i = 0; i < vec; i += 16)
            {
                var g = Vector512.Create<float>(dyr.Slice(i, 16)) * Vector512.Create<float>(gr.Slice(i, 16));
                (Vector512.Create<float>(dxr.Slice(i, 16)) + vs * (g - Vector512.Create<float>(xr.Slice(i, 16)) * vk)).CopyTo(dxr.Slice(i, 16));
            }
        }
        for (int i = vec; i < dim; i++) dxr[i] += s * (dyr[i] * gr[i] - xr[i] * k);
    }

    // ---------------------------------------------------------------- ILGPU

    /// <summary>One warp per row (see <see cref="LayerNorm"/>'s kernels): lanes stride the columns, sums by shuffles.</summary>
    internal static void ForwardKernel(ArrayView<float> x, ArrayView<float> gamma, ArrayView<float> y, ArrayView<float> rstd, Args a)
    {
        int r = WarpRows.Row();
        if (r >= a.Rows) return;
        long o = (long)r * a.Dim;
        int lane = Warp.LaneIdx, step = Warp.WarpSize;
        float sq = 0;
        for (int c = lane; c < a.Dim; c += step) sq += x[o + c] * x[o + c];
        float s = 1f / MathF.Sqrt(WarpRows.Sum(sq) / a.Dim + a.Eps);
        for (int c = lane; c < a.Dim; c += step) y[o + c] = x[o + c] * s * gamma[c];
        if (lane == 0) rstd[r] = s;
    }

    /// <summary>dx, one warp per row.</summary>
    internal static void BackwardInputKernel(ArrayView<float> dy, ArrayView<float> x, ArrayView<float> gamma,
        ArrayView<float> rstd, ArrayView<float> dx, Args a)
    {
        int r = WarpRows.Row();
        if (r >= a.Rows) return;
        long o = (long)r * a.Dim;
        int lane = Warp.LaneIdx, step = Warp.WarpSize;
        float s = rstd[r], sumGx = 0;
        for (int c = lane; c < a.Dim; c += step) sumGx += dy[o + c] * gamma[c] * x[o + c];
        float k = WarpRows.Sum(sumGx) * s * s / a.Dim;
        for (int c = lane; c < a.Dim; c += step) dx[o + c] += s * (dy[o + c] * gamma[c] - x[o + c] * k);
    }

    /// <summary>dγ, one thread per column summing rows in order (deterministic).</summary>
    internal static void BackwardGammaKernel(Index1D c, ArrayView<float> dy, ArrayView<float> x, ArrayView<float> rstd, ArrayView<float> dGamma, Args a)
    {
        float sum = 0;
        for (int r = 0; r < a.Rows; r++)
        {
            long i = (long)r * a.Dim + c;
            sum += dy[i] * x[i] * rstd[r];
        }
        dGamma[c] += sum;
    }

    /// <summary>GPU forward.</summary>
    /// <exception cref="ArgumentException">Sizes disagree.</exception>
    public static void Forward(GpuDevice device, ArrayView<float> x, ArrayView<float> gamma, ArrayView<float> y, ArrayView<float> rstd,
        int rows, int dim, float eps)
    {
        ValidateForward(x.Length, gamma.Length, y.Length, rstd.Length, rows, dim);
        if (rows == 0) return;
        var k = device.Kernel("RmsNorm.Forward", acc => acc.LoadStreamKernel<ArrayView<float>, ArrayView<float>,
            ArrayView<float>, ArrayView<float>, Args>(ForwardKernel));
        k(WarpRows.Config(device, rows), x, gamma, y, rstd, new Args(rows, dim, eps));
    }

    /// <summary>GPU backward (accumulates; empty gradient views skipped).</summary>
    /// <exception cref="ArgumentException">Sizes disagree.</exception>
    public static void Backward(GpuDevice device, ArrayView<float> dy, ArrayView<float> x, ArrayView<float> gamma, ArrayView<float> rstd,
        ArrayView<float> dx, ArrayView<float> dGamma, int rows, int dim)
    {
        ValidateBackward(dy.Length, x.Length, gamma.Length, rstd.Length, dx.Length, dGamma.Length, rows, dim);
        var args = new Args(rows, dim, 0);
        if (rows == 0) return;
        if (dx.Length != 0)
        {
            var k = device.Kernel("RmsNorm.BackwardInput", acc => acc.LoadStreamKernel<ArrayView<float>, ArrayView<float>,
                ArrayView<float>, ArrayView<float>, ArrayView<float>, Args>(BackwardInputKernel));
            k(WarpRows.Config(device, rows), dy, x, gamma, rstd, dx, args);
        }
        if (dGamma.Length != 0)
        {
            var k = device.Kernel("RmsNorm.BackwardGamma", acc => acc.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>,
                ArrayView<float>, ArrayView<float>, Args>(BackwardGammaKernel));
            k(dim, dy, x, rstd, dGamma, args);
        }
    }
}
