using SkTuning.Gpu.Benchmarking;
using SkTuning.Gpu.Engine;
using SkTuning.Gpu.Kernels.Gpu;
using SkTuning.Gpu.Onnx;
using Xunit.Abstractions;

namespace SkTuning.Gpu.Tests.Engine;

/// <summary>
/// The device work of one SK-Prefix training step on the ILGPU backend (simulator; the counts are the same on CUDA):
/// launches, memsets/copies, uploads and host waits. Pinned so that a change that adds launches or host round-trips
/// is seen. The step is sync-free: the loss, the gradient norm and the clip scale stay on the device, so the host never
/// waits inside a step (it reads the loss when it logs it).
/// </summary>
public class DeviceTrafficTests(ITestOutputHelper output)
{
    private DeviceTraffic Step(int layers)
    {
        var weights = FixtureModels.RandomBertWeights(new BertFixtureOptions(Layers: layers, Hidden: 16, Heads: 2, FfnSize: 32, VocabSize: 40, MaxPositions: 12, Seed: 11));
        var (tokens, _) = EngineBenchmark.Inputs(weights.Spec, 2, 5);
        using var gpu = new GpuBackend(GpuDevice.CreateCpuSimulator());
        var t = DeviceCheck.StepTraffic(gpu, weights, tokens, m: 3);
        foreach (var line in DeviceCheck.StepTrafficLines(t, $"L={layers}")) output.WriteLine(line.Format());
        return t;
    }

    [Fact]
    public void ATrainingStepsDeviceTrafficIsCountedAndPinned()
    {
        var t = Step(2);
        // 2026-12-01, 2 layers: 66 launches, 18 memsets/copies, 7 uploads, 2 host waits (the loss and the gradient norm).
        // 2026-12-02, sync-free: 68 launches (+ the loss and clip-scale reductions), 18 memsets/copies, 7 uploads, 0 host waits.
        Assert.True(t.Launches is > 40 and <= 68, t.ToString());
        Assert.True(t.MemoryOperations is > 0 and <= 18, t.ToString());
        Assert.True(t.Uploads is > 0 and <= 7, t.ToString());
        Assert.Equal(0, t.Synchronizations);
        Assert.Equal(t.Launches, t.Histogram().Sum(e => e.Count));
    }

    [Fact]
    public void AMiniLmShapedStepsLaunchesArePinned()
    {
        // MiniLM's 6 layers at narrow widths: the launches depend on the layer count, not on the widths.
        var t = Step(6);
        Assert.True(t.Launches <= 172, t.ToString());
        Assert.Equal(0, t.Synchronizations);
        Assert.Equal(t.Launches, t.Histogram().Sum(e => e.Count));
    }
}
