using ILGPU;
using ILGPU.Runtime;
using SkTuning.Gpu.Engine;
using SkTuning.Gpu.Kernels;
using SkTuning.Gpu.Kernels.Gpu;

namespace SkTuning.Gpu.Benchmarking;

/// <summary>
/// Every GEMM tier (<see cref="GemmTier"/>) forced at a model's GEMM shapes: parity against the CPU backend's GEMM and
/// GFLOP/s against the H200's fp32 and TF32 peaks. The automatic choice would hide a broken tier behind another, so each
/// tier the operands allow gets its own line.
/// </summary>
public static class GemmTierCheck
{
    /// <summary>The H200's dense fp32 (CUDA-core FMA) peak, GFLOP/s.</summary>
    public const double H200Fp32Gflops = 67_000;

    /// <summary>The H200's dense TF32 tensor-core peak, GFLOP/s.</summary>
    public const double H200Tf32Gflops = 494_000;

    /// <summary>The tiers compared (<see cref="GemmTier.Auto"/> resolves to one of them).</summary>
    public static IReadOnlyList<GemmTier> Tiers { get; } = [GemmTier.Tiled64, GemmTier.Vectorized128, GemmTier.SplitK];

    /// <summary>The step's GEMMs at shapes <paramref name="s"/>: projections forward (NN), the FFN's dX (NT) and a dW (TN).</summary>
    public static IReadOnlyList<(string Name, GemmOp Op, int M, int N, int K)> Shapes(KernelShapes s)
    {
        int rows = s.Rows, d = s.Hidden, F = s.FfnSize;
        return
        [
            ("fused QKV", GemmOp.NN, rows, 3 * d, d),
            ("FFN up", GemmOp.NN, rows, F, d),
            ("FFN down", GemmOp.NN, rows, d, F),
            ("FFN up dX", GemmOp.NT, rows, d, F),
            ("FFN up dW", GemmOp.TN, d, F, rows),
        ];
    }

    /// <summary>Parity of every tier at every shape (+ bias, then accumulate), one line each.</summary>
    public static void Parity(GpuDevice device, KernelShapes s, Action<DeviceCheckLine> emit)
    {
        foreach (var (name, op, m, n, k) in Shapes(s))
        {
            var a = Random(m * k, 51);
            var b = Random(k * n, 52);
            var bias = Random(n, 53);
            var c0 = Random(m * n, 54);
            var expected = (float[])c0.Clone();
            Cpu(op, m, n, k, a, b, expected, bias);
            foreach (var tier in Tiers)
            {
                string label = $"kernel gemm {op} {m}x{n}x{k} ({name}) tier {tier} + bias, accumulate";
                DeviceCheckLine line;
                try
                {
                    using var ga = device.Accelerator.Allocate1D(a);
                    using var gb = device.Accelerator.Allocate1D(b);
                    using var gc = device.Accelerator.Allocate1D(c0);
                    using var gbias = device.Accelerator.Allocate1D(bias);
                    var plan = Plan(device, op, m, n, k, ga.View, gb.View, gc.View, tier);
                    if (plan is null)
                    {
                        emit(DeviceCheckLine.Info(label, "not applicable to these operands"));
                        continue;
                    }
                    Launch(device, op, m, n, k, ga.View, gb.View, gc.View, gbias.View, tier);
                    device.Synchronize();
                    line = new DeviceCheckLine(label, DeviceCheck.Normwise(gc.GetAsArray1D(), expected), KernelParity.ReductionLimit,
                        $"{plan.Value.Splits} split(s)");
                }
                catch (Exception e)
                {
                    line = new DeviceCheckLine(label, double.PositiveInfinity, KernelParity.ReductionLimit, DeviceCheck.Describe(e));
                }
                emit(line);
            }
        }
    }

    /// <summary>
    /// Median time of every tier at every shape, with GFLOP/s and its share of the H200's fp32 and TF32 peaks (meaningful
    /// on the H200 only), and which tier <see cref="GemmTier.Auto"/> picks.
    /// </summary>
    public static void Timings(GpuDevice device, KernelShapes s, int iterations, Action<DeviceCheckLine> emit)
    {
        foreach (var (name, op, m, n, k) in Shapes(s))
        {
            using var ga = device.Accelerator.Allocate1D(Random(m * k, 61));
            using var gb = device.Accelerator.Allocate1D(Random(k * n, 62));
            using var gc = device.Accelerator.Allocate1D<float>(m * n);
            var auto = Plan(device, op, m, n, k, ga.View, gb.View, gc.View, GemmTier.Auto)!.Value;
            foreach (var tier in Tiers)
            {
                if (Plan(device, op, m, n, k, ga.View, gb.View, gc.View, tier) is not { } plan) continue;
                double seconds = EngineBenchmark.Median(iterations, () =>
                {
                    Launch(device, op, m, n, k, ga.View, gb.View, gc.View, default, tier);
                    device.Synchronize();
                });
                double gflops = 2.0 * m * n * k / seconds / 1e9;
                emit(new DeviceCheckLine($"gemm {op} {m}x{n}x{k} ({name}) tier {tier}", seconds, null,
                    $"{gflops:F0} GFLOP/s = {100 * gflops / H200Fp32Gflops:F1}% of the H200 fp32 peak, {100 * gflops / H200Tf32Gflops:F1}% of TF32; " +
                    $"{plan.Splits} split(s){(tier == auto.Tier ? " (auto)" : "")}"));
            }
        }
    }

    private static (GemmTier Tier, int Splits)? Plan(GpuDevice device, GemmOp op, int m, int n, int k, ArrayView<float> a,
        ArrayView<float> b, ArrayView<float> c, GemmTier tier)
    {
        try { return GemmGpu.Plan(device, m, n, k, op == GemmOp.TN, op == GemmOp.NT, a, b, c, tier); }
        catch (ArgumentException) { return null; }
    }

    private static void Launch(GpuDevice device, GemmOp op, int m, int n, int k, ArrayView<float> a, ArrayView<float> b,
        ArrayView<float> c, ArrayView<float> bias, GemmTier tier)
    {
        switch (op)
        {
            case GemmOp.NN: GemmGpu.NN(device, m, n, k, a, b, c, bias, accumulate: bias.Length > 0, tier); break;
            case GemmOp.NT: GemmGpu.NT(device, m, n, k, a, b, c, bias, accumulate: bias.Length > 0, tier); break;
            default: GemmGpu.TN(device, m, n, k, a, b, c, bias, accumulate: bias.Length > 0, tier); break;
        }
    }

    private static void Cpu(GemmOp op, int m, int n, int k, float[] a, float[] b, float[] c, float[] bias)
    {
        switch (op)
        {
            case GemmOp.NN: Gemm.NN(m, n, k, a, b, c, bias, accumulate: true); break;
            case GemmOp.NT: Gemm.NT(m, n, k, a, b, c, bias, accumulate: true); break;
            default: Gemm.TN(m, n, k, a, b, c, bias, accumulate: true); break;
        }
    }

    private static float[] Random(int n, int seed)
    {
        var rng = new Random(seed);
        var a = new float[n];
        for (int i = 0; i < n; i++) a[i] = (float)(rng.NextDouble() * 2 - 1);
        return a;
    }
}
