using BenchmarkDotNet.Attributes;
using SkTuning.Gpu.Kernels;

namespace SkTuning.Gpu.Benchmarks;

/// <summary>
/// The CPU GEMM at MiniLM's shapes (B·T = 2048 rows) against the naive TensorPrimitives.Dot version, and with B in bf16
/// (frozen weights): the vdpbf16ps kernel where the CPU has it, and the widening fallback.
/// </summary>
[MemoryDiagnoser]
public class GemmBenchmarks
{
    private float[] _a = [], _b = [], _c = [];
    private PackedBf16Matrix? _b16;

    /// <summary>(M, N, K) of the benchmark: QKV projection and FFN up-projection of MiniLM at B=32, T=64.</summary>
    [Params("2048x1152x384", "2048x1536x384", "2048x384x1536")]
    public string Shape { get; set; } = "";

    private (int M, int N, int K) Dims => Shape.Split('x').Select(int.Parse).ToArray() is var d ? (d[0], d[1], d[2]) : default;

    [GlobalSetup]
    public void Setup()
    {
        var (m, n, k) = Dims;
        var rng = new Random(1);
        _a = Enumerable.Range(0, m * k).Select(_ => (float)rng.NextDouble() - 0.5f).ToArray();
        _b = Enumerable.Range(0, k * n).Select(_ => (float)rng.NextDouble() - 0.5f).ToArray();
        _c = new float[m * n];
        _b16 = PackedBf16Matrix.Pack(_b, k, n);
    }

    [Benchmark(Baseline = true)]
    public void Naive() { var (m, n, k) = Dims; Gemm.NNNaive(m, n, k, _a, _b, _c); }

    [Benchmark]
    public void NN() { var (m, n, k) = Dims; Gemm.NN(m, n, k, _a, _b, _c); }

    [Benchmark]
    public void NT() { var (m, n, k) = Dims; Gemm.NT(m, n, k, _a, _b, _c); }

    [Benchmark]
    public void TN() { var (m, n, k) = Dims; Gemm.TN(m, n, k, _a, _b, _c); }

    [Benchmark]
    public void NNBf16() { var (m, n, k) = Dims; Gemm.NNBf16(m, n, k, _a, _b16!, _c); }

    [Benchmark]
    public void NNBf16Widening() { var (m, n, k) = Dims; Gemm.NNBf16(m, n, k, _a, _b16!, _c, path: Bf16GemmPath.Widening); }
}
