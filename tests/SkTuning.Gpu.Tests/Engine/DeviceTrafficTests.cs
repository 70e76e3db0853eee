using SkTuning.Gpu.Benchmarking;
using SkTuning.Gpu.Engine;
using SkTuning.Gpu.Kernels.Gpu;
using SkTuning.Gpu.Onnx;

namespace SkTuning.Gpu.Tests.Engine;

/// <summary>
/// The device work of one SK-Prefix training step on the ILGPU backend (simulator; the counts are the same on CUDA):
/// launches, memsets/copies, uploads and host waits. Pinned so that a change that adds launches or host round-trips
/// is seen; the targets of a sync-free step (≤ 100 launches, no host wait but a logged loss) are not met yet.
/// </summary>
public class DeviceTrafficTests
{
    [Fact]
    public void ATrainingStepsDeviceTrafficIsCountedAndPinned()
    {
        var weights = FixtureModels.RandomBertWeights(new BertFixtureOptions(Layers: 2, Hidden: 16, Heads: 2, FfnSize: 32, VocabSize: 40, MaxPositions: 12, Seed: 11));
        var (tokens, _) = EngineBenchmark.Inputs(weights.Spec, 2, 5);
        using var gpu = new GpuBackend(GpuDevice.CreateCpuSimulator());
        var t = DeviceCheck.StepTraffic(gpu, weights, tokens, m: 3);
        // Measured 2026-12-01 with 2 layers: 66 launches (~25 per layer), 18 memsets/copies, 7 uploads (ids, mask, types,
        // positions, labels), 2 host waits (the loss and the gradient norm for clipping). Lower these pins when fusing.
        Assert.True(t.Launches is > 40 and <= 66, t.ToString());
        Assert.True(t.MemoryOperations is > 0 and <= 18, t.ToString());
        Assert.True(t.Uploads is > 0 and <= 7, t.ToString());
        Assert.True(t.Synchronizations is > 0 and <= 2, t.ToString());
    }
}
