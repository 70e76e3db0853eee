using BenchmarkDotNet.Attributes;
using SkTuning.Gpu.Benchmarking;
using SkTuning.Gpu.Data;
using SkTuning.Gpu.Engine;
using SkTuning.Gpu.Import;
using SkTuning.Gpu.Training;

namespace SkTuning.Gpu.Benchmarks;

/// <summary>
/// One training step (forward, backward, gradient norm, fused AdamW) per method on the real MiniLM at B=32, T=64,
/// with each method's comparison settings; full fine-tuning is the baseline of the Ratio column.
/// </summary>
[MemoryDiagnoser]
public class MethodStepBenchmarks
{
    private FrozenModel _model = null!;
    private CpuBackend _backend = null!;
    private SkTuningModel _tuned = null!;
    private TokenBatch _tokens = null!;
    private HeadTargets _targets = null!;
    private TrainOptions _options = null!;
    private int _step;

    /// <summary>The method timed.</summary>
    [Params("full", "sk-prefix", "sk-prompt", "prefix", "prompt", "ptuning-v2", "lora", "linear")]
    public string TuningMethod { get; set; } = "";

    [GlobalSetup]
    public void Setup()
    {
        _model = FrozenModel.Load("minilm");
        _backend = new CpuBackend();
        (_tokens, _) = EngineBenchmark.Inputs(_model.Spec, 32, 64);
        _targets = new HeadTargets(Classes: Enumerable.Range(0, 32).Select(i => i % 2).ToArray());
        _options = MethodDefaults.For(TuningMethod, new TrainOptions { SemanticText = SemanticTexts.For("sst2") });
        var config = Trainer.Configure(_model, "minilm", "sst2", TaskKind.Classification, "accuracy", ["0", "1"], 2, null, _options);
        _tuned = TunedModelBuilder.Build(_model, config, _backend, null);
        _tuned.Initialize(_options.Seed);
    }

    [Benchmark]
    public void TrainingStep()
    {
        _step++;
        _tuned.ForwardBackward(_tokens, _targets, (ulong)_step);
        _tuned.OptimizerStep(_options.LearningRate, _options.WeightDecay, _options.MaxGradNorm, _step);
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _tuned.Dispose();
        _backend.Dispose();
    }
}
