using SkTuning.Gpu.Benchmarking;
using SkTuning.Gpu.Engine;
using SkTuning.Gpu.Import;
using SkTuning.Gpu.Onnx;

namespace SkTuning.Gpu.Tests.Benchmarking;

public sealed class EngineBenchmarkTests : IDisposable
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "sktune-bench-tests", Guid.NewGuid().ToString("N"));

    public EngineBenchmarkTests() => Directory.CreateDirectory(_dir);

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public void FlopsCountGroupedKvHeadsAndSwiGlu()
    {
        var spec = DecoderFixtures.RandomWeights(new DecoderFixtureOptions { Layers = 3, Hidden = 64, Heads = 8, KvHeads = 2, FfnSize = 96 }).Spec;
        int B = 2, T = 10, m = 4;
        double rows = B * T, d = 64, kv = 2 * 8, f = 96, dh = 8;
        // q and o d·d, k and v d·kvDim, SwiGLU gate/up/down 3·d·F; attention Q·Kᵀ and P·V over T + m keys.
        double layer = 2 * rows * (d * d + 2 * d * kv + d * d + 3 * d * f) + 2 * 2 * B * 8 * T * (T + m) * dh;
        Assert.Equal(3 * layer, EngineBenchmark.ForwardFlops(spec, B, T, m), 6);
        double backward = 2 * rows * (d * d + 2 * d * kv + d * d + 3 * d * f) + 2 * 2 * 2 * B * 8 * T * (T + m) * dh;
        Assert.Equal(3 * backward, EngineBenchmark.BackwardFlops(spec, B, T, m), 6);

        var gpt2 = DecoderFixtures.RandomWeights(new DecoderFixtureOptions { Family = ModelFamily.Gpt2, Layers = 1, Hidden = 32, Heads = 4, FfnSize = 64 }).Spec;
        Assert.Equal(2.0 * 5 * 32 * (3 * 32 + 32 + 2 * 64) + 4.0 * 4 * 5 * 5 * 8, EngineBenchmark.ForwardFlops(gpt2, 1, 5, 0), 6);
    }

    [Fact]
    public void BenchRunsOnADecoderWithoutATokenizer()
    {
        var path = Path.Combine(_dir, "model.onnx");
        DecoderFixtures.Write(path, new DecoderFixtureOptions { Layers = 2, Hidden = 32, Heads = 4, KvHeads = 2, FfnSize = 48, VocabSize = 50 });
        var imported = ModelImporter.Import(path);
        using var backend = new CpuBackend();
        var r = EngineBenchmark.Run("tiny-llama", imported, backend, batch: 2, seq: 8, prefix: 3, iterations: 1);
        Assert.True(r.OrtForwardS > 0 && r.EngineForwardS > 0 && r.TrainStepS > 0 && r.PeakGflops > 0);
        // The clock comes from a latency-bound FMA chain in the thread's CPU time: a real core's, whatever the load.
        Assert.InRange(r.PeakClockGhz, 0.3, 8.0);
        Assert.Equal(2 * 2 * 3 * 16 * 4L, r.PrefixBytes); // [L, 2, m, kvDim] floats
        Assert.Contains(r.Rows, row => row.Name.StartsWith("forward: GEMMs", StringComparison.Ordinal));
        Assert.Contains(r.Rows, row => row.Name.StartsWith("backward: attention", StringComparison.Ordinal));
    }
}
