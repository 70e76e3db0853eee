using ILGPU;
using ILGPU.Runtime;
using SkTuning.Gpu.Kernels;
using SkTuning.Gpu.Kernels.Gpu;
using SkTuning.Gpu.Tests.Support;
using static SkTuning.Gpu.Tests.Kernels.GemmTests;

namespace SkTuning.Gpu.Tests.Kernels;

/// <summary>
/// The GEMM tiers beyond the first (<see cref="GemmTier.Vectorized128"/>, <see cref="GemmTier.SplitK"/>), each forced and
/// checked against the fp64 reference on fresh random inputs with poisoned outputs; the planner; the generated PTX.
/// </summary>
public class GemmGpuTierTests(SimulatorFixture sim) : IClassFixture<SimulatorFixture>
{
    private sealed class Operands : IDisposable
    {
        public required MemoryBuffer1D<float, Stride1D.Dense> A, B, C, Bias;
        public required double[] Expected;
        public required bool WithBias;
        public ArrayView<float> BiasView => WithBias ? Bias.View : default;

        public void Dispose() { A.Dispose(); B.Dispose(); C.Dispose(); Bias.Dispose(); }
    }

    private static Operands Upload(GpuDevice device, Form f, int m, int n, int k, bool withBias, bool accumulate, int seed)
    {
        var (a, b, bias, c, expected) = GemmTests.Case(f, m, n, k, withBias, accumulate, seed);
        var o = new Operands
        {
            A = device.Accelerator.Allocate1D(a), B = device.Accelerator.Allocate1D(b), C = device.Accelerator.Allocate1D(c),
            Bias = device.Accelerator.Allocate1D(withBias ? bias : new float[1]), Expected = expected, WithBias = withBias,
        };
        return o;
    }

    private static void Run(GpuDevice device, Form f, int m, int n, int k, Operands o, bool accumulate, GemmTier tier)
    {
        switch (f)
        {
            case Form.NN: GemmGpu.NN(device, m, n, k, o.A.View, o.B.View, o.C.View, o.BiasView, accumulate, tier); break;
            case Form.NT: GemmGpu.NT(device, m, n, k, o.A.View, o.B.View, o.C.View, o.BiasView, accumulate, tier); break;
            default: GemmGpu.TN(device, m, n, k, o.A.View, o.B.View, o.C.View, o.BiasView, accumulate, tier); break;
        }
    }

    private static void AssertClose(GpuDevice device, Operands o, string what)
    {
        device.Synchronize();
        var got = o.C.GetAsArray1D();
        double err = TestData.MaxRelError(got, o.Expected);
        Assert.True(err <= 1e-4, $"{what}: rel err {err}");
    }

    /// <summary>
    /// One shape per edge: 132 rows and 136 columns end in partial 128-tiles, K = 20 ends in a partial 8-deep tile after
    /// two full ones (both shared stages used, the prefetch skipped on the last), 8 rows and 4 columns are a sliver of one tile.
    /// </summary>
    [Theory]
    [InlineData(Form.NN, 132, 136, 20, true, false)]
    [InlineData(Form.NN, 8, 4, 4, false, true)]
    [InlineData(Form.NT, 8, 140, 44, false, true)]
    [InlineData(Form.NT, 132, 8, 12, true, false)]
    [InlineData(Form.TN, 132, 4, 24, true, true)]
    [InlineData(Form.TN, 4, 136, 28, false, false)]
    public void Vectorized128MatchesReference(Form f, int m, int n, int k, bool withBias, bool accumulate)
    {
        using var o = Upload(sim.Device, f, m, n, k, withBias, accumulate, seed: m * 31 + n * 7 + k);
        Run(sim.Device, f, m, n, k, o, accumulate, GemmTier.Vectorized128);
        AssertClose(sim.Device, o, $"{f} {m}x{n}x{k}");
    }

    /// <summary>
    /// Split-K fused into one launch, 2 to 8 planes, every form: edge tiles (M, N not multiples of 128; several tiles, so
    /// several arrival counts), the last chunk shorter than the others and not a multiple of 8, bias and accumulate applied
    /// once by the tile's last split. Checked against the fp64 reference, against the unsplit tier (the same 1e-4 relative
    /// tolerance: only the order of the K sums differs), and bit for bit against a second run (the counts were left at zero).
    /// </summary>
    [Theory]
    [InlineData(Form.NN, 12, 8, 36, false, false, 2)]      // chunks 24 + 12
    [InlineData(Form.NT, 8, 140, 44, false, true, 2)]      // chunks 24 + 20; two column tiles
    [InlineData(Form.TN, 20, 12, 60, true, true, 3)]       // chunks 24, 24, 12
    [InlineData(Form.NT, 132, 8, 40, true, false, 3)]      // two row tiles
    [InlineData(Form.NN, 4, 260, 100, true, true, 4)]      // chunks 32 ×3 + 4; three column tiles
    [InlineData(Form.TN, 132, 132, 76, false, true, 5)]    // 2×2 tiles; chunks 16 ×4 + 12
    [InlineData(Form.NT, 136, 12, 92, true, true, 6)]      // chunks 16 ×5 + 12
    [InlineData(Form.TN, 12, 136, 108, false, false, 7)]   // chunks 16 ×6 + 12
    [InlineData(Form.NN, 132, 136, 60, true, false, 8)]    // 2×2 tiles; chunks 8 ×7 + 4
    public void SplitKMatchesReferenceAndTheUnsplitTierAndRepeatsBitForBit(Form f, int m, int n, int k, bool withBias, bool accumulate, int splits)
    {
        using var o = Upload(sim.Device, f, m, n, k, withBias, accumulate, seed: m * 31 + n * 7 + k + splits);
        var c0 = o.C.GetAsArray1D();
        long launches = sim.Device.Launches;
        var fused = sim.Device.LaunchesByKernel.GetValueOrDefault("Gemm.SplitK128x128x8");
        Assert.Equal(splits, SplitK(o));
        Assert.Equal(launches + 1, sim.Device.Launches);   // partials and reduction in one launch
        Assert.Equal(fused + 1, sim.Device.LaunchesByKernel["Gemm.SplitK128x128x8"]);
        AssertClose(sim.Device, o, $"{f} {m}x{n}x{k} in {splits} splits");
        var first = o.C.GetAsArray1D();

        o.C.CopyFromCPU(c0);
        SplitK(o);
        sim.Device.Synchronize();
        Assert.Equal(first, o.C.GetAsArray1D());

        o.C.CopyFromCPU(c0);
        Run(sim.Device, f, m, n, k, o, accumulate, GemmTier.Vectorized128);
        sim.Device.Synchronize();
        double fromUnsplit = TestData.MaxRelError(first, TestData.ToDouble(o.C.GetAsArray1D()));
        Assert.True(fromUnsplit <= 1e-4, $"split-K vs unsplit: rel diff {fromUnsplit}");

        int SplitK(Operands x) => GemmGpu.SplitK(sim.Device, m, n, k, f == Form.TN, f == Form.NT, x.A.View, x.B.View, x.C.View,
            x.BiasView, accumulate, splits);
    }

    [Fact]
    public void AutoPlanFallsBackToTheFirstTierWhenFloat4AccessIsNotPossible()
    {
        using var a = sim.Device.Accelerator.Allocate1D<float>(8 * 16 + 1);
        using var b = sim.Device.Accelerator.Allocate1D<float>(16 * 8);
        using var c = sim.Device.Accelerator.Allocate1D<float>(8 * 8);
        Assert.Equal((GemmTier.Vectorized128, 1),
            GemmGpu.Plan(sim.Device, 8, 8, 16, false, false, a.View.SubView(0, 128), b.View, c.View, GemmTier.Vectorized128));
        // A view starting one float into its buffer is not 16-byte aligned.
        Assert.Equal(GemmTier.Tiled64, GemmGpu.Plan(sim.Device, 8, 8, 16, false, false, a.View.SubView(1, 128), b.View, c.View).Tier);
        var ex = Assert.Throws<ArgumentException>(() =>
            GemmGpu.Plan(sim.Device, 8, 8, 16, false, false, a.View.SubView(1, 128), b.View, c.View, GemmTier.Vectorized128));
        Assert.Contains("not 16-byte aligned", ex.Message);
        Assert.Equal(GemmTier.Tiled64, GemmGpu.Plan(sim.Device, 8, 6, 16, false, false, a.View, b.View, c.View).Tier);
        ex = Assert.Throws<ArgumentException>(() => GemmGpu.Plan(sim.Device, 8, 8, 6, false, false, a.View, b.View, c.View, GemmTier.SplitK));
        Assert.Contains("k = 6", ex.Message);
    }

    /// <summary>On an H200 (132 SMs) at MiniLM's training shapes (2048 rows, d = 384, FFN 1536).</summary>
    [Theory]
    [InlineData(2048, 1536, 384, false, false, GemmTier.Vectorized128, 1)] // FFN up: 192 tiles
    [InlineData(2048, 1152, 384, false, true, GemmTier.Vectorized128, 1)]  // fused QKV: 144 tiles
    [InlineData(2048, 384, 1536, false, false, GemmTier.SplitK, 3)]        // FFN down: 48 tiles, K deep
    [InlineData(2048, 384, 1536, false, true, GemmTier.SplitK, 3)]         // FFN up dX
    [InlineData(2048, 384, 1152, false, true, GemmTier.SplitK, 3)]         // QKV dX: 48 tiles, ⌈132/48⌉ splits of 384
    [InlineData(2048, 1536, 384, false, true, GemmTier.Vectorized128, 1)]  // FFN down dX (with the GELU slope): 192 tiles
    [InlineData(384, 1536, 2048, true, false, GemmTier.SplitK, 4)]         // dW = Xᵀ·dY: 36 tiles
    [InlineData(384, 384, 2048, true, false, GemmTier.SplitK, 8)]          // dW of a d×d projection: 9 tiles, 8 splits of 256
    [InlineData(2048, 384, 384, false, false, GemmTier.Tiled64, 1)]        // 48 tiles, K too shallow to split: 192 64-tiles
    public void AutoPlanForTheH200(int m, int n, int k, bool transA, bool transB, GemmTier tier, int splits) =>
        Assert.Equal((tier, splits), GemmGpu.PlanFor(132, m, n, k, transA, transB, viewsAligned: true, GemmTier.Auto));

    /// <summary>The PTX the H200 gets: 128-bit global and shared traffic, two 8448-byte double-buffered stages, no local memory.</summary>
    [Fact]
    public void Vectorized128PtxHasVectorLoadsAndDoubleBufferedTiles()
    {
        using var ptx = new PtxCompiler(ILGPU.Runtime.Cuda.CudaArchitecture.SM_90, ILGPU.Runtime.Cuda.CudaInstructionSet.ISA_78);
        var text = ptx.CompileExplicitlyGrouped(typeof(GemmGpuVectorized).GetMethod(nameof(GemmGpuVectorized.Kernel), OpsTest.Any)!);
        Assert.Contains(".entry", text);
        Assert.Contains(".target sm_80", text);
        Assert.Contains("ld.global.v4.f32", text);
        Assert.Contains("ld.shared.v4.f32", text);
        Assert.Contains("st.shared.v4.f32", text);
        Assert.Contains("st.global.v4.f32", text);
        // 2 stages × BK 8 × (128 + 4 padding) floats × 4 bytes, for A and for B.
        Assert.Contains(".shared .align 16 .b8 __shared_alloca0[8448]", text);
        Assert.Contains(".shared .align 16 .b8 __shared_alloca1[8448]", text);
        Assert.DoesNotContain(".local", text);
        Assert.DoesNotContain("atom.", text);   // the unsplit tier carries none of split-K's counting
        Assert.DoesNotContain("membar", text);
    }

    /// <summary>
    /// The fused split-K kernel compiles for the A100 and the H200 and holds the last-arrival protocol: the device-level
    /// fence before the count, the atomic count and the atomic (L2) reads of the other planes, the predicate barrier that
    /// tells the group it arrived last; the tiles stay vectorised.
    /// </summary>
    [Theory]
    [InlineData(80)]
    [InlineData(90)]
    public void SplitKPtxHasTheFenceTheAtomicCountAndVectorTiles(int sm)
    {
        var arch = sm == 80 ? ILGPU.Runtime.Cuda.CudaArchitecture.SM_80 : ILGPU.Runtime.Cuda.CudaArchitecture.SM_90;
        using var ptx = new PtxCompiler(arch, ILGPU.Runtime.Cuda.CudaInstructionSet.ISA_78);
        var text = ptx.CompileExplicitlyGrouped(typeof(GemmGpuVectorized).GetMethod(nameof(GemmGpuVectorized.SplitKKernel), OpsTest.Any)!);
        Assert.Contains(".entry", text);
        Assert.Contains("membar.gl;", text);                     // MemoryFence.DeviceLevel: the partials before the count
        Assert.Contains("atom.add.global.u32", text);            // the tile's arrival count
        Assert.Contains("atom.add.global.f32", text);            // the other planes read through L2
        Assert.Contains("bar.red.or.pred", text);
        Assert.Contains("ld.global.v4.f32", text);
        Assert.Contains("st.global.v4.f32", text);
        Assert.DoesNotContain(".local", text);
    }
}
