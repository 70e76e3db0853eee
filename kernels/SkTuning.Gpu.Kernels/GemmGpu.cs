using System.Reflection;
using ILGPU;
using ILGPU.Runtime;
using SkTuning.Gpu.Kernels.Gpu;

namespace SkTuning.Gpu.Kernels;

/// <summary>Scalar arguments of <see cref="GemmGpu"/>'s kernel.</summary>
/// <param name="M">Rows of C.</param>
/// <param name="N">Columns of C.</param>
/// <param name="K">Inner dimension.</param>
/// <param name="TransA">0: A stored [M,K]; 1: A stored [K,M] (TN).</param>
/// <param name="TransB">0: B stored [K,N]; 1: B stored [N,K] (NT).</param>
/// <param name="Accumulate">1: C += product; 0: C = product.</param>
/// <param name="HasBias">1: add bias[N] to every row.</param>
/// <param name="Epilogue">A <see cref="GemmEpilogue"/> applied to each element before it is stored.</param>
public readonly record struct GemmParams(int M, int N, int K, int TransA, int TransB, int Accumulate, int HasBias, int Epilogue = 0);

/// <summary>
/// ILGPU version of <see cref="Gemm"/>: one explicitly grouped, shared-memory tiled kernel serves NN, NT and TN
/// (the transposes are handled in the tile loads). Each group of 16×16 threads computes a 64×64 tile of C,
/// stepping through K 16 at a time; each thread accumulates a 4×4 micro-tile in registers (rows ty+16i,
/// columns tx+16j, so loads and stores of C coalesce).
/// </summary>
public static class GemmGpu
{
    private const int BM = 64, BN = 64, BK = 16, TX = 16, TY = 16, Threads = TX * TY;
    // Shared tiles are stored k-major with one float of padding per row to avoid bank conflicts on the transposing stores.
    private const int LDS = 65;

    /// <summary>The kernel method, for PTX compilation checks.</summary>
    internal static MethodInfo KernelMethod =>
        typeof(GemmGpu).GetMethod(nameof(Kernel), BindingFlags.NonPublic | BindingFlags.Static)!;

    /// <summary>C[M,N] = A[M,K]·B[K,N] (+ bias[N]; empty view = none), or C += … with <paramref name="accumulate"/>.</summary>
    public static void NN(GpuDevice device, int m, int n, int k, ArrayView<float> a, ArrayView<float> b, ArrayView<float> c,
        ArrayView<float> bias = default, bool accumulate = false, GemmEpilogue epilogue = GemmEpilogue.None, ArrayView<float> aux = default) =>
        Launch("GemmGpu.NN", device, m, n, k, a, b, c, bias, accumulate, 0, 0, "m*k", "k*n", epilogue, aux);

    /// <summary>C[M,N] = A[M,K]·B[N,K]ᵀ (+ bias[N]; empty view = none), or C += … with <paramref name="accumulate"/>.</summary>
    public static void NT(GpuDevice device, int m, int n, int k, ArrayView<float> a, ArrayView<float> b, ArrayView<float> c,
        ArrayView<float> bias = default, bool accumulate = false, GemmEpilogue epilogue = GemmEpilogue.None, ArrayView<float> aux = default) =>
        Launch("GemmGpu.NT", device, m, n, k, a, b, c, bias, accumulate, 0, 1, "m*k", "n*k", epilogue, aux);

    /// <summary>C[M,N] = A[K,M]ᵀ·B[K,N] (+ bias[N]; empty view = none), or C += … with <paramref name="accumulate"/>.</summary>
    public static void TN(GpuDevice device, int m, int n, int k, ArrayView<float> a, ArrayView<float> b, ArrayView<float> c,
        ArrayView<float> bias = default, bool accumulate = false) =>
        Launch("GemmGpu.TN", device, m, n, k, a, b, c, bias, accumulate, 1, 0, "k*m", "k*n");

    private static void Launch(string op, GpuDevice device, int m, int n, int k, ArrayView<float> a, ArrayView<float> b,
        ArrayView<float> c, ArrayView<float> bias, bool accumulate, int transA, int transB, string aShape, string bShape,
        GemmEpilogue epilogue = GemmEpilogue.None, ArrayView<float> aux = default)
    {
        Gemm.Check(op, m, n, k, Len(a), Len(b), Len(c), Len(bias), aShape, bShape);
        Gemm.CheckEpilogue(op, m, n, epilogue, Len(aux), accumulate);
        if (m == 0 || n == 0) return;
        var kernel = device.Kernel("Gemm.Tiled64x64x16", acc =>
            acc.LoadStreamKernel<GemmParams, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>>(Kernel));
        bool hasBias = bias.Length > 0;
        var config = new KernelConfig(new Index2D((n + BN - 1) / BN, (m + BM - 1) / BM), new Index2D(TX, TY));
        // Without bias (or epilogue operand) the kernel never reads that view; pass C so the launch gets a valid buffer.
        kernel(config, new GemmParams(m, n, k, transA, transB, accumulate ? 1 : 0, hasBias ? 1 : 0, (int)epilogue),
            a, b, c, hasBias ? bias : c, epilogue == GemmEpilogue.None ? c : aux);
    }

    private static int Len(ArrayView<float> v) => v.Length > int.MaxValue ? int.MaxValue : (int)v.Length;

    private static void Kernel(GemmParams p, ArrayView<float> a, ArrayView<float> b, ArrayView<float> c, ArrayView<float> bias, ArrayView<float> aux)
    {
        var As = SharedMemory.Allocate<float>(BK * LDS);
        var Bs = SharedMemory.Allocate<float>(BK * LDS);
        int tx = Group.IdxX, ty = Group.IdxY, t = ty * TX + tx;
        int row0 = Grid.IdxY * BM, col0 = Grid.IdxX * BN;

        float c00 = 0, c01 = 0, c02 = 0, c03 = 0, c10 = 0, c11 = 0, c12 = 0, c13 = 0;
        float c20 = 0, c21 = 0, c22 = 0, c23 = 0, c30 = 0, c31 = 0, c32 = 0, c33 = 0;

        for (int k0 = 0; k0 < p.K; k0 += BK)
        {
            for (int l = 0; l < BM * BK / Threads; l++)
            {
                int e = t + Threads * l;
                // A tile: consecutive threads walk the contiguous dimension of A in global memory.
                int r, kk;
                if (p.TransA == 0) { r = e / BK; kk = e % BK; }
                else { kk = e / BM; r = e % BM; }
                int gi = row0 + r, gk = k0 + kk;
                float v = 0;
                if (gi < p.M && gk < p.K)
                    v = p.TransA == 0 ? a[(long)gi * p.K + gk] : a[(long)gk * p.M + gi];
                As[kk * LDS + r] = v;

                int cc;
                if (p.TransB == 0) { kk = e / BN; cc = e % BN; }
                else { cc = e / BK; kk = e % BK; }
                int gj = col0 + cc;
                gk = k0 + kk;
                float w = 0;
                if (gj < p.N && gk < p.K)
                    w = p.TransB == 0 ? b[(long)gk * p.N + gj] : b[(long)gj * p.K + gk];
                Bs[kk * LDS + cc] = w;
            }
            Group.Barrier();
            for (int kk = 0; kk < BK; kk++)
            {
                int ao = kk * LDS + ty, bo = kk * LDS + tx;
                float a0 = As[ao], a1 = As[ao + 16], a2 = As[ao + 32], a3 = As[ao + 48];
                float b0 = Bs[bo], b1 = Bs[bo + 16], b2 = Bs[bo + 32], b3 = Bs[bo + 48];
                c00 += a0 * b0; c01 += a0 * b1; c02 += a0 * b2; c03 += a0 * b3;
                c10 += a1 * b0; c11 += a1 * b1; c12 += a1 * b2; c13 += a1 * b3;
                c20 += a2 * b0; c21 += a2 * b1; c22 += a2 * b2; c23 += a2 * b3;
                c30 += a3 * b0; c31 += a3 * b1; c32 += a3 * b2; c33 += a3 * b3;
            }
            Group.Barrier();
        }

        int i0 = row0 + ty, j0 = col0 + tx;
        Store(p, c, bias, aux, i0, j0, c00); Store(p, c, bias, aux, i0, j0 + 16, c01); Store(p, c, bias, aux, i0, j0 + 32, c02); Store(p, c, bias, aux, i0, j0 + 48, c03);
        Store(p, c, bias, aux, i0 + 16, j0, c10); Store(p, c, bias, aux, i0 + 16, j0 + 16, c11); Store(p, c, bias, aux, i0 + 16, j0 + 32, c12); Store(p, c, bias, aux, i0 + 16, j0 + 48, c13);
        Store(p, c, bias, aux, i0 + 32, j0, c20); Store(p, c, bias, aux, i0 + 32, j0 + 16, c21); Store(p, c, bias, aux, i0 + 32, j0 + 32, c22); Store(p, c, bias, aux, i0 + 32, j0 + 48, c23);
        Store(p, c, bias, aux, i0 + 48, j0, c30); Store(p, c, bias, aux, i0 + 48, j0 + 16, c31); Store(p, c, bias, aux, i0 + 48, j0 + 32, c32); Store(p, c, bias, aux, i0 + 48, j0 + 48, c33);
    }

    private static void Store(GemmParams p, ArrayView<float> c, ArrayView<float> bias, ArrayView<float> aux, int i, int j, float v)
    {
        if (i >= p.M || j >= p.N) return;
        if (p.HasBias != 0) v += bias[j];
        long o = (long)i * p.N + j;
        if (p.Epilogue == (int)GemmEpilogue.Gelu)
        {
            aux[o] = v;
            v = Gelu.Value(v);
        }
        else if (p.Epilogue == (int)GemmEpilogue.GeluSlope) v *= Gelu.Derivative(aux[o]);
        c[o] = p.Accumulate != 0 ? c[o] + v : v;
    }
}
