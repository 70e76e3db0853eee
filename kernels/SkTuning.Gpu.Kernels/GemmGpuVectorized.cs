using System.Runtime.CompilerServices;
using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Runtime;
using SkTuning.Gpu.Kernels.Gpu;

namespace SkTuning.Gpu.Kernels;

/// <summary>
/// The second GEMM tier (<see cref="GemmTier.Vectorized128"/>, <see cref="GemmTier.SplitK"/>): a group of 256 threads
/// computes a 128×128 tile of C stepping through K 8 at a time, each thread an 8×8 micro-tile (rows ty·4+r and 64+ty·4+r,
/// columns tx·4+j and 64+tx·4+j, so every shared read and C write is a float4 and a quarter-warp's float4s are contiguous).
/// Operands are read from global memory as float4 (<see cref="Float4"/>: <c>ld.global.v4.f32</c>); the shared tiles are
/// double-buffered: while the group multiplies tile k out of one stage, each thread holds its float4 of tile k+1 in
/// registers and writes it into the other stage afterwards, so one barrier per tile suffices and the global loads' latency
/// hides behind 8×64 FMAs. Edge tiles load zeros; a float4 is wholly inside or outside because the contiguous dimensions are
/// multiples of 4 (<see cref="GemmGpu.Plan"/> checks it). Split-K (<see cref="SplitKKernel"/>), one launch: grid.z splits K
/// into chunks, each block writes its partial tile to a workspace plane and counts its arrival on the tile's counter; the
/// last block of a tile to arrive adds the planes in order z = 0, 1, … (the atomics only count and read: the result does not
/// depend on arrival order and is identical run to run).
/// </summary>
internal static class GemmGpuVectorized
{
    /// <summary>Tile rows, columns and depth; threads per group.</summary>
    internal const int BM = 128, BN = 128, BK = 8, Threads = 256;
    /// <summary>
    /// Shared row length in floats: 4 floats of padding make the transposing scalar stores of k-contiguous operands hit 32
    /// distinct banks and keep rows 16-byte aligned for the float4 reads.
    /// </summary>
    internal const int LDS = BM + 4, LDS4 = LDS / 4;

    /// <summary>Grid (⌈N/128⌉, ⌈M/128⌉), 256 threads: C = A·B (+ bias; or C += …; then the epilogue) over the whole of K.</summary>
    internal static void Kernel(GemmParams p, ArrayView<float> a, ArrayView<float> b, ArrayView<float> c, ArrayView<float> bias,
        ArrayView<float> aux) =>
        Tile(p, p.K, a, b, c, bias, aux, c, default, split: false);

    /// <summary>
    /// Grid (⌈N/128⌉, ⌈M/128⌉, splits), 256 threads: split z multiplies K range [z·kChunk, (z+1)·kChunk) into plane z of
    /// <paramref name="partials"/> ([splits, M, N]); the tile's last split to arrive on <paramref name="arrivals"/>[tile]
    /// (one count per tile, zero between launches) writes C (bias, accumulate and epilogue applied to the sum) and zeroes the count.
    /// </summary>
    internal static void SplitKKernel(GemmParams p, int kChunk, ArrayView<float> a, ArrayView<float> b, ArrayView<float> c,
        ArrayView<float> bias, ArrayView<float> aux, ArrayView<float> partials, ArrayView<int> arrivals) =>
        Tile(p, kChunk, a, b, c, bias, aux, partials, arrivals, split: true);

    /// <summary>The body of both kernels (inlined into each: <paramref name="split"/> is a constant there).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Tile(GemmParams p, int kChunk, ArrayView<float> a, ArrayView<float> b, ArrayView<float> c, ArrayView<float> bias,
        ArrayView<float> aux, ArrayView<float> partials, ArrayView<int> arrivals, bool split)
    {
        var As = SharedMemory.Allocate<Float4>(2 * BK * LDS4);
        var Bs = SharedMemory.Allocate<Float4>(2 * BK * LDS4);
        var a4 = a.Cast<Float4>();
        var b4 = b.Cast<Float4>();
        var c4 = c.Cast<Float4>();
        int t = Group.IdxX, tx = t % 16, ty = t / 16;
        int row0 = Grid.IdxY * BM, col0 = Grid.IdxX * BN;
        int kBegin = Grid.IdxZ * kChunk, kEnd = XMath.Min(p.K, kBegin + kChunk);
        int tiles = (kEnd - kBegin + BK - 1) / BK;

        Float4 ra = LoadA(p, a4, row0, kBegin, kEnd, t), rb = LoadB(p, b4, col0, kBegin, kEnd, t);
        StoreTile(As, 0, p.TransA == 0, ra, t);
        StoreTile(Bs, 0, p.TransB != 0, rb, t);
        Group.Barrier();

        Float4 acc0L = default, acc0R = default, acc1L = default, acc1R = default, acc2L = default, acc2R = default, acc3L = default, acc3R = default;
        Float4 acc4L = default, acc4R = default, acc5L = default, acc5R = default, acc6L = default, acc6R = default, acc7L = default, acc7R = default;
        for (int tile = 0; tile < tiles; tile++)
        {
            int stage = tile & 1;
            bool more = tile + 1 < tiles;
            if (more)
            {
                int k0 = kBegin + (tile + 1) * BK;
                ra = LoadA(p, a4, row0, k0, kEnd, t);
                rb = LoadB(p, b4, col0, k0, kEnd, t);
            }
            int s0 = stage * BK * LDS4;
            for (int kk = 0; kk < BK; kk++)
            {
                int o = s0 + kk * LDS4;
                Float4 a0 = As[o + ty], a1 = As[o + 16 + ty], b0 = Bs[o + tx], b1 = Bs[o + 16 + tx];
                acc0L = Float4.MultiplyAdd(acc0L, a0.X, b0); acc0R = Float4.MultiplyAdd(acc0R, a0.X, b1);
                acc1L = Float4.MultiplyAdd(acc1L, a0.Y, b0); acc1R = Float4.MultiplyAdd(acc1R, a0.Y, b1);
                acc2L = Float4.MultiplyAdd(acc2L, a0.Z, b0); acc2R = Float4.MultiplyAdd(acc2R, a0.Z, b1);
                acc3L = Float4.MultiplyAdd(acc3L, a0.W, b0); acc3R = Float4.MultiplyAdd(acc3R, a0.W, b1);
                acc4L = Float4.MultiplyAdd(acc4L, a1.X, b0); acc4R = Float4.MultiplyAdd(acc4R, a1.X, b1);
                acc5L = Float4.MultiplyAdd(acc5L, a1.Y, b0); acc5R = Float4.MultiplyAdd(acc5R, a1.Y, b1);
                acc6L = Float4.MultiplyAdd(acc6L, a1.Z, b0); acc6R = Float4.MultiplyAdd(acc6R, a1.Z, b1);
                acc7L = Float4.MultiplyAdd(acc7L, a1.W, b0); acc7R = Float4.MultiplyAdd(acc7R, a1.W, b1);
            }
            if (more)
            {
                StoreTile(As, stage ^ 1, p.TransA == 0, ra, t);
                StoreTile(Bs, stage ^ 1, p.TransB != 0, rb, t);
            }
            Group.Barrier();
        }

        int i0 = row0 + ty * 4, j0 = col0 + tx * 4;
        if (split)
        {
            var w4 = partials.Cast<Float4>();
            long plane = (long)Grid.IdxZ * p.M * p.N;
            Store(p, w4, bias, aux, plane, i0 + 0, j0, acc0L, acc0R, partial: true);
            Store(p, w4, bias, aux, plane, i0 + 1, j0, acc1L, acc1R, partial: true);
            Store(p, w4, bias, aux, plane, i0 + 2, j0, acc2L, acc2R, partial: true);
            Store(p, w4, bias, aux, plane, i0 + 3, j0, acc3L, acc3R, partial: true);
            Store(p, w4, bias, aux, plane, i0 + 64, j0, acc4L, acc4R, partial: true);
            Store(p, w4, bias, aux, plane, i0 + 65, j0, acc5L, acc5R, partial: true);
            Store(p, w4, bias, aux, plane, i0 + 66, j0, acc6L, acc6R, partial: true);
            Store(p, w4, bias, aux, plane, i0 + 67, j0, acc7L, acc7R, partial: true);
            MemoryFence.DeviceLevel();   // this block's partials are visible before its arrival is
            Group.Barrier();
            int tileIndex = Grid.IdxY * Grid.DimX + Grid.IdxX;
            int arrived = t == 0 ? Atomic.Add(ref arrivals[tileIndex], 1) + 1 : 0;
            if (!Group.BarrierOr(arrived == Grid.DimZ)) return;
            if (t == 0) arrivals[tileIndex] = 0;   // every split of the tile has arrived: the count is free for the next launch
            // The last block reduces the same elements it computed, so each thread's own plane comes from its registers.
            acc0L = SumPlanes(p, partials, i0 + 0, j0, acc0L); acc0R = SumPlanes(p, partials, i0 + 0, j0 + 64, acc0R);
            acc1L = SumPlanes(p, partials, i0 + 1, j0, acc1L); acc1R = SumPlanes(p, partials, i0 + 1, j0 + 64, acc1R);
            acc2L = SumPlanes(p, partials, i0 + 2, j0, acc2L); acc2R = SumPlanes(p, partials, i0 + 2, j0 + 64, acc2R);
            acc3L = SumPlanes(p, partials, i0 + 3, j0, acc3L); acc3R = SumPlanes(p, partials, i0 + 3, j0 + 64, acc3R);
            acc4L = SumPlanes(p, partials, i0 + 64, j0, acc4L); acc4R = SumPlanes(p, partials, i0 + 64, j0 + 64, acc4R);
            acc5L = SumPlanes(p, partials, i0 + 65, j0, acc5L); acc5R = SumPlanes(p, partials, i0 + 65, j0 + 64, acc5R);
            acc6L = SumPlanes(p, partials, i0 + 66, j0, acc6L); acc6R = SumPlanes(p, partials, i0 + 66, j0 + 64, acc6R);
            acc7L = SumPlanes(p, partials, i0 + 67, j0, acc7L); acc7R = SumPlanes(p, partials, i0 + 67, j0 + 64, acc7R);
        }
        Store(p, c4, bias, aux, 0, i0 + 0, j0, acc0L, acc0R, partial: false);
        Store(p, c4, bias, aux, 0, i0 + 1, j0, acc1L, acc1R, partial: false);
        Store(p, c4, bias, aux, 0, i0 + 2, j0, acc2L, acc2R, partial: false);
        Store(p, c4, bias, aux, 0, i0 + 3, j0, acc3L, acc3R, partial: false);
        Store(p, c4, bias, aux, 0, i0 + 64, j0, acc4L, acc4R, partial: false);
        Store(p, c4, bias, aux, 0, i0 + 65, j0, acc5L, acc5R, partial: false);
        Store(p, c4, bias, aux, 0, i0 + 66, j0, acc6L, acc6R, partial: false);
        Store(p, c4, bias, aux, 0, i0 + 67, j0, acc7L, acc7R, partial: false);
    }

    /// <summary>
    /// The float4 at (i, j) summed over the split planes in order z = 0, 1, …: this block's plane is <paramref name="own"/>
    /// (its registers hold what it stored), the others are read with atomic adds of 0, which come from L2 and never from a
    /// stale L1 line. Outside C: <paramref name="own"/> unchanged (the store skips it).
    /// </summary>
    private static Float4 SumPlanes(GemmParams p, ArrayView<float> partials, int i, int j, Float4 own)
    {
        if (i >= p.M || j >= p.N) return own;
        long plane = (long)p.M * p.N, o = (long)i * p.N + j;
        int mine = Grid.IdxZ;
        Float4 s = mine == 0 ? own : ReadThroughL2(partials, o);
        for (int z = 1; z < Grid.DimZ; z++) s = Float4.Add(s, z == mine ? own : ReadThroughL2(partials, z * plane + o));
        return s;
    }

    private static Float4 ReadThroughL2(ArrayView<float> v, long o) =>
        new(Atomic.Add(ref v[o], 0f), Atomic.Add(ref v[o + 1], 0f), Atomic.Add(ref v[o + 2], 0f), Atomic.Add(ref v[o + 3], 0f));

    /// <summary>This thread's float4 of the A tile at k0: NN reads 4 k's of row t/2, TN 4 rows of k-row t/32 (zeros outside).</summary>
    private static Float4 LoadA(GemmParams p, ArrayView<Float4> a4, int row0, int k0, int kEnd, int t)
    {
        if (p.TransA == 0)
        {
            int gi = row0 + (t >> 1), gk = k0 + (t & 1) * 4;
            return gi < p.M && gk < kEnd ? a4[((long)gi * p.K + gk) >> 2] : default;
        }
        int gk2 = k0 + (t >> 5), gi2 = row0 + (t & 31) * 4;
        return gk2 < kEnd && gi2 < p.M ? a4[((long)gk2 * p.M + gi2) >> 2] : default;
    }

    /// <summary>This thread's float4 of the B tile at k0: NN reads 4 columns of k-row t/32, NT 4 k's of row t/2 (zeros outside).</summary>
    private static Float4 LoadB(GemmParams p, ArrayView<Float4> b4, int col0, int k0, int kEnd, int t)
    {
        if (p.TransB == 0)
        {
            int gk = k0 + (t >> 5), gj = col0 + (t & 31) * 4;
            return gk < kEnd && gj < p.N ? b4[((long)gk * p.N + gj) >> 2] : default;
        }
        int gj2 = col0 + (t >> 1), gk2 = k0 + (t & 1) * 4;
        return gj2 < p.N && gk2 < kEnd ? b4[((long)gj2 * p.K + gk2) >> 2] : default;
    }

    /// <summary>
    /// Writes a thread's float4 into a k-major shared stage: k-contiguous operands (A in NN, B in NT) are transposed with
    /// four scalar stores, the others go in as one float4.
    /// </summary>
    private static void StoreTile(ArrayView<Float4> tile, int stage, bool kContiguous, Float4 v, int t)
    {
        int s0 = stage * BK * LDS4;
        if (kContiguous)
        {
            var f = tile.Cast<float>();
            int r = t >> 1, o = s0 * 4 + (t & 1) * 4 * LDS + r;
            f[o] = v.X;
            f[o + LDS] = v.Y;
            f[o + 2 * LDS] = v.Z;
            f[o + 3 * LDS] = v.W;
        }
        else
        {
            tile[s0 + (t >> 5) * LDS4 + (t & 31)] = v;
        }
    }

    /// <summary>
    /// Row i of the micro-tile: columns j0..j0+3 and j0+64..j0+67 of plane cBase; a split's partial product as it is, C
    /// with bias, accumulate and epilogue as asked.
    /// </summary>
    private static void Store(GemmParams p, ArrayView<Float4> c4, ArrayView<float> bias, ArrayView<float> aux, long cBase, int i, int j0,
        Float4 left, Float4 right, bool partial)
    {
        if (i >= p.M) return;
        StoreFloat4(p, c4, bias, aux, cBase + (long)i * p.N, j0, left, partial);
        StoreFloat4(p, c4, bias, aux, cBase + (long)i * p.N, j0 + 64, right, partial);
    }

    private static void StoreFloat4(GemmParams p, ArrayView<Float4> c4, ArrayView<float> bias, ArrayView<float> aux, long rowBase, int j,
        Float4 v, bool partial)
    {
        if (j >= p.N) return;
        long o = (rowBase + j) >> 2;
        if (partial)
        {
            c4[o] = v;
            return;
        }
        if (p.HasBias != 0) v = Float4.Add(v, Float4.Load(bias, j));
        if (p.Epilogue != (int)GemmEpilogue.None)
        {
            long e = rowBase + j;
            v = new Float4(GemmEpilogueStore.Apply(p, aux, e, v.X), GemmEpilogueStore.Apply(p, aux, e + 1, v.Y),
                GemmEpilogueStore.Apply(p, aux, e + 2, v.Z), GemmEpilogueStore.Apply(p, aux, e + 3, v.W));
        }
        c4[o] = p.Accumulate != 0 ? Float4.Add(c4[o], v) : v;
    }
}
