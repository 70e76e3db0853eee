using BenchmarkDotNet.Attributes;
using Microsoft.ML.OnnxRuntime;
using SkTuning.Gpu.Benchmarking;
using SkTuning.Gpu.Engine;
using SkTuning.Gpu.Import;

namespace SkTuning.Gpu.Benchmarks;

/// <summary>
/// End to end on the real MiniLM at B=32, T=64, SK-Prefix m=12: ONNX Runtime's forward (baseline), the engine's
/// forward with the shared prefix, and one SK-Prefix step (forward + backward to the prefix).
/// </summary>
[MemoryDiagnoser]
public class EngineBenchmarks
{
    private FrozenModel _model = null!;
    private InferenceSession _session = null!;
    private List<NamedOnnxValue> _inputs = null!;
    private CpuBackend _backend = null!;
    private TransformerEngine _engine = null!;
    private TokenBatch _batch = null!;
    private DeviceArray<float> _prefix = null!, _dPrefix = null!, _dHidden = null!;

    [GlobalSetup]
    public void Setup()
    {
        _model = FrozenModel.Load("minilm");
        (_batch, _inputs) = EngineBenchmark.Inputs(_model.Spec, 32, 64);
        _session = new InferenceSession(_model.Source.OnnxPath);
        _backend = new CpuBackend();
        _engine = new TransformerEngine(_backend, _model.Spec, _model.Weights);
        var rng = new Random(3);
        int n = 2 * _model.Spec.Layers * 12 * _model.Spec.Hidden;
        _prefix = _backend.UploadNew(Enumerable.Range(0, n).Select(_ => (float)rng.NextDouble() - 0.5f).ToArray());
        _dPrefix = _backend.Allocate(n);
        _dHidden = _backend.UploadNew(Enumerable.Range(0, 32 * 64 * _model.Spec.Hidden).Select(_ => ((float)rng.NextDouble() - 0.5f) * 1e-3f).ToArray());
    }

    [Benchmark(Baseline = true)]
    public void OnnxRuntimeForward()
    {
        using var _ = _session.Run(_inputs, ["last_hidden_state"]);
    }

    [Benchmark]
    public void EngineForward() => _engine.Forward(_batch, default, _prefix.All);

    [Benchmark]
    public void SkPrefixStep()
    {
        _engine.Forward(_batch, default, _prefix.All);
        _engine.Backward(_dHidden.All, default, _dPrefix.All);
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _engine.Dispose(); _backend.Dispose(); _session.Dispose();
    }
}
