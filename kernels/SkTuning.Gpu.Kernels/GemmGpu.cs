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

/// <summary>Which GEMM kernel a launch uses (see <see cref="GemmGpu.Plan"/>).</summary>
public enum GemmTier
{
    /// <summary>Pick by shape and alignment (<see cref="GemmGpu.Plan"/>).</summary>
    Auto,
    /// <summary>The first tier and reference: 64×64×16 tiles, 4×4 per thread, scalar loads, one shared buffer; any shape.</summary>
    Tiled64,
    /// <summary>128×128×8 tiles, 8×8 per thread, float4 loads, double-buffered shared tiles (needs aligned, multiple-of-4 rows).</summary>
    Vectorized128,
    /// <summary>
    /// <see cref="Vectorized128"/> over K chunks into a workspace, reduced in split order by each tile's last chunk to finish
    /// (one launch; deterministic).
    /// </summary>
    SplitK,
}

/// <summary>
/// ILGPU GEMM in two tiers, kept side by side (llm.c style) so each is tested against the same fp64 reference:
/// <see cref="GemmTier.Tiled64"/> (below) and <see cref="GemmGpuVectorized"/>. Both serve NN, NT and TN (the transposes
/// are handled in the tile loads), bias, accumulate and the <see cref="GemmEpilogue"/> (<see cref="GemmEpilogueStore"/>).
/// The first tier: each group of 16×16 threads computes a 64×64 tile of C,
/// stepping through K 16 at a time; each thread accumulates a 4×4 micro-tile in registers (rows ty+16i,
/// columns tx+16j, so loads and stores of C coalesce).
/// </summary>
public static class GemmGpu
{
    private const int BM = 64, BN = 64, BK = 16, TX = 16, TY = 16, Threads = TX * TY;
    // Shared tiles are stored k-major with one float of padding per row to avoid bank conflicts on the transposing stores.
    private const int LDS = 65;
    /// <summary>Smallest K chunk of a split: below it the partial planes cost more traffic than the split gains.</summary>
    private const int MinSplitDepth = 256;

    /// <summary>The kernel method, for PTX compilation checks.</summary>
    internal static MethodInfo KernelMethod =>
        typeof(GemmGpu).GetMethod(nameof(Kernel), BindingFlags.NonPublic | BindingFlags.Static)!;

    /// <summary>C[M,N] = A[M,K]·B[K,N] (+ bias[N]; empty view = none), or C += … with <paramref name="accumulate"/>.</summary>
    public static void NN(GpuDevice device, int m, int n, int k, ArrayView<float> a, ArrayView<float> b, ArrayView<float> c,
        ArrayView<float> bias = default, bool accumulate = false, GemmTier tier = GemmTier.Auto,
        GemmEpilogue epilogue = GemmEpilogue.None, ArrayView<float> aux = default) =>
        Launch("GemmGpu.NN", device, m, n, k, a, b, c, bias, accumulate, 0, 0, "m*k", "k*n", tier, epilogue: epilogue, aux: aux);

    /// <summary>C[M,N] = A[M,K]·B[N,K]ᵀ (+ bias[N]; empty view = none), or C += … with <paramref name="accumulate"/>.</summary>
    public static void NT(GpuDevice device, int m, int n, int k, ArrayView<float> a, ArrayView<float> b, ArrayView<float> c,
        ArrayView<float> bias = default, bool accumulate = false, GemmTier tier = GemmTier.Auto,
        GemmEpilogue epilogue = GemmEpilogue.None, ArrayView<float> aux = default) =>
        Launch("GemmGpu.NT", device, m, n, k, a, b, c, bias, accumulate, 0, 1, "m*k", "n*k", tier, epilogue: epilogue, aux: aux);

    /// <summary>C[M,N] = A[K,M]ᵀ·B[K,N] (+ bias[N]; empty view = none), or C += … with <paramref name="accumulate"/>.</summary>
    public static void TN(GpuDevice device, int m, int n, int k, ArrayView<float> a, ArrayView<float> b, ArrayView<float> c,
        ArrayView<float> bias = default, bool accumulate = false, GemmTier tier = GemmTier.Auto) =>
        Launch("GemmGpu.TN", device, m, n, k, a, b, c, bias, accumulate, 1, 0, "k*m", "k*n", tier);

    /// <summary>
    /// Split-K with exactly <paramref name="splits"/> K chunks (tests: the in-order reduction over more than two planes);
    /// <paramref name="transA"/>/<paramref name="transB"/> select TN/NT as in <see cref="Plan"/>.
    /// </summary>
    /// <returns>The splits launched (fewer than asked when chunks rounded up to 8 cover K sooner).</returns>
    internal static int SplitK(GpuDevice device, int m, int n, int k, bool transA, bool transB, ArrayView<float> a,
        ArrayView<float> b, ArrayView<float> c, ArrayView<float> bias, bool accumulate, int splits) =>
        Launch("GemmGpu.SplitK", device, m, n, k, a, b, c, bias, accumulate, transA ? 1 : 0, transB ? 1 : 0,
            transA ? "k*m" : "m*k", transB ? "n*k" : "k*n", GemmTier.SplitK, splits);

    /// <summary>
    /// The kernel a launch of this shape uses, and its K splits. <see cref="GemmTier.Auto"/>: the vectorised tier when the
    /// operands allow float4 access (16-byte aligned views; A's, B's and C's contiguous dimensions multiples of 4; K &gt; 0)
    /// and its 128×128 tiles fill the SMs; split-K when they do not but K is deep (dW = Xᵀ·dY with N = 384: ⌈SMs/tiles⌉
    /// splits of at least 256); else the 64×64 tier (4× the groups of the vectorised tier for small outputs).
    /// A forced tier is checked: <see cref="GemmTier.Vectorized128"/> and <see cref="GemmTier.SplitK"/> throw when the
    /// operands do not allow them.
    /// </summary>
    /// <exception cref="ArgumentException">A forced tier the operands do not allow.</exception>
    public static (GemmTier Tier, int Splits) Plan(GpuDevice device, int m, int n, int k, bool transA, bool transB,
        ArrayView<float> a, ArrayView<float> b, ArrayView<float> c, GemmTier tier = GemmTier.Auto) =>
        PlanFor(device.PlannedMultiprocessors, m, n, k, transA, transB,
            Float4.IsAligned(a) && Float4.IsAligned(b) && Float4.IsAligned(c), tier);

    /// <summary><see cref="Plan"/> for a device of <paramref name="multiprocessors"/> SMs.</summary>
    internal static (GemmTier Tier, int Splits) PlanFor(int multiprocessors, int m, int n, int k, bool transA, bool transB,
        bool viewsAligned, GemmTier tier)
    {
        string? why = k == 0 ? "K = 0"
            : (transA ? m : k) % 4 != 0 ? $"A's rows ({(transA ? "m" : "k")} = {(transA ? m : k)}) are not a multiple of 4 floats"
            : (transB ? k : n) % 4 != 0 ? $"B's rows ({(transB ? "k" : "n")} = {(transB ? k : n)}) are not a multiple of 4 floats"
            : n % 4 != 0 ? $"C's rows (n = {n}) are not a multiple of 4 floats"
            : !viewsAligned ? "an operand view is not 16-byte aligned"
            : null;
        int maxSplits = (k + GemmGpuVectorized.BK - 1) / GemmGpuVectorized.BK;
        int tiles = Math.Max(1, VectorizedTiles(m, n));
        int autoSplits = Math.Min((multiprocessors + tiles - 1) / tiles, k / MinSplitDepth);
        switch (tier)
        {
            case GemmTier.Tiled64: return (tier, 1);
            case GemmTier.Vectorized128 when why is null: return (tier, 1);
            case GemmTier.SplitK when why is null && maxSplits >= 2: return (tier, Math.Clamp(autoSplits, 2, maxSplits));
            case GemmTier.Vectorized128:
            case GemmTier.SplitK:
                throw new ArgumentException($"GemmGpu: tier {tier} cannot run {m}x{n}x{k}: {why ?? "K has fewer than 2 tiles of 8"}");
        }
        if (why is not null) return (GemmTier.Tiled64, 1);
        if (tiles >= multiprocessors) return (GemmTier.Vectorized128, 1);
        return autoSplits >= 2 ? (GemmTier.SplitK, autoSplits) : (GemmTier.Tiled64, 1);
    }

    private static int VectorizedTiles(int m, int n) =>
        ((m + GemmGpuVectorized.BM - 1) / GemmGpuVectorized.BM) * ((n + GemmGpuVectorized.BN - 1) / GemmGpuVectorized.BN);

    /// <returns>The K splits launched (1 unless split-K).</returns>
    private static int Launch(string op, GpuDevice device, int m, int n, int k, ArrayView<float> a, ArrayView<float> b,
        ArrayView<float> c, ArrayView<float> bias, bool accumulate, int transA, int transB, string aShape, string bShape, GemmTier tier,
        int forcedSplits = 0, GemmEpilogue epilogue = GemmEpilogue.None, ArrayView<float> aux = default)
    {
        Gemm.Check(op, m, n, k, Len(a), Len(b), Len(c), Len(bias), aShape, bShape);
        Gemm.CheckEpilogue(op, m, n, epilogue, Len(aux), accumulate);
        if (m == 0 || n == 0) return 0;
        var (chosen, splits) = Plan(device, m, n, k, transA != 0, transB != 0, a, b, c, tier);
        if (chosen == GemmTier.SplitK && forcedSplits > 0) splits = forcedSplits;
        bool hasBias = bias.Length > 0;
        var p = new GemmParams(m, n, k, transA, transB, accumulate ? 1 : 0, hasBias ? 1 : 0, (int)epilogue);
        // Without bias (or epilogue operand) the kernels never read that view; pass C so the launch gets a valid buffer.
        var biasOrC = hasBias ? bias : c;
        var auxOrC = epilogue == GemmEpilogue.None ? c : aux;
        if (chosen == GemmTier.Tiled64)
        {
            var kernel = device.Kernel("Gemm.Tiled64x64x16", acc =>
                acc.LoadStreamKernel<GemmParams, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>>(Kernel));
            kernel(new KernelConfig(new Index2D((n + BN - 1) / BN, (m + BM - 1) / BM), new Index2D(TX, TY)), p, a, b, c, biasOrC, auxOrC);
            return 1;
        }
        int bk = GemmGpuVectorized.BK, chunk = ((k + splits - 1) / splits + bk - 1) / bk * bk;
        splits = (k + chunk - 1) / chunk;
        var grid = new Index3D((n + GemmGpuVectorized.BN - 1) / GemmGpuVectorized.BN, (m + GemmGpuVectorized.BM - 1) / GemmGpuVectorized.BM, splits);
        var config = new KernelConfig(grid, new Index3D(GemmGpuVectorized.Threads, 1, 1));
        if (splits == 1)
        {
            var vectorized = device.Kernel("Gemm.Vectorized128x128x8", acc =>
                acc.LoadStreamKernel<GemmParams, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>>(GemmGpuVectorized.Kernel));
            vectorized(config, p, a, b, c, biasOrC, auxOrC);
            return 1;
        }
        // One launch: the partial planes, then the in-order reduction by each tile's last split to arrive.
        var splitK = device.Kernel("Gemm.SplitK128x128x8", acc => acc.LoadStreamKernel<GemmParams, int, ArrayView<float>, ArrayView<float>,
            ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<int>>(GemmGpuVectorized.SplitKKernel));
        splitK(config, p, chunk, a, b, c, biasOrC, auxOrC, device.Workspace("Gemm.SplitK", (long)splits * m * n),
            device.ArrivalCounts("Gemm.SplitK", grid.X * grid.Y));
        return splits;
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
        v = GemmEpilogueStore.Apply(p, aux, o, v);
        c[o] = p.Accumulate != 0 ? c[o] + v : v;
    }
}
