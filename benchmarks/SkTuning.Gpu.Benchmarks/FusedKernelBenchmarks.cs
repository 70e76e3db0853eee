using BenchmarkDotNet.Attributes;
using SkTuning.Gpu.Kernels;

namespace SkTuning.Gpu.Benchmarks;

/// <summary>
/// The fused AdamW step against its unfused form (one pass per arithmetic operation, as an eager framework without a
/// fused optimizer), at the sizes where it matters: SK-Prefix's trainable values and full fine-tuning's whole model.
/// </summary>
[MemoryDiagnoser]
public class FusedKernelBenchmarks
{
    private float[] _p = [], _g = [], _m = [], _v = [];
    private int _step;

    /// <summary>Values updated: SK-Prefix on MiniLM (1,774,850) and full fine-tuning of MiniLM (22,566,146).</summary>
    [Params(1_774_850, 22_566_146)]
    public int Values { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        var rng = new Random(1);
        float[] R(float scale) { var a = new float[Values]; for (int i = 0; i < a.Length; i++) a[i] = (float)(rng.NextDouble() - 0.5) * scale; return a; }
        _p = R(0.1f); _g = R(1f); _m = R(1e-3f); _v = new float[Values];
        for (int i = 0; i < _v.Length; i++) _v[i] = (float)rng.NextDouble() * 1e-4f;
    }

    private AdamWStep Step() => new(1e-3f, 0.9f, 0.999f, 1e-8f, 0.01f, ++_step);

    [Benchmark(Baseline = true)]
    public void AdamWUnfused() => AdamW.StepUnfused(_p, _g, _m, _v, Step(), clipScale: 0.5f);

    [Benchmark]
    public void AdamWFused() => AdamW.Step(_p, _g, _m, _v, Step(), clipScale: 0.5f);
}
