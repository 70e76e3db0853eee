using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using Iced.Intel;
using static Iced.Intel.AssemblerRegisters;

namespace SkTuning.Gpu.Kernels;

/// <summary>
/// The bf16 GEMM micro-kernel on AVX512-BF16's <c>vdpbf16ps</c> (per fp32 lane: acc += a₀·b₀ + a₁·b₁ over a pair of bf16
/// values, so two bf16 products per lane per instruction, accumulated in fp32). .NET exposes no AVX512-BF16 intrinsics,
/// so the kernel is assembled at run time with Iced, placed in executable memory once per process and called through an
/// unmanaged function pointer.
/// <para>
/// Tile: <see cref="MR"/> = 8 rows × <see cref="NR"/> = 48 columns (24 zmm accumulators). Per step over a K pair the
/// kernel loads three zmm of the B panel (48 columns × a bf16 pair) and, per row, multiplies them with that row's A pair
/// broadcast to all lanes (EVEX embedded broadcast <c>{1to16}</c>).
/// </para>
/// <para>
/// Operand layouts (32-bit words, each a bf16 pair: the even-k value in the low half, the odd-k value in the high half):
/// A micro-panel [kPairs][MR], B micro-panel [kPairs][NR]. Like the instruction itself, denormal inputs count as zero and
/// denormal results are flushed to zero (not a concern for weights and activations of a trained model).
/// </para>
/// </summary>
internal static unsafe class Bf16DotKernel
{
    /// <summary>Rows of the micro-tile.</summary>
    public const int MR = 8;

    /// <summary>Columns of the micro-tile (three zmm of 16 fp32 lanes).</summary>
    public const int NR = 48;

    /// <summary>
    /// C[MR, NR] (row stride <c>ldc</c> floats) = Σ over kPairs of A·B (+ bias[NR] if non-null) (+ C if loadC ≠ 0).
    /// Arguments (System V): kPairs, a, b, c, ldc, bias, loadC. Called without a GC transition: one call is a few
    /// microseconds of arithmetic that never calls back into the runtime.
    /// </summary>
    public static delegate* unmanaged[SuppressGCTransition]<long, uint*, uint*, float*, long, float*, long, void> Function => Cached.Value;

    /// <summary>
    /// True where the kernel runs: 64-bit Linux on a CPU that reports AVX512-BF16 (CPUID leaf 7 subleaf 1, EAX bit 5) with
    /// AVX-512 enabled by the OS.
    /// </summary>
    public static bool IsSupported { get; } = ExecutableMemory.IsSupported && Avx512F.IsSupported && Avx512BW.IsSupported
        && Vector512.IsHardwareAccelerated && X86Base.IsSupported && (X86Base.CpuId(7, 1).Eax & (1 << 5)) != 0;

    private static class Cached
    {
        public static readonly delegate* unmanaged[SuppressGCTransition]<long, uint*, uint*, float*, long, float*, long, void> Value =
            (delegate* unmanaged[SuppressGCTransition]<long, uint*, uint*, float*, long, float*, long, void>)ExecutableMemory.Place(Assemble());
    }

    /// <summary>The kernel's machine code (position-independent: only relative jumps).</summary>
    internal static byte[] Assemble()
    {
        AssemblerRegisterZMM[] z =
        [
            zmm0, zmm1, zmm2, zmm3, zmm4, zmm5, zmm6, zmm7, zmm8, zmm9, zmm10, zmm11, zmm12, zmm13, zmm14, zmm15,
            zmm16, zmm17, zmm18, zmm19, zmm20, zmm21, zmm22, zmm23, zmm24, zmm25, zmm26, zmm27, zmm28, zmm29, zmm30, zmm31,
        ];
        // Arguments: rdi = kPairs, rsi = a, rdx = b, rcx = c, r8 = ldc (floats), r9 = bias, [rsp + 8] = loadC.
        // Accumulator of row r, 16-column slice s: z[3r + s]; the B row: z[24..26]. Only caller-saved registers are used.
        var asm = new Assembler(64);
        var loop = asm.CreateLabel();
        var tail = asm.CreateLabel();
        var noBias = asm.CreateLabel();
        var store = asm.CreateLabel();
        var done = asm.CreateLabel();

        for (int i = 0; i < 24; i++) asm.vpxord(z[i], z[i], z[i]);
        asm.test(rdi, rdi);
        asm.jz(tail);
        asm.Label(ref loop);
        for (int s = 0; s < 3; s++) asm.vmovups(z[24 + s], __zmmword_ptr[rdx + 64 * s]);
        for (int r = 0; r < MR; r++)
            for (int s = 0; s < 3; s++)
                asm.vdpbf16ps(z[3 * r + s], z[24 + s], __dword_bcst[rsi + 4 * r]);
        asm.add(rsi, 4 * MR);
        asm.add(rdx, 4 * NR);
        asm.dec(rdi);
        asm.jnz(loop);

        asm.Label(ref tail);
        asm.test(r9, r9);
        asm.jz(noBias);
        for (int s = 0; s < 3; s++) asm.vmovups(z[24 + s], __zmmword_ptr[r9 + 64 * s]);
        for (int r = 0; r < MR; r++)
            for (int s = 0; s < 3; s++)
                asm.vaddps(z[3 * r + s], z[3 * r + s], z[24 + s]);
        asm.Label(ref noBias);
        asm.shl(r8, 2);
        asm.mov(rax, __qword_ptr[rsp + 8]);
        asm.test(rax, rax);
        asm.jz(store);
        for (int r = 0; r < MR; r++)
        {
            for (int s = 0; s < 3; s++)
            {
                asm.vaddps(z[3 * r + s], z[3 * r + s], __zmmword_ptr[rcx + 64 * s]);
                asm.vmovups(__zmmword_ptr[rcx + 64 * s], z[3 * r + s]);
            }
            asm.add(rcx, r8);
        }
        asm.jmp(done);
        asm.Label(ref store);
        for (int r = 0; r < MR; r++)
        {
            for (int s = 0; s < 3; s++) asm.vmovups(__zmmword_ptr[rcx + 64 * s], z[3 * r + s]);
            asm.add(rcx, r8);
        }
        asm.Label(ref done);
        asm.vzeroupper();
        asm.ret();

        using var stream = new MemoryStream();
        asm.Assemble(new StreamCodeWriter(stream), 0);
        return stream.ToArray();
    }
}
