using SkTuning.Gpu.Data;
using SkTuning.Gpu.Engine;
using SkTuning.Gpu.Import;
using SkTuning.Gpu.Training;

namespace SkTuning.Gpu.Benchmarking;

/// <summary>One method's timed training step.</summary>
/// <param name="Method">Method name.</param>
/// <param name="Seconds">Median seconds of one step (forward, backward, norm, AdamW), or NaN if it failed.</param>
/// <param name="TrainableParameters">Its trainable values.</param>
/// <param name="PeakBytes">Peak backend memory during the step.</param>
/// <param name="Error">Why it failed, or null.</param>
public sealed record MethodStep(string Method, double Seconds, long TrainableParameters, long PeakBytes, string? Error);

/// <summary>
/// One training step per method at a fixed shape (a full batch of random tokens, binary classification head),
/// each method with its comparison settings: the per-step cost behind <c>sktune compare</c>'s table.
/// </summary>
public static class MethodBenchmark
{
    /// <summary>Times every method in <paramref name="methods"/>.</summary>
    public static IReadOnlyList<MethodStep> Run(FrozenModel model, Backend backend, IReadOnlyList<string> methods, int batch, int seq,
        int iterations, Action<string>? log = null)
    {
        var (tokens, _) = EngineBenchmark.Inputs(model.Spec, batch, seq);
        var targets = new HeadTargets(Classes: Enumerable.Range(0, batch).Select(i => i % 2).ToArray());
        var results = new List<MethodStep>();
        foreach (var method in methods)
        {
            log?.Invoke($"method step: {method}");
            try
            {
                var o = MethodDefaults.For(method, new TrainOptions { SemanticText = SemanticTexts.For("sst2") });
                var config = Trainer.Configure(model, model.Source.Name, "sst2", TaskKind.Classification, "accuracy", ["0", "1"], 2, null, o);
                backend.Memory.ResetPeak();
                using var tuned = TunedModelBuilder.Build(model, config, backend, null);
                tuned.Initialize(o.Seed);
                int step = 0;
                double seconds = EngineBenchmark.Median(iterations, () =>
                {
                    step++;
                    tuned.ForwardBackward(tokens, targets, (ulong)step);
                    tuned.OptimizerStep(o.LearningRate, o.WeightDecay, o.MaxGradNorm, step);
                    backend.Synchronize();
                });
                results.Add(new MethodStep(method, seconds, config.TrainableParameters, backend.Memory.Peak, null));
            }
            catch (Exception e) when (e is SkTuningException or ArgumentException or InvalidOperationException)
            {
                results.Add(new MethodStep(method, double.NaN, 0, 0, e.Message.ReplaceLineEndings(" ")));
            }
        }
        return results;
    }
}
