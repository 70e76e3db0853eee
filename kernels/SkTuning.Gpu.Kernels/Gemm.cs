using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace SkTuning.Gpu.Kernels;

/// <summary>
/// Dense matrix products on row-major, contiguous float32 matrices, in the three forms a transformer needs:
/// <list type="bullet">
/// <item><description><see cref="NN"/>: C[M,N] = A[M,K] · B[K,N] (+ bias) — forward, weight stored [in, out].</description></item>
/// <item><description><see cref="NT"/>: C[M,N] = A[M,K] · B[N,K]ᵀ — backward to inputs, dX = dY · Wᵀ.</description></item>
/// <item><description><see cref="TN"/>: C[M,N] = A[K,M]ᵀ · B[K,N] — weight gradients, dW = Xᵀ · dY.</description></item>
/// </list>
/// Three versions side by side: fp64 references (<c>…Reference</c>), a fast CPU path (register-blocked
/// <see cref="Vector512{T}"/> micro-kernel over packed panels, cache blocking over K, <see cref="Parallel"/>
/// over row/column blocks) and ILGPU kernels (see <c>GemmGpu</c>).
/// <see cref="NNBf16"/> and <see cref="NTBf16"/> take a
/// frozen weight in bf16 (<see cref="PackedBf16Matrix"/>), on one of two paths (<see cref="Bf16GemmPath"/>): the
/// <c>vdpbf16ps</c> kernel (A rounded to bf16 too, fp32 accumulation; see GemmBf16.cs) where the CPU has AVX512-BF16,
/// else the widening path: packing widens B to fp32 (exact), so the result equals the fp32 GEMM on the widened B bit for bit.
/// With <c>accumulate</c> the product (and bias) is added to C; otherwise C is overwritten.
/// </summary>
public static unsafe partial class Gemm
{
    // ---------------------------------------------------------------- fp64 references

    /// <summary>fp64 reference for <see cref="NN"/>: C = A[M,K]·B[K,N] (+ bias[N] per row), or C += … with <paramref name="accumulate"/>.</summary>
    public static void NNReference(int m, int n, int k, double[] a, double[] b, double[] c, double[]? bias = null, bool accumulate = false)
    {
        Check("Gemm.NNReference", m, n, k, a.Length, b.Length, c.Length, bias?.Length ?? 0, "m*k", "k*n");
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++)
            {
                double s = bias is { Length: > 0 } ? bias[j] : 0;
                for (int p = 0; p < k; p++) s += a[i * k + p] * b[p * n + j];
                c[i * n + j] = accumulate ? c[i * n + j] + s : s;
            }
    }

    /// <summary>fp64 reference for <see cref="NT"/>: C = A[M,K]·B[N,K]ᵀ (+ bias), or C += … with <paramref name="accumulate"/>.</summary>
    public static void NTReference(int m, int n, int k, double[] a, double[] b, double[] c, double[]? bias = null, bool accumulate = false)
    {
        Check("Gemm.NTReference", m, n, k, a.Length, b.Length, c.Length, bias?.Length ?? 0, "m*k", "n*k");
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++)
            {
                double s = bias is { Length: > 0 } ? bias[j] : 0;
                for (int p = 0; p < k; p++) s += a[i * k + p] * b[j * k + p];
                c[i * n + j] = accumulate ? c[i * n + j] + s : s;
            }
    }

    /// <summary>fp64 reference for <see cref="TN"/>: C = A[K,M]ᵀ·B[K,N] (+ bias), or C += … with <paramref name="accumulate"/>.</summary>
    public static void TNReference(int m, int n, int k, double[] a, double[] b, double[] c, double[]? bias = null, bool accumulate = false)
    {
        Check("Gemm.TNReference", m, n, k, a.Length, b.Length, c.Length, bias?.Length ?? 0, "k*m", "k*n");
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++)
            {
                double s = bias is { Length: > 0 } ? bias[j] : 0;
                for (int p = 0; p < k; p++) s += a[p * m + i] * b[p * n + j];
                c[i * n + j] = accumulate ? c[i * n + j] + s : s;
            }
    }

    // ---------------------------------------------------------------- naive baseline

    /// <summary>
    /// Deliberately naive NN baseline for benchmarks: transposes B, then one
    /// <see cref="TensorPrimitives.Dot(ReadOnlySpan{float}, ReadOnlySpan{float})"/> per output element, single-threaded.
    /// Same semantics as <see cref="NN"/>.
    /// </summary>
    public static void NNNaive(int m, int n, int k, ReadOnlySpan<float> a, ReadOnlySpan<float> b, Span<float> c,
        ReadOnlySpan<float> bias = default, bool accumulate = false)
    {
        Check("Gemm.NNNaive", m, n, k, a.Length, b.Length, c.Length, bias.Length, "m*k", "k*n");
        var bt = new float[(long)n * k];
        for (int p = 0; p < k; p++)
            for (int j = 0; j < n; j++) bt[j * k + p] = b[p * n + j];
        for (int i = 0; i < m; i++)
        {
            var row = a.Slice(i * k, k);
            for (int j = 0; j < n; j++)
            {
                float s = TensorPrimitives.Dot(row, new ReadOnlySpan<float>(bt, j * k, k));
                if (!bias.IsEmpty) s += bias[j];
                c[i * n + j] = accumulate ? c[i * n + j] + s : s;
            }
        }
    }

    /// <summary>Checks an epilogue's operand: <paramref name="aux"/> is [M,N] when there is an epilogue, which never accumulates.</summary>
    internal static void CheckEpilogue(string op, int m, int n, GemmEpilogue epilogue, int aux, bool accumulate)
    {
        if (epilogue == GemmEpilogue.None) return;
        if (accumulate) throw new ArgumentException($"{op}: the {epilogue} epilogue writes C; it does not accumulate");
        if (aux != (long)m * n) throw new ArgumentException($"{op}: the {epilogue} epilogue's operand has length {aux}, expected m*n = {m}*{n}", nameof(aux));
    }

    // ---------------------------------------------------------------- fast CPU entry points

    /// <summary>C[M,N] = A[M,K]·B[K,N] (+ <paramref name="bias"/>[N] added to every row; empty = none), or C += … with <paramref name="accumulate"/>.</summary>
    public static void NN(int m, int n, int k, ReadOnlySpan<float> a, ReadOnlySpan<float> b, Span<float> c,
        ReadOnlySpan<float> bias = default, bool accumulate = false)
    {
        Check("Gemm.NN", m, n, k, a.Length, b.Length, c.Length, bias.Length, "m*k", "k*n");
        fixed (float* pa = a) fixed (float* pb = b) fixed (float* pc = c) fixed (float* pbias = bias)
            Run(m, n, k, pa, k, 1, pb, n, 1, null, null, false, pc, pbias, accumulate);
    }

    /// <summary>C[M,N] = A[M,K]·B[N,K]ᵀ (+ <paramref name="bias"/>[N] per row; empty = none), or C += … with <paramref name="accumulate"/>.</summary>
    public static void NT(int m, int n, int k, ReadOnlySpan<float> a, ReadOnlySpan<float> b, Span<float> c,
        ReadOnlySpan<float> bias = default, bool accumulate = false)
    {
        Check("Gemm.NT", m, n, k, a.Length, b.Length, c.Length, bias.Length, "m*k", "n*k");
        fixed (float* pa = a) fixed (float* pb = b) fixed (float* pc = c) fixed (float* pbias = bias)
            Run(m, n, k, pa, k, 1, pb, 1, k, null, null, false, pc, pbias, accumulate);
    }

    /// <summary>C[M,N] = A[K,M]ᵀ·B[K,N] (+ <paramref name="bias"/>[N] per row; empty = none), or C += … with <paramref name="accumulate"/>.</summary>
    public static void TN(int m, int n, int k, ReadOnlySpan<float> a, ReadOnlySpan<float> b, Span<float> c,
        ReadOnlySpan<float> bias = default, bool accumulate = false)
    {
        Check("Gemm.TN", m, n, k, a.Length, b.Length, c.Length, bias.Length, "k*m", "k*n");
        fixed (float* pa = a) fixed (float* pb = b) fixed (float* pc = c) fixed (float* pbias = bias)
            Run(m, n, k, pa, 1, m, pb, n, 1, null, null, false, pc, pbias, accumulate);
    }

    /// <summary>
    /// <see cref="NN"/> with B = W [K,N] a frozen weight [in, out] in bf16, on <paramref name="path"/>
    /// (<see cref="Bf16GemmPath.Auto"/>: the <c>vdpbf16ps</c> kernel where available, see <see cref="DefaultBf16Path"/>).
    /// </summary>
    /// <exception cref="NotSupportedException"><see cref="Bf16GemmPath.DotProduct"/> on a machine without the kernel.</exception>
    public static void NNBf16(int m, int n, int k, ReadOnlySpan<float> a, PackedBf16Matrix w, Span<float> c,
        ReadOnlySpan<float> bias = default, bool accumulate = false, Bf16GemmPath path = Bf16GemmPath.Auto)
    {
        CheckBf16("Gemm.NNBf16", m, n, k, a.Length, w, k, n, c.Length, bias.Length);
        bool dot = UsesDotProduct(path);
        fixed (float* pa = a) fixed (float* pc = c) fixed (float* pbias = bias)
        {
            if (dot) RunDot(m, n, k, pa, w, transposed: false, pc, pbias, accumulate);
            else Run(m, n, k, pa, k, 1, null, 0, 0, w, null, false, pc, pbias, accumulate);
        }
    }

    /// <summary>
    /// <see cref="NT"/> with B = W [N,K] a frozen weight [in, out] in bf16 (dX = dY·Wᵀ), on <paramref name="path"/> as in
    /// <see cref="NNBf16"/>.
    /// </summary>
    /// <exception cref="NotSupportedException"><see cref="Bf16GemmPath.DotProduct"/> on a machine without the kernel.</exception>
    public static void NTBf16(int m, int n, int k, ReadOnlySpan<float> a, PackedBf16Matrix w, Span<float> c,
        ReadOnlySpan<float> bias = default, bool accumulate = false, Bf16GemmPath path = Bf16GemmPath.Auto)
    {
        CheckBf16("Gemm.NTBf16", m, n, k, a.Length, w, n, k, c.Length, bias.Length);
        bool dot = UsesDotProduct(path);
        fixed (float* pa = a) fixed (float* pc = c) fixed (float* pbias = bias)
        {
            if (dot) RunDot(m, n, k, pa, w, transposed: true, pc, pbias, accumulate);
            else Run(m, n, k, pa, k, 1, null, 0, 0, w, null, true, pc, pbias, accumulate);
        }
    }

    private static void CheckBf16(string op, int m, int n, int k, int aLen, PackedBf16Matrix w, int rows, int columns, int cLen, int biasLen)
    {
        if (w.Rows != rows || w.Columns != columns)
            throw new ArgumentException($"{op}: the weight is [{w.Rows}, {w.Columns}], expected [{rows}, {columns}] (m={m}, n={n}, k={k})");
        Check(op, m, n, k, aLen, (int)((long)rows * columns), cLen, biasLen, "m*k", "-");
    }

    internal static void Check(string op, int m, int n, int k, int aLen, int bLen, int cLen, int biasLen, string aShape, string bShape)
    {
        if (m < 0 || n < 0 || k < 0)
            throw new ArgumentException($"{op}: sizes must be non-negative, got m={m}, n={n}, k={k}");
        long mk = (long)m * k, kn = (long)k * n, mn = (long)m * n;
        if (aLen != mk) throw new ArgumentException($"{op}: a has {aLen} elements, expected {aShape} = {mk} (m={m}, n={n}, k={k})");
        if (bLen != kn) throw new ArgumentException($"{op}: b has {bLen} elements, expected {bShape} = {kn} (m={m}, n={n}, k={k})");
        if (cLen != mn) throw new ArgumentException($"{op}: c has {cLen} elements, expected m*n = {mn} (m={m}, n={n}, k={k})");
        if (biasLen != 0 && biasLen != n) throw new ArgumentException($"{op}: bias has {biasLen} elements, expected n = {n} or none");
    }

    // ---------------------------------------------------------------- blocked implementation
    //
    // BLIS-style: B is packed once into NR-column panels ([K][NR] each, zero-padded); each work item
    // (a block of at most MC rows × a range of panels) packs its rows of A into MR-row micro-panels per K chunk
    // and runs the MR×NR micro-kernel with the B micro-panel (kc×NR, ≤ 72 KB: L1 and L2) while the A block
    // (MC×kc, ≤ 192 KB) stays in L2. K is cut into equal chunks of at most MaxKC, so K ≤ MaxKC is one pass over C:
    // each further pass loads and stores the C tile again, and C (MC rows × N) lives in L3.
    // A(i,p) = a[i·rsA + p·csA], B(p,j) = b[p·rsB + j·csB].

    internal const int MR = 8, NR = 48, MaxKC = 384, MC = 128;

    /// <summary>The K chunk: K cut into the fewest equal chunks of at most <see cref="MaxKC"/>.</summary>
    internal static int KChunk(int k) => (k + (k + MaxKC - 1) / MaxKC - 1) / ((k + MaxKC - 1) / MaxKC);

    /// <summary>Test hook: forces the Vector256 micro-kernel even where Vector512 is accelerated.</summary>
    internal static bool ForceVector256 { get; set; }

    [ThreadStatic] private static float[]? t_packA;
    [ThreadStatic] private static float[]? t_packB;

    /// <summary>A thread-local pinned buffer of at least <paramref name="length"/> floats, 64-byte aligned.</summary>
    private static float* Buffer(ref float[]? cache, long length)
    {
        if (cache is null || cache.Length < length + 16)
            cache = GC.AllocateUninitializedArray<float>((int)Math.Max(length + 16, 1024), pinned: true);
        float* p = (float*)Unsafe.AsPointer(ref cache[0]);
        return (float*)(((nint)p + 63) & ~(nint)63);
    }

    /// <summary>
    /// The blocked GEMM; B(p,j) = b[p·rsB + j·csB] (fp32) or, when <paramref name="b"/> is null, from the bf16
    /// <paramref name="w"/> or the prepacked <paramref name="packed"/>: B = W, or B = Wᵀ when <paramref name="transposed"/>.
    /// A prepacked B = W is read in place; every other B is packed per call.
    /// </summary>
    private static void Run(int m, int n, int k, float* a, int rsA, int csA, float* b, int rsB, int csB, PackedBf16Matrix? w,
        PackedMatrix? packed, bool transposed, float* c, float* bias, bool accumulate)
    {
        if (m == 0 || n == 0) return;
        if (k == 0)
        {
            BiasOnly(m, n, c, bias, accumulate);
            return;
        }

        int panels = (n + NR - 1) / NR;
        bool inPlace = packed != null && !transposed;
        float* bp = inPlace ? packed!.Values : Buffer(ref t_packB, (long)panels * k * NR);
        var split = Split(m, n, k, panels);
        var job = new Job
        {
            M = m, N = n, K = k, A = a, RsA = rsA, CsA = csA, B = b, W = w, P = packed, Transposed = transposed, RsB = rsB, CsB = csB, Bp = bp,
            C = c, Bias = bias, Accumulate = accumulate, Panels = panels, Split = split, KC = KChunk(k),
            Wide = Vector512.IsHardwareAccelerated && !ForceVector256,
        };
        RunSplit(split, inPlace ? null : job.PackB, job.Compute);
    }

    /// <summary>C = bias (or C += bias) for K = 0.</summary>
    private static void BiasOnly(int m, int n, float* c, float* bias, bool accumulate)
    {
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++)
            {
                float v = bias != null ? bias[j] : 0f;
                c[(long)i * n + j] = accumulate ? c[(long)i * n + j] + v : v;
            }
    }

    /// <summary>
    /// How one GEMM's work is cut: B packing over <c>PackWorkers</c>, compute over <c>Items</c> = row blocks × column
    /// blocks, claimed one at a time by <c>Workers</c> threads.
    /// </summary>
    internal readonly record struct WorkSplit(bool Parallel, int Items, int M, int MBlocks, int NBlocks, int PanelsPerBlock, int Panels,
        int PackWorkers, int Workers)
    {
        /// <summary>
        /// Work item <paramref name="item"/>: rows i0..i0+mc (row block <c>item / NBlocks</c>: the MR-row micro-panels spread
        /// evenly over the row blocks, at most MC rows each) and panels jp0..jp1.
        /// </summary>
        public void Block(int item, out int i0, out int mc, out int jp0, out int jp1)
        {
            int mb = item / NBlocks, nb = item % NBlocks, units = (M + MR - 1) / MR;
            i0 = (int)((long)units * mb / MBlocks) * MR;
            mc = Math.Min(M, (int)((long)units * (mb + 1) / MBlocks) * MR) - i0;
            jp0 = nb * PanelsPerBlock;
            jp1 = Math.Min(Panels, jp0 + PanelsPerBlock);
        }
    }

    /// <summary>
    /// Flops below which a GEMM runs on the caller's thread. One sentence's projections (10–15 MFLOP at MiniLM's shapes) stay
    /// above it: with prepacked weights they are bound by reading W from memory, and two cores read it faster than one
    /// (a quiet 2-core machine: forward 1.9 ms split vs 3.3 ms on one thread), which outweighs the pool worker's wake-up.
    /// </summary>
    private const double ParallelFlops = 2e6;

    internal static WorkSplit Split(int m, int n, int k, int panels)
    {
        int mBlocks = (m + MC - 1) / MC;
        int workers = KernelParallelism.Workers;
        double flops = 2.0 * m * n * k;
        bool parallel = workers > 1 && flops > ParallelFlops;

        // Split columns too when there are too few row blocks to keep every core busy; with many, make their number a
        // multiple of the cores so that the last round of blocks ends together (M = 2432: 20 blocks of 120-128 rows, not
        // 19 of 128 with one core idle for the last).
        int nBlocks = 1;
        if (parallel && mBlocks < 4 * workers) nBlocks = Math.Min(panels, (4 * workers + mBlocks - 1) / mBlocks);
        else if (parallel && mBlocks % workers != 0) mBlocks += workers - mBlocks % workers;
        int panelsPerBlock = (panels + nBlocks - 1) / nBlocks;
        nBlocks = (panels + panelsPerBlock - 1) / panelsPerBlock;
        int items = mBlocks * nBlocks;
        return new WorkSplit(parallel, items, m, mBlocks, nBlocks, panelsPerBlock, panels,
            parallel ? Math.Min(workers, panels) : 1, parallel ? Math.Min(workers, items) : 1);
    }

    /// <summary>
    /// Packs B (all pack workers; null: B is packed already), then computes every work item: in parallel, each worker
    /// claiming the next item when it finishes one (a worker that starts late takes what is left, one item at a time),
    /// or in order on this thread.
    /// </summary>
    private static void RunSplit(WorkSplit split, Action<int>? packB, Action<int> compute)
    {
        if (split.Parallel)
        {
            if (packB != null) Parallel.For(0, split.PackWorkers, KernelParallelism.Options, packB);
            int next = -1, items = split.Items;
            Parallel.For(0, split.Workers, KernelParallelism.Options, _ =>
            {
                for (int item = Interlocked.Increment(ref next); item < items; item = Interlocked.Increment(ref next)) compute(item);
            });
        }
        else
        {
            packB?.Invoke(0);
            for (int w = 0; w < split.Items; w++) compute(w);
        }
    }

    private sealed class Job
    {
        public int M, N, K, KC, RsA, CsA, RsB, CsB, Panels;
        public WorkSplit Split;
        public float* A, B, Bp, C, Bias;
        public PackedBf16Matrix? W;
        public PackedMatrix? P;
        public bool Accumulate, Wide, Transposed;

        /// <summary>Packs panels worker, worker+W, … (W = the split's pack workers) of B.</summary>
        public void PackB(int worker)
        {
            for (int jp = worker; jp < Panels; jp += Split.PackWorkers) PackBPanel(jp);
        }

        /// <summary>Packs panel <paramref name="jp"/> of B into <see cref="Bp"/>.</summary>
        public void PackBPanel(int jp)
        {
            if (B == null)
            {
                if (W != null) PackBPanelBf16(jp);
                else PackBPanelTransposedFromPacked(jp);
                return;
            }
            int k = K, j0 = jp * NR, cols = Math.Min(NR, N - j0);
            float* dst = Bp + (long)jp * k * NR;
            if (CsB == 1 && cols == NR)
            {
                for (int p = 0; p < k; p++)
                {
                    float* src = B + (long)p * RsB + j0;
                    float* d = dst + p * NR;
                    Vector256.Store(Vector256.Load(src), d);
                    Vector256.Store(Vector256.Load(src + 8), d + 8);
                    Vector256.Store(Vector256.Load(src + 16), d + 16);
                    Vector256.Store(Vector256.Load(src + 24), d + 24);
                    Vector256.Store(Vector256.Load(src + 32), d + 32);
                    Vector256.Store(Vector256.Load(src + 40), d + 40);
                }
                return;
            }
            if (cols < NR)
                new Span<float>(dst, k * NR).Clear();
            if (RsB == 1)
            {
                for (int cc = 0; cc < cols; cc++)
                {
                    float* src = B + (long)(j0 + cc) * CsB;
                    float* d = dst + cc;
                    for (int p = 0; p < k; p++) d[p * NR] = src[p];
                }
            }
            else
            {
                for (int p = 0; p < k; p++)
                    for (int cc = 0; cc < cols; cc++)
                        dst[p * NR + cc] = B[(long)p * RsB + (long)(j0 + cc) * CsB];
            }
        }

        /// <summary>As <see cref="PackBPanel"/> from the bf16 weight, each value widened to fp32 (exact: a 16-bit shift).</summary>
        private void PackBPanelBf16(int jp)
        {
            int k = K, j0 = jp * NR, cols = Math.Min(NR, N - j0);
            var w = W!;
            float* dst = Bp + (long)jp * k * NR;
            uint* words = w.Words;
            if (!Transposed)
            {
                // B = W: this panel is W's panel jp (the same 48 columns, zero-padded), rows 2p and 2p+1 the halves of word row p.
                // Vector256: this is also the path of CPUs without AVX-512.
                uint* src = words + (long)jp * w.RowPairs * PackedBf16Matrix.PanelWidth;
                var high = Vector256.Create(0xFFFF0000u);
                for (int p = 0; p < k; p++)
                {
                    uint* s = src + (p / 2) * NR;
                    float* d = dst + p * NR;
                    for (int o = 0; o < NR; o += 8)
                    {
                        var v = Vector256.Load(s + o);
                        Vector256.Store(((p & 1) == 0 ? v << 16 : v & high).AsSingle(), d + o);
                    }
                }
                return;
            }
            // B = Wᵀ: column cc of this panel is row j0 + cc of W, whose values lie in one word half along each panel of W.
            if (cols < NR) new Span<float>(dst, k * NR).Clear();
            for (int cc = 0; cc < cols; cc++)
            {
                int row = j0 + cc, shift = 16 * (row & 1);
                for (int q = 0; q < w.Panels; q++)
                {
                    uint* s = words + (long)q * w.RowPairs * NR + (row / 2) * NR;
                    int p0 = q * NR, count = Math.Min(NR, k - p0);
                    for (int o = 0; o < count; o++)
                        dst[(long)(p0 + o) * NR + cc] = BitConverter.UInt32BitsToSingle((s[o] >> shift) << 16);
                }
            }
        }

        /// <summary>
        /// As <see cref="PackBPanel"/> for B = Wᵀ from the prepacked <see cref="P"/>: column cc of this panel is row j0 + cc
        /// of W, which lies in 48-value pieces along W's panels.
        /// </summary>
        private void PackBPanelTransposedFromPacked(int jp)
        {
            int k = K, j0 = jp * NR, cols = Math.Min(NR, N - j0);
            var w = P!;
            float* dst = Bp + (long)jp * k * NR;
            if (cols < NR) new Span<float>(dst, k * NR).Clear();
            for (int cc = 0; cc < cols; cc++)
            {
                for (int q = 0; q < w.Panels; q++)
                {
                    float* s = w.Values + ((long)q * w.Rows + j0 + cc) * NR;
                    int p0 = q * NR, count = Math.Min(NR, k - p0);
                    for (int o = 0; o < count; o++) dst[(long)(p0 + o) * NR + cc] = s[o];
                }
            }
        }

        /// <summary>
        /// dst[k·8 + r] = src[r·rowStride + k] for an 8×8 block (MR = 8): eight row loads, the transpose in registers
        /// (unpack, shuffle, 128-bit lane permute), eight stores, instead of 64 single-float stores.
        /// </summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private static void Transpose8x8(float* src, long rowStride, float* dst)
        {
            var r0 = Avx.LoadVector256(src); var r1 = Avx.LoadVector256(src + rowStride);
            var r2 = Avx.LoadVector256(src + 2 * rowStride); var r3 = Avx.LoadVector256(src + 3 * rowStride);
            var r4 = Avx.LoadVector256(src + 4 * rowStride); var r5 = Avx.LoadVector256(src + 5 * rowStride);
            var r6 = Avx.LoadVector256(src + 6 * rowStride); var r7 = Avx.LoadVector256(src + 7 * rowStride);
            var t0 = Avx.UnpackLow(r0, r1); var t1 = Avx.UnpackHigh(r0, r1);
            var t2 = Avx.UnpackLow(r2, r3); var t3 = Avx.UnpackHigh(r2, r3);
            var t4 = Avx.UnpackLow(r4, r5); var t5 = Avx.UnpackHigh(r4, r5);
            var t6 = Avx.UnpackLow(r6, r7); var t7 = Avx.UnpackHigh(r6, r7);
            var u0 = Avx.Shuffle(t0, t2, 0x44); var u1 = Avx.Shuffle(t0, t2, 0xEE);
            var u2 = Avx.Shuffle(t1, t3, 0x44); var u3 = Avx.Shuffle(t1, t3, 0xEE);
            var u4 = Avx.Shuffle(t4, t6, 0x44); var u5 = Avx.Shuffle(t4, t6, 0xEE);
            var u6 = Avx.Shuffle(t5, t7, 0x44); var u7 = Avx.Shuffle(t5, t7, 0xEE);
            Avx.Store(dst, Avx.Permute2x128(u0, u4, 0x20)); Avx.Store(dst + 8, Avx.Permute2x128(u1, u5, 0x20));
            Avx.Store(dst + 16, Avx.Permute2x128(u2, u6, 0x20)); Avx.Store(dst + 24, Avx.Permute2x128(u3, u7, 0x20));
            Avx.Store(dst + 32, Avx.Permute2x128(u0, u4, 0x31)); Avx.Store(dst + 40, Avx.Permute2x128(u1, u5, 0x31));
            Avx.Store(dst + 48, Avx.Permute2x128(u2, u6, 0x31)); Avx.Store(dst + 56, Avx.Permute2x128(u3, u7, 0x31));
        }

        /// <summary>Packs rows i0..i0+mc, columns p0..p0+kc of A into MR-row micro-panels ([kc][MR] each, zero-padded).</summary>
        private void PackA(float* dst, int i0, int mc, int p0, int kc)
        {
            for (int r0 = 0; r0 < mc; r0 += MR)
            {
                int rows = Math.Min(MR, mc - r0);
                float* d = dst + r0 * kc;
                if (CsA == 1)
                {
                    float* src = A + (long)(i0 + r0) * RsA + p0;
                    int p = 0;
                    if (rows == MR && Avx.IsSupported)
                        for (; p + 8 <= kc; p += 8) Transpose8x8(src + p, RsA, d + p * MR);
                    else if (rows < MR) new Span<float>(d, kc * MR).Clear();
                    for (int r = 0; r < rows; r++)
                        for (int q = p; q < kc; q++) d[q * MR + r] = src[(long)r * RsA + q];
                }
                else if (RsA == 1 && rows == MR)
                {
                    for (int p = 0; p < kc; p++)
                        Vector256.Store(Vector256.Load(A + (long)(p0 + p) * CsA + i0 + r0), d + p * MR);
                }
                else
                {
                    for (int p = 0; p < kc; p++)
                        for (int r = 0; r < MR; r++)
                            d[p * MR + r] = r < rows ? A[(long)(i0 + r0 + r) * RsA + (long)(p0 + p) * CsA] : 0f;
                }
            }
        }

        public void Compute(int item)
        {
            Split.Block(item, out int i0, out int mc, out int jp0, out int jp1);
            int mcPad = (mc + MR - 1) / MR * MR;
            float* ap = Buffer(ref t_packA, (long)mcPad * KC);
            float* tmp = stackalloc float[MR * NR];
            int n = N;
            for (int p0 = 0; p0 < K; p0 += KC)
            {
                int kc = Math.Min(KC, K - p0);
                PackA(ap, i0, mc, p0, kc);
                bool first = p0 == 0;
                bool loadC = Accumulate || !first;
                for (int jp = jp0; jp < jp1; jp++)
                {
                    int j0 = jp * NR, cols = Math.Min(NR, n - j0);
                    float* bpan = Bp + (long)jp * K * NR + (long)p0 * NR;
                    float* bias = first && Bias != null ? Bias + j0 : null;
                    for (int r0 = 0; r0 < mc; r0 += MR)
                    {
                        int rows = Math.Min(MR, mc - r0);
                        float* apan = ap + r0 * kc;
                        float* cp = C + (long)(i0 + r0) * n + j0;
                        if (rows == MR && cols == NR)
                        {
                            if (Wide) Kernel512(kc, apan, bpan, cp, n, loadC, bias);
                            else Kernel256(kc, apan, bpan, cp, n, loadC, bias);
                        }
                        else
                        {
                            if (Wide) Kernel512(kc, apan, bpan, tmp, NR, false, null);
                            else Kernel256(kc, apan, bpan, tmp, NR, false, null);
                            for (int r = 0; r < rows; r++)
                                for (int cc = 0; cc < cols; cc++)
                                {
                                    float v = tmp[r * NR + cc];
                                    if (bias != null) v += bias[cc];
                                    float* dst = cp + (long)r * n + cc;
                                    *dst = loadC ? *dst + v : v;
                                }
                        }
                    }
                }
            }
        }
    }

    /// <summary>
    /// 8×48 micro-kernel: 24 Vector512 accumulators, per k one 48-float row of the B panel (3 loads) and
    /// 8 broadcasts of the A panel. C tile = acc (+ C if <paramref name="loadC"/>) (+ bias if non-null).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void Kernel512(int kc, float* a, float* b, float* c, int ldc, bool loadC, float* bias)
    {
        Vector512<float> c00 = default, c01 = default, c02 = default, c10 = default, c11 = default, c12 = default;
        Vector512<float> c20 = default, c21 = default, c22 = default, c30 = default, c31 = default, c32 = default;
        Vector512<float> c40 = default, c41 = default, c42 = default, c50 = default, c51 = default, c52 = default;
        Vector512<float> c60 = default, c61 = default, c62 = default, c70 = default, c71 = default, c72 = default;
        for (int p = 0; p < kc; p++)
        {
            var b0 = Vector512.Load(b);
            var b1 = Vector512.Load(b + 16);
            var b2 = Vector512.Load(b + 32);
            var x = Vector512.Create(a[0]);
            c00 = Vector512.FusedMultiplyAdd(x, b0, c00); c01 = Vector512.FusedMultiplyAdd(x, b1, c01); c02 = Vector512.FusedMultiplyAdd(x, b2, c02);
            x = Vector512.Create(a[1]);
            c10 = Vector512.FusedMultiplyAdd(x, b0, c10); c11 = Vector512.FusedMultiplyAdd(x, b1, c11); c12 = Vector512.FusedMultiplyAdd(x, b2, c12);
            x = Vector512.Create(a[2]);
            c20 = Vector512.FusedMultiplyAdd(x, b0, c20); c21 = Vector512.FusedMultiplyAdd(x, b1, c21); c22 = Vector512.FusedMultiplyAdd(x, b2, c22);
            x = Vector512.Create(a[3]);
            c30 = Vector512.FusedMultiplyAdd(x, b0, c30); c31 = Vector512.FusedMultiplyAdd(x, b1, c31); c32 = Vector512.FusedMultiplyAdd(x, b2, c32);
            x = Vector512.Create(a[4]);
            c40 = Vector512.FusedMultiplyAdd(x, b0, c40); c41 = Vector512.FusedMultiplyAdd(x, b1, c41); c42 = Vector512.FusedMultiplyAdd(x, b2, c42);
            x = Vector512.Create(a[5]);
            c50 = Vector512.FusedMultiplyAdd(x, b0, c50); c51 = Vector512.FusedMultiplyAdd(x, b1, c51); c52 = Vector512.FusedMultiplyAdd(x, b2, c52);
            x = Vector512.Create(a[6]);
            c60 = Vector512.FusedMultiplyAdd(x, b0, c60); c61 = Vector512.FusedMultiplyAdd(x, b1, c61); c62 = Vector512.FusedMultiplyAdd(x, b2, c62);
            x = Vector512.Create(a[7]);
            c70 = Vector512.FusedMultiplyAdd(x, b0, c70); c71 = Vector512.FusedMultiplyAdd(x, b1, c71); c72 = Vector512.FusedMultiplyAdd(x, b2, c72);
            a += MR;
            b += NR;
        }
        if (bias != null)
        {
            var v0 = Vector512.Load(bias); var v1 = Vector512.Load(bias + 16); var v2 = Vector512.Load(bias + 32);
            c00 += v0; c01 += v1; c02 += v2; c10 += v0; c11 += v1; c12 += v2;
            c20 += v0; c21 += v1; c22 += v2; c30 += v0; c31 += v1; c32 += v2;
            c40 += v0; c41 += v1; c42 += v2; c50 += v0; c51 += v1; c52 += v2;
            c60 += v0; c61 += v1; c62 += v2; c70 += v0; c71 += v1; c72 += v2;
        }
        Store3(c, loadC, c00, c01, c02); c += ldc;
        Store3(c, loadC, c10, c11, c12); c += ldc;
        Store3(c, loadC, c20, c21, c22); c += ldc;
        Store3(c, loadC, c30, c31, c32); c += ldc;
        Store3(c, loadC, c40, c41, c42); c += ldc;
        Store3(c, loadC, c50, c51, c52); c += ldc;
        Store3(c, loadC, c60, c61, c62); c += ldc;
        Store3(c, loadC, c70, c71, c72);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Store3(float* c, bool loadC, Vector512<float> v0, Vector512<float> v1, Vector512<float> v2)
    {
        if (loadC)
        {
            v0 += Vector512.Load(c); v1 += Vector512.Load(c + 16); v2 += Vector512.Load(c + 32);
        }
        Vector512.Store(v0, c); Vector512.Store(v1, c + 16); Vector512.Store(v2, c + 32);
    }

    /// <summary>Fallback for machines without Vector512: the same 8×48 tile, one 8-column strip at a time (8 accumulators).</summary>
    private static void Kernel256(int kc, float* a, float* b, float* c, int ldc, bool loadC, float* bias)
    {
        for (int s = 0; s < NR; s += 8)
        {
            Vector256<float> r0 = default, r1 = default, r2 = default, r3 = default;
            Vector256<float> r4 = default, r5 = default, r6 = default, r7 = default;
            float* ap = a, bp = b + s;
            for (int p = 0; p < kc; p++)
            {
                var bv = Vector256.Load(bp);
                r0 = Vector256.FusedMultiplyAdd(Vector256.Create(ap[0]), bv, r0);
                r1 = Vector256.FusedMultiplyAdd(Vector256.Create(ap[1]), bv, r1);
                r2 = Vector256.FusedMultiplyAdd(Vector256.Create(ap[2]), bv, r2);
                r3 = Vector256.FusedMultiplyAdd(Vector256.Create(ap[3]), bv, r3);
                r4 = Vector256.FusedMultiplyAdd(Vector256.Create(ap[4]), bv, r4);
                r5 = Vector256.FusedMultiplyAdd(Vector256.Create(ap[5]), bv, r5);
                r6 = Vector256.FusedMultiplyAdd(Vector256.Create(ap[6]), bv, r6);
                r7 = Vector256.FusedMultiplyAdd(Vector256.Create(ap[7]), bv, r7);
                ap += MR;
                bp += NR;
            }
            var bb = bias != null ? Vector256.Load(bias + s) : Vector256<float>.Zero;
            Store1(c + s, loadC, r0 + bb);
            Store1(c + s + ldc, loadC, r1 + bb);
            Store1(c + s + 2 * ldc, loadC, r2 + bb);
            Store1(c + s + 3 * ldc, loadC, r3 + bb);
            Store1(c + s + 4 * ldc, loadC, r4 + bb);
            Store1(c + s + 5 * ldc, loadC, r5 + bb);
            Store1(c + s + 6 * ldc, loadC, r6 + bb);
            Store1(c + s + 7 * ldc, loadC, r7 + bb);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Store1(float* c, bool loadC, Vector256<float> v)
    {
        if (loadC) v += Vector256.Load(c);
        Vector256.Store(v, c);
    }
}
