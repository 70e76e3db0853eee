using System.Diagnostics;
using Microsoft.ML.OnnxRuntime;
using SkTuning.Gpu.Data;
using SkTuning.Gpu.Engine;
using SkTuning.Gpu.Import;
using SkTuning.Gpu.Onnx;
using SkTuning.Gpu.Training;
using SkTuning.Gpu.ZeroShot;

namespace SkTuning.Gpu.Benchmarking;

/// <summary>One line of the device check: a parity error or a timing.</summary>
/// <param name="Name">What was checked.</param>
/// <param name="Value">Error (normwise max|gpu − cpu| / max|cpu|) or seconds.</param>
/// <param name="Limit">For parity lines, the largest acceptable error; null for timings.</param>
/// <param name="Note">Extra information (GFLOP/s, ratio).</param>
public sealed record DeviceCheckLine(string Name, double Value, double? Limit, string Note = "")
{
    /// <summary>Parity within its limit (timings always pass).</summary>
    public bool Passed => Limit is not { } limit || Value <= limit;
}

/// <summary>
/// The GPU check (run on the CUDA machine from the self-contained publish, which cannot carry the 91 MB pretrained
/// model): a MiniLM-shaped BERT with random weights runs on the ILGPU backend and on the CPU backend; forward states,
/// prefix and prompt gradients and a full SK-Prefix training step's gradients must agree, and the engine is timed
/// against ONNX Runtime's forward of the same graph. With <c>tiny</c> sizes it runs on ILGPU's CPU simulator, which is
/// how CI exercises this code.
/// </summary>
public static class DeviceCheck
{
    /// <summary>Runs the check on <paramref name="gpu"/> and returns its lines (parity first, then timings).</summary>
    public static IReadOnlyList<DeviceCheckLine> Run(GpuBackend gpu, bool tiny, int iterations, Action<string>? log = null)
    {
        var o = tiny
            ? new BertFixtureOptions(Layers: 2, Hidden: 16, Heads: 2, FfnSize: 32, VocabSize: 40, MaxPositions: 12, Seed: 11)
            : new BertFixtureOptions(Layers: 6, Hidden: 384, Heads: 12, FfnSize: 1536, VocabSize: 30522, MaxPositions: 512, Seed: 11);
        int B = tiny ? 2 : 32, T = tiny ? 5 : 64, m = tiny ? 3 : 12, d = o.Hidden, L = o.Layers;
        log?.Invoke($"device check on {gpu.Name} ({gpu.Device.Accelerator.Name}): BERT L={L} d={d}, B={B} T={T} m={m}");
        var weights = FixtureModels.RandomBertWeights(o);
        var spec = weights.Spec;
        var (tokens, ortInputs) = EngineBenchmark.Inputs(spec, B, T);
        var rng = new Random(5);
        float[] R(int n, float scale = 1f) { var a = new float[n]; for (int i = 0; i < n; i++) a[i] = (float)(rng.NextDouble() * 2 - 1) * scale; return a; }
        var prefix = R(2 * L * m * d);
        var prompt = R(m * d);
        var lines = new List<DeviceCheckLine>();

        using var cpu = new CpuBackend();
        foreach (var (label, usePrompt) in new[] { ("prefix", false), ("prompt", true) })
        {
            int rows = B * (T + (usePrompt ? m : 0));
            var dHidden = R(rows * d, 1e-2f);
            var c = ForwardBackward(cpu, weights, tokens, usePrompt ? prompt : [], usePrompt ? [] : prefix, dHidden);
            var g = ForwardBackward(gpu, weights, tokens, usePrompt ? prompt : [], usePrompt ? [] : prefix, dHidden);
            lines.Add(new DeviceCheckLine($"engine forward with {label} (hidden states)", Normwise(g.Hidden, c.Hidden), 1e-4));
            lines.Add(new DeviceCheckLine($"engine backward to the {label}", Normwise(g.Gradient, c.Gradient), 1e-3));
        }
        var stepCpu = TrainingStep(cpu, weights, tokens, m);
        var stepGpu = TrainingStep(gpu, weights, tokens, m);
        lines.Add(new DeviceCheckLine("SK-Prefix step: loss", Math.Abs(stepGpu.Loss - stepCpu.Loss) / Math.Max(1e-6, Math.Abs(stepCpu.Loss)), 1e-4));
        lines.Add(new DeviceCheckLine("SK-Prefix step: adapter + head gradients", Normwise(stepGpu.Gradients, stepCpu.Gradients), 1e-3));

        log?.Invoke("timing");
        double forwardGflop = EngineBenchmark.ForwardFlops(spec, B, T, m) / 1e9;
        double stepGflop = forwardGflop + EngineBenchmark.BackwardFlops(spec, B, T, m) / 1e9;
        double ort;
        using (var session = new InferenceSession(FixtureModels.BertBytes(weights)))
        {
            var inputs = EngineBenchmark.ForSession(session, ortInputs);
            ort = EngineBenchmark.Median(iterations, () => { using var _ = session.Run(inputs, ["last_hidden_state"]); });
        }
        lines.Add(new DeviceCheckLine("onnxruntime forward (CPU provider)", ort, null, Rate(forwardGflop, ort)));
        using (var engine = new TransformerEngine(gpu, spec, weights))
        using (var p = gpu.UploadNew(prefix))
        using (var dp = gpu.Allocate(prefix.Length))
        using (var dh = gpu.UploadNew(R(B * T * d, 1e-2f)))
        {
            double fwd = EngineBenchmark.Median(iterations, () => { engine.Forward(tokens, default, p.All); gpu.Synchronize(); });
            lines.Add(new DeviceCheckLine($"engine forward ({gpu.Name})", fwd, null, $"{Rate(forwardGflop, fwd)}, {fwd / ort:F2}x the ORT CPU time"));
            double step = EngineBenchmark.Median(iterations, () =>
            {
                engine.Forward(tokens, default, p.All);
                engine.Backward(dh.All, default, dp.All);
                gpu.Synchronize();
            });
            lines.Add(new DeviceCheckLine($"engine forward + backward to the prefix ({gpu.Name})", step, null, Rate(stepGflop, step)));
        }
        var timed = TrainingStepTime(gpu, weights, tokens, m, iterations);
        lines.Add(new DeviceCheckLine($"full SK-Prefix training step incl. AdamW ({gpu.Name})", timed, null, Rate(stepGflop, timed)));
        return lines;
    }

    private static string Rate(double gflop, double seconds) => $"{gflop / seconds:F0} GFLOP/s";

    /// <summary>max|a − b| / max|b|.</summary>
    public static double Normwise(float[] actual, float[] expected)
    {
        double diff = 0, scale = 0;
        for (int i = 0; i < expected.Length; i++)
        {
            if (!float.IsFinite(actual[i])) return double.PositiveInfinity;
            diff = Math.Max(diff, Math.Abs(actual[i] - expected[i]));
            scale = Math.Max(scale, Math.Abs(expected[i]));
        }
        return diff / Math.Max(scale, 1e-30);
    }

    private static (float[] Hidden, float[] Gradient) ForwardBackward(Backend backend, ModelWeights weights, TokenBatch tokens, float[] prompt, float[] prefix, float[] dHidden)
    {
        using var engine = new TransformerEngine(backend, weights.Spec, weights);
        using var p = backend.UploadNew(prompt);
        using var k = backend.UploadNew(prefix);
        using var dh = backend.UploadNew(dHidden);
        using var dp = backend.Allocate(prompt.Length);
        using var dk = backend.Allocate(prefix.Length);
        var hidden = backend.ToHost(engine.Forward(tokens, p.Slice(0, prompt.Length), k.Slice(0, prefix.Length)));
        engine.Backward(dh.All, dp.Slice(0, prompt.Length), dk.Slice(0, prefix.Length));
        var gradient = prompt.Length > 0 ? backend.ToHost(dp.Slice(0, prompt.Length)) : backend.ToHost(dk.Slice(0, prefix.Length));
        return (hidden, gradient);
    }

    private static SkTuningModel StepModel(Backend backend, ModelWeights weights, int m)
    {
        var rng = new Random(9);
        var states = new float[m * weights.Spec.Hidden];
        for (int i = 0; i < states.Length; i++) states[i] = (float)(rng.NextDouble() * 2 - 1);
        var adapter = new SemanticAdapter(backend, new AdapterShape(AdapterKind.Prefix, AdapterMode.Token, m, weights.Spec.Hidden, weights.Spec.Layers), [states]);
        var head = new TaskHead(backend, TaskKind.Classification, Pooling.Mean, weights.Spec.Hidden, 2);
        var model = new SkTuningModel(backend, weights.Spec, weights, adapter, head);
        model.Initialize(4);
        return model;
    }

    private static HeadTargets Targets(TokenBatch tokens) => new(Classes: Enumerable.Range(0, tokens.Batch).Select(i => i % 2).ToArray());

    private static (float Loss, float[] Gradients) TrainingStep(Backend backend, ModelWeights weights, TokenBatch tokens, int m)
    {
        using var model = StepModel(backend, weights, m);
        float loss = model.ForwardBackward(tokens, Targets(tokens), seed: 77);
        return (loss, backend.ToHost(model.Parameters.Gradients.All));
    }

    private static double TrainingStepTime(Backend backend, ModelWeights weights, TokenBatch tokens, int m, int iterations)
    {
        using var model = StepModel(backend, weights, m);
        int step = 0;
        return EngineBenchmark.Median(iterations, () =>
        {
            model.ForwardBackward(tokens, Targets(tokens), seed: (ulong)step);
            model.OptimizerStep(1e-3f, 0.01f, 1f, ++step);
            backend.Synchronize();
        });
    }
}
