using SkTuning.Gpu.Benchmarking;
using SkTuning.Gpu.Engine;
using SkTuning.Gpu.Kernels.Gpu;
using SkTuning.Gpu.Onnx;

namespace SkTuning.Gpu.Tests.Engine;

/// <summary>
/// Training steps whose loss, gradient norm and clip scale stay on the device: on the simulator they give the CPU
/// backend's parameters, with clipping active, and the host reads the step log once at the end.
/// </summary>
public class SyncFreeStepTests
{
    [Fact]
    public void ClippedStepsOnTheSimulatorGiveTheCpuParameters()
    {
        var weights = FixtureModels.RandomBertWeights(new BertFixtureOptions(Layers: 2, Hidden: 16, Heads: 2, FfnSize: 32, VocabSize: 40, MaxPositions: 12, Seed: 5));
        var (tokens, _) = EngineBenchmark.Inputs(weights.Spec, 2, 5);
        const float maxNorm = 1e-3f;
        using var cpu = new CpuBackend();
        var expected = DeviceCheck.TrainedParameters(cpu, weights, tokens, m: 3, steps: 3, maxNorm);
        using var gpu = new GpuBackend(GpuDevice.CreateCpuSimulator());
        var actual = DeviceCheck.TrainedParameters(gpu, weights, tokens, m: 3, steps: 3, maxNorm);

        Assert.All(expected.Steps, s => Assert.True(s.GradientNorm > 10 * maxNorm, $"norm {s.GradientNorm}: clipping not active"));
        for (int i = 0; i < 3; i++)
        {
            Assert.True(Math.Abs(actual.Steps[i].Loss - expected.Steps[i].Loss) <= 1e-4 * Math.Abs(expected.Steps[i].Loss), $"step {i + 1} loss");
            Assert.True(Math.Abs(actual.Steps[i].GradientNorm - expected.Steps[i].GradientNorm) <= 1e-3 * expected.Steps[i].GradientNorm, $"step {i + 1} norm");
        }
        double err = DeviceCheck.Normwise(actual.Parameters, expected.Parameters);
        Assert.True(err <= 1e-4, $"parameters: normwise error {err:E2}");
    }
}
