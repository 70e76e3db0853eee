using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace SkTuning.Gpu.Kernels;

/// <summary>Which code a GEMM with bf16 weights (<see cref="Gemm.NNBf16"/>, <see cref="Gemm.NTBf16"/>) runs.</summary>
public enum Bf16GemmPath
{
    /// <summary><see cref="Gemm.DefaultBf16Path"/>: the <c>vdpbf16ps</c> kernel where the CPU has it, unless switched off.</summary>
    Auto,

    /// <summary>
    /// The AVX-512F (or AVX2) fallback: B widened to fp32 while packed, the fp32 micro-kernel; A stays fp32, so the result
    /// is the fp32 GEMM on the bf16-rounded weights.
    /// </summary>
    Widening,

    /// <summary>
    /// The <c>vdpbf16ps</c> micro-kernel (<see cref="Bf16DotKernel"/>): A is rounded to bf16 (nearest even) while packed, B
    /// packed into bf16 pairs, two products per fp32 lane per instruction, fp32 accumulation. The result is the fp32
    /// GEMM on the bf16-rounded A and B (both roundings are exact inputs to exact products; only the fp32 sums round).
    /// </summary>
    DotProduct,
}

public static unsafe partial class Gemm
{
    /// <summary>Environment switch: <c>SKTUNE_BF16_GEMM=widen</c> makes <see cref="Bf16GemmPath.Auto"/> take the widening fallback.</summary>
    public const string Bf16PathVariable = "SKTUNE_BF16_GEMM";

    /// <summary>
    /// What <see cref="Bf16GemmPath.Auto"/> runs in this process: <see cref="Bf16GemmPath.DotProduct"/> where the CPU reports
    /// AVX512-BF16 on 64-bit Linux and <see cref="Bf16PathVariable"/> is not <c>widen</c>; otherwise
    /// <see cref="Bf16GemmPath.Widening"/>.
    /// </summary>
    public static Bf16GemmPath DefaultBf16Path { get; } =
        IsBf16DotProductSupported && Environment.GetEnvironmentVariable(Bf16PathVariable) != "widen"
            ? Bf16GemmPath.DotProduct : Bf16GemmPath.Widening;

    /// <summary>True where the <c>vdpbf16ps</c> kernel can run (AVX512-BF16 on 64-bit Linux).</summary>
    public static bool IsBf16DotProductSupported => Bf16DotKernel.IsSupported;

    private static bool UsesDotProduct(Bf16GemmPath path) => path switch
    {
        Bf16GemmPath.Auto => DefaultBf16Path == Bf16GemmPath.DotProduct,
        Bf16GemmPath.Widening => false,
        _ => IsBf16DotProductSupported ? true : throw new NotSupportedException("the vdpbf16ps GEMM kernel needs AVX512-BF16 on 64-bit Linux"),
    };

    // ---------------------------------------------------------------- vdpbf16ps path
    //
    // The same work split as the fp32 path (items of at most MC rows × a panel range, A packed per MC×KC block) on 32-bit words
    // holding a bf16 pair along K: B panels [K/2][NR], A micro-panels [KC/2][MR]. For x·W the weight's own panels are B
    // (packed once at load); for dY·Wᵀ B is repacked per call from them. An odd K ends in a pair whose second value is 0
    // in A and B. KC counts K values: 256 (128 pairs), so a B micro-panel is 24 KB and stays in L1 (the fp32 path now
    // takes K chunks of up to 384 values, one pass over C for MiniLM's K = 384: see MaxKC; not tried here).

    private const int KC16 = 256;

    /// <summary>The vdpbf16ps GEMM: A fp32, row-major (row stride k); B = W, or Wᵀ when <paramref name="transposed"/>.</summary>
    private static void RunDot(int m, int n, int k, float* a, PackedBf16Matrix w, bool transposed, float* c, float* bias, bool accumulate)
    {
        if (m == 0 || n == 0) return;
        if (k == 0)
        {
            BiasOnly(m, n, c, bias, accumulate);
            return;
        }
        int kPairs = (k + 1) / 2;
        int panels = (n + Bf16DotKernel.NR - 1) / Bf16DotKernel.NR;
        var split = Split(m, n, k, panels);
        var job = new DotJob
        {
            M = m, N = n, K = k, KPairs = kPairs, A = a, W = w, C = c, Bias = bias, Accumulate = accumulate, Panels = panels,
            Split = split,
            Bp = transposed ? (uint*)Buffer(ref t_packB, (long)panels * kPairs * Bf16DotKernel.NR) : w.Words,
        };
        RunSplit(split, transposed ? job.PackTransposed : null, job.Compute);
    }

    private sealed class DotJob
    {
        private const int MR = Bf16DotKernel.MR, NR = Bf16DotKernel.NR;

        public int M, N, K, KPairs, Panels;
        public WorkSplit Split;
        public float* A, C, Bias;
        public PackedBf16Matrix W = null!;
        public uint* Bp;
        public bool Accumulate;

        /// <summary>Packs panels worker, worker+W, … (W = the split's pack workers) of B = Wᵀ.</summary>
        public void PackTransposed(int worker)
        {
            for (int jp = worker; jp < Panels; jp += Split.PackWorkers) PackTransposedPanel(jp);
        }

        /// <summary>
        /// Panel jp of B = Wᵀ: word (kp, cc) = W[j0+cc, 2kp] | W[j0+cc, 2kp+1] &lt;&lt; 16 — two neighbours in a row of W, so
        /// each of W's panels gives a row's 48 values, narrowed to 24 pairs (W's zero padding pads K).
        /// </summary>
        private void PackTransposedPanel(int jp)
        {
            int j0 = jp * NR, cols = Math.Min(NR, N - j0);
            uint* dst = Bp + (long)jp * KPairs * NR;
            if (cols < NR) new Span<uint>(dst, KPairs * NR).Clear();
            uint* pairs = stackalloc uint[32];
            uint* words = W.Words;
            for (int cc = 0; cc < cols; cc++)
                for (int q = 0; q < W.Panels; q++)
                {
                    PackedBf16Matrix.PanelRow(words + (long)q * W.RowPairs * NR, j0 + cc, out var v0, out var v1, out var v2);
                    Vector512.Store(Vector512.Narrow(v0, v1).AsUInt32(), pairs);
                    Vector512.Store(Vector512.Narrow(v2, Vector512<uint>.Zero).AsUInt32(), pairs + 16);
                    int kp0 = q * (NR / 2), count = Math.Min(NR / 2, KPairs - kp0);
                    for (int t = 0; t < count; t++) dst[(long)(kp0 + t) * NR + cc] = pairs[t];
                }
        }

        /// <summary>Rows i0..i0+mc, values p0..p0+kc (p0 even) of A rounded to bf16 pairs, as MR-row micro-panels [kc/2][MR].</summary>
        private void PackA(uint* dst, int i0, int mc, int p0, int kc)
        {
            int kcp = (kc + 1) / 2;
            for (int r0 = 0; r0 < mc; r0 += MR)
            {
                int rows = Math.Min(MR, mc - r0);
                uint* d = dst + r0 * kcp;
                if (rows < MR) new Span<uint>(d, kcp * MR).Clear();
                for (int r = 0; r < rows; r++) PackARow(A + (long)(i0 + r0 + r) * K + p0, kc, d + r);
            }
        }

        /// <summary>d[kp·MR] = bf16 pair kp of the kc values at src (round to nearest even; an odd tail pairs with 0).</summary>
        private static void PackARow(float* src, int kc, uint* d)
        {
            uint* pairs = stackalloc uint[16];
            int p = 0;
            for (; p + 32 <= kc; p += 32)
            {
                var words = Vector512.Narrow(RoundToBf16(Vector512.Load(src + p)), RoundToBf16(Vector512.Load(src + p + 16)));
                Vector512.Store(words.AsUInt32(), pairs);
                uint* dp = d + (p / 2) * MR;
                for (int i = 0; i < 16; i++) dp[i * MR] = pairs[i];
            }
            for (; p < kc; p += 2)
                d[(p / 2) * MR] = BFloat16.FromFloat(src[p]) | (p + 1 < kc ? (uint)BFloat16.FromFloat(src[p + 1]) << 16 : 0u);
        }

        /// <summary><see cref="BFloat16.FromFloat(float)"/> on 16 lanes, the bf16 bits in each lane's low half.</summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private static Vector512<uint> RoundToBf16(Vector512<float> x)
        {
            var bits = x.AsUInt32();
            var rounded = (bits + Vector512.Create(0x7FFFu) + ((bits >> 16) & Vector512<uint>.One)) >> 16;
            var nan = (bits >> 16) | Vector512.Create(0x40u);
            return Vector512.ConditionalSelect(Vector512.Equals(x, x).AsUInt32(), rounded, nan);
        }

        public void Compute(int item)
        {
            Split.Block(item, out int i0, out int mc, out int jp0, out int jp1);
            int mcPad = (mc + MR - 1) / MR * MR;
            uint* ap = (uint*)Buffer(ref t_packA, (long)mcPad * KC16 / 2);
            float* tmp = stackalloc float[MR * NR];
            var kernel = Bf16DotKernel.Function;
            int n = N;
            for (int p0 = 0; p0 < K; p0 += KC16)
            {
                int kc = Math.Min(KC16, K - p0), kcp = (kc + 1) / 2;
                PackA(ap, i0, mc, p0, kc);
                bool first = p0 == 0;
                long loadC = Accumulate || !first ? 1 : 0;
                for (int jp = jp0; jp < jp1; jp++)
                {
                    int j0 = jp * NR, cols = Math.Min(NR, n - j0);
                    uint* bpan = Bp + (long)jp * KPairs * NR + (long)(p0 / 2) * NR;
                    float* bias = first && Bias != null ? Bias + j0 : null;
                    for (int r0 = 0; r0 < mc; r0 += MR)
                    {
                        int rows = Math.Min(MR, mc - r0);
                        uint* apan = ap + r0 * kcp;
                        float* cp = C + (long)(i0 + r0) * n + j0;
                        if (rows == MR && cols == NR)
                        {
                            kernel(kcp, apan, bpan, cp, n, bias, loadC);
                            continue;
                        }
                        kernel(kcp, apan, bpan, tmp, NR, null, 0);
                        for (int r = 0; r < rows; r++)
                            for (int cc = 0; cc < cols; cc++)
                            {
                                float v = tmp[r * NR + cc];
                                if (bias != null) v += bias[cc];
                                float* dst = cp + (long)r * n + cc;
                                *dst = loadC != 0 ? *dst + v : v;
                            }
                    }
                }
            }
        }
    }
}
