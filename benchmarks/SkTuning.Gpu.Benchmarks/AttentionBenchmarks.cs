using BenchmarkDotNet.Attributes;
using SkTuning.Gpu.Kernels;

namespace SkTuning.Gpu.Benchmarks;

/// <summary>
/// Shared-prefix attention (one [m, d] prefix read by the whole batch) against the authors' approach of copying the
/// prefix once per example, at MiniLM's shape B=32, T=64, 12 heads × 32, m=12.
/// </summary>
[MemoryDiagnoser]
public class AttentionBenchmarks
{
    private readonly AttentionShape _shape = new(32, 64, 12, 32, 12, 12);
    private float[] _qkv = [], _pk = [], _pv = [], _mask = [], _out = [], _probs = [], _dOut = [], _dqkv = [], _dpk = [], _dpv = [];

    [GlobalSetup]
    public void Setup()
    {
        var rng = new Random(2);
        float[] R(int n) => Enumerable.Range(0, n).Select(_ => (float)rng.NextDouble() - 0.5f).ToArray();
        _qkv = R(_shape.QkvLength); _pk = R(_shape.PrefixElements); _pv = R(_shape.PrefixElements);
        _mask = Enumerable.Repeat(1f, _shape.MaskLength).ToArray();
        _out = new float[_shape.OutputLength]; _probs = new float[_shape.ProbsLength];
        _dOut = R(_shape.OutputLength); _dqkv = new float[_shape.QkvLength]; _dpk = new float[_shape.PrefixElements]; _dpv = new float[_shape.PrefixElements];
    }

    [Benchmark(Baseline = true)]
    public void ForwardPrefixCopiedPerExample() => Attention.ForwardNaiveConcatenated(_qkv, _pk, _pv, _mask, _out, _probs, _shape, -10000f, false);

    [Benchmark]
    public void ForwardSharedPrefix() => Attention.Forward(_qkv, _pk, _pv, _mask, _out, _probs, _shape, -10000f, false);

    [Benchmark]
    public void BackwardSharedPrefix() => Attention.Backward(_dOut, _qkv, _pk, _pv, _probs, _dqkv, _dpk, _dpv, _shape);
}
