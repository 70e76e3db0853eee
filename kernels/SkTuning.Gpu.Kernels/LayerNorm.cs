using System.Runtime.Intrinsics;
using System.Numerics.Tensors;
using ILGPU;
using ILGPU.Runtime;
using SkTuning.Gpu.Kernels.Gpu;

namespace SkTuning.Gpu.Kernels;

/// <summary>
/// LayerNorm over the last axis: <c>y = (x − mean)·rstd·γ + β</c>, <c>rstd = 1/√(var + eps)</c> with the biased
/// variance (as torch / ONNX decomposed LayerNorm). The forward saves <c>mean</c> and <c>rstd</c> per row for the
/// backward. Backward: <c>dx += rstd·(g − mean(g) − x̂·mean(g·x̂))</c> with <c>g = dy·γ</c>; <c>dγ += Σ_r dy·x̂</c>,
/// <c>dβ += Σ_r dy</c> (empty <c>dγ</c>/<c>dβ</c> = skip, for a frozen model; empty <c>dx</c> = skip too).
/// </summary>
public static class LayerNorm
{
    internal readonly struct Args
    {
        public readonly int Rows, Dim;
        public readonly float Eps;
        public Args(int rows, int dim, float eps) { Rows = rows; Dim = dim; Eps = eps; }
    }

    internal static void ValidateForward(long x, long gamma, long beta, long y, long mean, long rstd, int rows, int dim)
    {
        OpsCheck.Positive(rows, nameof(rows));
        OpsCheck.Positive(dim, nameof(dim));
        string shape = $"rows·d = {rows}·{dim}";
        OpsCheck.Length(x, (long)rows * dim, nameof(x), shape);
        OpsCheck.Length(y, (long)rows * dim, nameof(y), shape);
        OpsCheck.Length(gamma, dim, nameof(gamma), "d");
        OpsCheck.Length(beta, dim, nameof(beta), "d");
        OpsCheck.Length(mean, rows, nameof(mean), "rows");
        OpsCheck.Length(rstd, rows, nameof(rstd), "rows");
    }

    private static void ValidateBackward(long dy, long x, long gamma, long mean, long rstd, long dx, long dGamma, long dBeta, int rows, int dim)
    {
        OpsCheck.Positive(rows, nameof(rows));
        OpsCheck.Positive(dim, nameof(dim));
        string shape = $"rows·d = {rows}·{dim}";
        OpsCheck.Length(dy, (long)rows * dim, nameof(dy), shape);
        OpsCheck.Length(x, (long)rows * dim, nameof(x), shape);
        OpsCheck.Optional(dx, (long)rows * dim, nameof(dx), shape);
        OpsCheck.Length(gamma, dim, nameof(gamma), "d");
        OpsCheck.Optional(dGamma, dim, nameof(dGamma), "d");
        OpsCheck.Optional(dBeta, dim, nameof(dBeta), "d");
        OpsCheck.Length(mean, rows, nameof(mean), "rows");
        OpsCheck.Length(rstd, rows, nameof(rstd), "rows");
    }

    // ---------------------------------------------------------------- fp64 reference

    /// <summary>fp64 reference forward.</summary>
    public static void ForwardReference(ReadOnlySpan<double> x, ReadOnlySpan<double> gamma, ReadOnlySpan<double> beta,
        Span<double> y, Span<double> mean, Span<double> rstd, int rows, int dim, double eps)
    {
        ValidateForward(x.Length, gamma.Length, beta.Length, y.Length, mean.Length, rstd.Length, rows, dim);
        for (int r = 0; r < rows; r++)
        {
            var xr = x.Slice(r * dim, dim);
            double m = 0;
            for (int c = 0; c < dim; c++) m += xr[c];
            m /= dim;
            double v = 0;
            for (int c = 0; c < dim; c++) v += (xr[c] - m) * (xr[c] - m);
            double s = 1 / Math.Sqrt(v / dim + eps);
            for (int c = 0; c < dim; c++) y[r * dim + c] = (xr[c] - m) * s * gamma[c] + beta[c];
            mean[r] = m;
            rstd[r] = s;
        }
    }

    /// <summary>fp64 reference backward (accumulates; empty gradients skipped).</summary>
    public static void BackwardReference(ReadOnlySpan<double> dy, ReadOnlySpan<double> x, ReadOnlySpan<double> gamma,
        ReadOnlySpan<double> mean, ReadOnlySpan<double> rstd, Span<double> dx, Span<double> dGamma, Span<double> dBeta, int rows, int dim)
    {
        ValidateBackward(dy.Length, x.Length, gamma.Length, mean.Length, rstd.Length, dx.Length, dGamma.Length, dBeta.Length, rows, dim);
        for (int r = 0; r < rows; r++)
        {
            double mg = 0, mgx = 0;
            for (int c = 0; c < dim; c++)
            {
                double xh = (x[r * dim + c] - mean[r]) * rstd[r], g = dy[r * dim + c] * gamma[c];
                mg += g; mgx += g * xh;
                if (!dGamma.IsEmpty) dGamma[c] += dy[r * dim + c] * xh;
                if (!dBeta.IsEmpty) dBeta[c] += dy[r * dim + c];
            }
            mg /= dim; mgx /= dim;
            if (dx.IsEmpty) continue;
            for (int c = 0; c < dim; c++)
            {
                double xh = (x[r * dim + c] - mean[r]) * rstd[r], g = dy[r * dim + c] * gamma[c];
                dx[r * dim + c] += rstd[r] * (g - mg - xh * mgx);
            }
        }
    }

    // ---------------------------------------------------------------- CPU

    /// <summary>CPU forward (SIMD per row, parallel over rows); writes y, mean and rstd.</summary>
    /// <exception cref="ArgumentException">Sizes disagree.</exception>
    public static unsafe void Forward(ReadOnlySpan<float> x, ReadOnlySpan<float> gamma, ReadOnlySpan<float> beta,
        Span<float> y, Span<float> mean, Span<float> rstd, int rows, int dim, float eps)
    {
        ValidateForward(x.Length, gamma.Length, beta.Length, y.Length, mean.Length, rstd.Length, rows, dim);
        fixed (float* px = x, pg = gamma, pb = beta, py = y, pm = mean, ps = rstd)
        {
            var X = new OpsPtr<float>(px); var G = new OpsPtr<float>(pg); var Be = new OpsPtr<float>(pb);
            var Y = new OpsPtr<float>(py); var M = new OpsPtr<float>(pm); var S = new OpsPtr<float>(ps);
            OpsParallel.For(rows, (long)rows * dim * 4, r => ForwardRow(X, G, Be, Y, (long)r * dim, dim, eps, out M[r], out S[r]));
        }
    }

    /// <summary>
    /// CPU backward (accumulates). <paramref name="dx"/>, <paramref name="dGamma"/> and <paramref name="dBeta"/> may each be
    /// empty to skip; γ/β gradients are reduced deterministically (fixed row chunks, summed in order).
    /// </summary>
    /// <exception cref="ArgumentException">Sizes disagree.</exception>
    public static unsafe void Backward(ReadOnlySpan<float> dy, ReadOnlySpan<float> x, ReadOnlySpan<float> gamma,
        ReadOnlySpan<float> mean, ReadOnlySpan<float> rstd, Span<float> dx, Span<float> dGamma, Span<float> dBeta, int rows, int dim)
    {
        ValidateBackward(dy.Length, x.Length, gamma.Length, mean.Length, rstd.Length, dx.Length, dGamma.Length, dBeta.Length, rows, dim);
        fixed (float* pdy = dy, px = x, pg = gamma, pm = mean, ps = rstd, pdx = dx)
        {
            var Dy = new OpsPtr<float>(pdy); var X = new OpsPtr<float>(px); var G = new OpsPtr<float>(pg);
            var M = new OpsPtr<float>(pm); var S = new OpsPtr<float>(ps); var Dx = new OpsPtr<float>(pdx);
            if (!dx.IsEmpty)
                OpsParallel.For(rows, (long)rows * dim * 6, r => InputGradientRow(Dy, X, G, Dx, (long)r * dim, dim, M[r], S[r]));
            if (dGamma.IsEmpty && dBeta.IsEmpty) return;
            var sums = new float[2 * dim];
            OpsParallel.ReduceRows(rows, 2 * dim, 3L * dim, sums, (start, end, acc) =>
            {
                Span<float> xh = dim <= 2048 ? stackalloc float[dim] : new float[dim];
                var accG = acc.Slice(0, dim); var accB = acc.Slice(dim, dim);
                for (int r = start; r < end; r++)
                {
                    var dyr = Dy.Span((long)r * dim, dim);
                    TensorPrimitives.Subtract(X.Span((long)r * dim, dim), M[r], xh);
                    TensorPrimitives.Multiply(xh, S[r], xh);
                    TensorPrimitives.FusedMultiplyAdd(dyr, xh, accG, accG);
                    TensorPrimitives.Add(accB, dyr, accB);
                }
            });
            if (!dGamma.IsEmpty) TensorPrimitives.Add(dGamma, sums.AsSpan(0, dim), dGamma);
            if (!dBeta.IsEmpty) TensorPrimitives.Add(dBeta, sums.AsSpan(dim, dim), dBeta);
        }
    }

    /// <summary>One row of the forward: mean, then the variance of the centred row (two passes, as the reference), then y.</summary>
    internal static void ForwardRow(OpsPtr<float> x, OpsPtr<float> gamma, OpsPtr<float> beta, OpsPtr<float> y, long offset, int dim,
        float eps, out float mean, out float rstd)
    {
        var xr = x.Span(offset, dim); var gr = gamma.Span(0, dim); var br = beta.Span(0, dim); var yr = y.Span(offset, dim);
        bool simd = Vector512.IsHardwareAccelerated;
        int vec = simd ? dim & ~15 : 0;
        float sum = 0;
        if (simd)
        {
            Vector512<float> acc = default;
            for (int i = 0; i < vec; i += 16) acc += Vector512.Create<float>(xr.Slice(i, 16));
            sum = Vector512.Sum(acc);
        }
        for (int i = vec; i < dim; i++) sum += xr[i];
        float m = sum / dim, sq = 0;
        if (simd)
        {
            var vm = Vector512.Create(m);
            Vector512<float> acc = default;
            for (int i = 0; i < vec; i += 16) { var c = Vector512.Create<float>(xr.Slice(i, 16)) - vm; acc += c * c; }
            sq = Vector512.Sum(acc);
        }
        for (int i = vec; i < dim; i++) sq += (xr[i] - m) * (xr[i] - m);
        float s = 1f / MathF.Sqrt(sq / dim + eps);
        if (simd)
        {
            var vm = Vector512.Create(m); var vs = Vector512.Create(s);
            for (int i = 0; i < vec; i += 16)
                ((Vector512.Create<float>(xr.Slice(i, 16)) - vm) * vs * Vector512.Create<float>(gr.Slice(i, 16))
                    + Vector512.Create<float>(br.Slice(i, 16))).CopyTo(yr.Slice(i, 16));
        }
        for (int i = vec; i < dim; i++) yr[i] = (xr[i] - m) * s * gr[i] + br[i];
        mean = m;
        rstd = s;
    }

    /// <summary>
    /// One row of <c>dx += s·(g − mean(g) − x̂·mean(g·x̂))</c> with <c>g = dy·γ</c>, <c>x̂ = (x − μ)·s</c>: two fused passes
    /// (sums, then the update) that recompute x̂ and g instead of storing them.
    /// </summary>
    private static void InputGradientRow(OpsPtr<float> dy, OpsPtr<float> x, OpsPtr<float> gamma, OpsPtr<float> dx, long offset,
        int dim, float mean, float rstd)
    {
        var dyr = dy.Span(offset, dim); var xr = x.Span(offset, dim); var gr = gamma.Span(0, dim); var dxr = dx.Span(offset, dim);
        float sumG = 0, sumGx = 0;
        int i = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            var vm = Vector512.Create(mean); var vs = Vector512.Create(rstd);
            Vector512<float> accG = default, accGx = default;
            for (; i + 16 <= dim; i += 16)
            {
                var g = Vector512.Create<float>(dyr.Slice(i, 16)) * Vector512.Create<float>(gr.Slice(i, 16));
                accG += g;
                accGx += g * ((Vector512.Create<float>(xr.Slice(i, 16)) - vm) * vs);
            }
            sumG = Vector512.Sum(accG); sumGx = Vector512.Sum(accGx);
        }
        for (int j = i; j < dim; j++)
        {
            float g = dyr[j] * gr[j];
            sumG += g; sumGx += g * (xr[j] - mean) * rstd;
        }
        float mg = sumG / dim, mgx = sumGx / dim;
        i = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            var vm = Vector512.Create(mean); var vs = Vector512.Create(rstd);
            var vmg = Vector512.Create(mg); var vmgx = Vector512.Create(mgx);
            for (; i + 16 <= dim; i += 16)
            {
                var g = Vector512.Create<float>(dyr.Slice(i, 16)) * Vector512.Create<float>(gr.Slice(i, 16));
                var xh = (Vector512.Create<float>(xr.Slice(i, 16)) - vm) * vs;
                (Vector512.Create<float>(dxr.Slice(i, 16)) + vs * (g - vmg - xh * vmgx)).CopyTo(dxr.Slice(i, 16));
            }
        }
        for (; i < dim; i++)
            dxr[i] += rstd * (dyr[i] * gr[i] - mg - (xr[i] - mean) * rstd * mgx);
    }

    // ---------------------------------------------------------------- ILGPU

    /// <summary>
    /// One warp per row (<see cref="WarpRows.PerGroup"/> rows per group): lanes stride the columns (coalesced), the sums
    /// reduce by butterfly shuffles — the same tree on every run, so results are deterministic.
    /// </summary>
    internal static void ForwardKernel(ArrayView<float> x, ArrayView<float> gamma, ArrayView<float> beta,
        ArrayView<float> y, ArrayView<float> mean, ArrayView<float> rstd, Args a)
    {
        int r = WarpRows.Row();
        if (r >= a.Rows) return;   // whole warps leave together: no shuffle is left waiting
        long o = (long)r * a.Dim;
        float laneSum = 0;
        for (int c = Warp.LaneIdx; c < a.Dim; c += Warp.WarpSize) laneSum += x[o + c];
        NormalizeWarpRow(r, laneSum, x, gamma, beta, y, mean, rstd, a);
    }

    /// <summary>
    /// In a warp-per-row kernel, once the lanes hold row <paramref name="r"/> of <paramref name="x"/> and the partial sums
    /// of their columns: the row's mean and rstd by shuffles, <c>y = (x − mean)·rstd·γ + β</c>, mean and rstd saved. Shared by
    /// the kernels that build the row on the way (<see cref="ResidualLayerNorm"/>, <see cref="EmbeddingLayerNorm"/>); each
    /// lane reads back only the columns it wrote.
    /// </summary>
    internal static void NormalizeWarpRow(int r, float laneSum, ArrayView<float> x, ArrayView<float> gamma, ArrayView<float> beta,
        ArrayView<float> y, ArrayView<float> mean, ArrayView<float> rstd, Args a)
    {
        long o = (long)r * a.Dim;
        int lane = Warp.LaneIdx, step = Warp.WarpSize;
        float m = WarpRows.Sum(laneSum) / a.Dim;
        float v = 0;
        for (int c = lane; c < a.Dim; c += step) { float t = x[o + c] - m; v += t * t; }
        float s = 1f / MathF.Sqrt(WarpRows.Sum(v) / a.Dim + a.Eps);
        for (int c = lane; c < a.Dim; c += step) y[o + c] = (x[o + c] - m) * s * gamma[c] + beta[c];
        if (lane == 0)
        {
            mean[r] = m;
            rstd[r] = s;
        }
    }

    /// <summary>dx, one warp per row (as <see cref="ForwardKernel"/>).</summary>
    internal static void BackwardInputKernel(ArrayView<float> dy, ArrayView<float> x, ArrayView<float> gamma,
        ArrayView<float> mean, ArrayView<float> rstd, ArrayView<float> dx, Args a)
    {
        int r = WarpRows.Row();
        if (r >= a.Rows) return;
        long o = (long)r * a.Dim;
        int lane = Warp.LaneIdx, step = Warp.WarpSize;
        float m = mean[r], s = rstd[r], mg = 0, mgx = 0;
        for (int c = lane; c < a.Dim; c += step)
        {
            float g = dy[o + c] * gamma[c];
            mg += g;
            mgx += g * (x[o + c] - m) * s;
        }
        mg = WarpRows.Sum(mg) / a.Dim;
        mgx = WarpRows.Sum(mgx) / a.Dim;
        for (int c = lane; c < a.Dim; c += step)
            dx[o + c] += s * (dy[o + c] * gamma[c] - mg - (x[o + c] - m) * s * mgx);
    }

    /// <summary>dγ/dβ, one thread per column summing rows in order (deterministic); empty views skipped.</summary>
    internal static void BackwardParamsKernel(Index1D c, ArrayView<float> dy, ArrayView<float> x, ArrayView<float> mean,
        ArrayView<float> rstd, ArrayView<float> dGamma, ArrayView<float> dBeta, Args a)
    {
        float sg = 0, sb = 0;
        for (int r = 0; r < a.Rows; r++)
        {
            long i = (long)r * a.Dim + c;
            sg += dy[i] * (x[i] - mean[r]) * rstd[r];
            sb += dy[i];
        }
        if (dGamma.Length != 0) dGamma[c] += sg;
        if (dBeta.Length != 0) dBeta[c] += sb;
    }

    /// <summary>GPU forward.</summary>
    public static void Forward(GpuDevice device, ArrayView<float> x, ArrayView<float> gamma, ArrayView<float> beta,
        ArrayView<float> y, ArrayView<float> mean, ArrayView<float> rstd, int rows, int dim, float eps)
    {
        ValidateForward(x.Length, gamma.Length, beta.Length, y.Length, mean.Length, rstd.Length, rows, dim);
        if (rows == 0) return;
        var k = device.Kernel("LayerNorm.Forward", acc => acc.LoadStreamKernel<ArrayView<float>, ArrayView<float>,
            ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, Args>(ForwardKernel));
        k(WarpRows.Config(device, rows), x, gamma, beta, y, mean, rstd, new Args(rows, dim, eps));
    }

    /// <summary>GPU backward (accumulates; empty gradient views skipped).</summary>
    public static void Backward(GpuDevice device, ArrayView<float> dy, ArrayView<float> x, ArrayView<float> gamma,
        ArrayView<float> mean, ArrayView<float> rstd, ArrayView<float> dx, ArrayView<float> dGamma, ArrayView<float> dBeta, int rows, int dim)
    {
        ValidateBackward(dy.Length, x.Length, gamma.Length, mean.Length, rstd.Length, dx.Length, dGamma.Length, dBeta.Length, rows, dim);
        var args = new Args(rows, dim, 0);
        if (rows == 0) return;
        if (dx.Length != 0)
        {
            var k = device.Kernel("LayerNorm.BackwardInput", acc => acc.LoadStreamKernel<ArrayView<float>, ArrayView<float>,
                ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, Args>(BackwardInputKernel));
            k(WarpRows.Config(device, rows), dy, x, gamma, mean, rstd, dx, args);
        }
        if (dGamma.Length != 0 || dBeta.Length != 0)
        {
            var k = device.Kernel("LayerNorm.BackwardParams", acc => acc.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>,
                ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, Args>(BackwardParamsKernel));
            k(dim, dy, x, mean, rstd, dGamma, dBeta, args);
        }
    }
}
