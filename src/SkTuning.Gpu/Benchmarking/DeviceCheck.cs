using System.Globalization;
using Microsoft.ML.OnnxRuntime;
using SkTuning.Gpu.Data;
using SkTuning.Gpu.Engine;
using SkTuning.Gpu.Import;
using SkTuning.Gpu.Kernels.Gpu;
using SkTuning.Gpu.Onnx;
using SkTuning.Gpu.Training;
using SkTuning.Gpu.ZeroShot;

namespace SkTuning.Gpu.Benchmarking;

/// <summary>One line of the device check: a parity error, a timing, or information about the device.</summary>
/// <param name="Name">What was checked.</param>
/// <param name="Value">Error (normwise max|gpu − cpu| / max|cpu|) or seconds; NaN for an information line.</param>
/// <param name="Limit">For parity lines, the largest acceptable error; null for timings and information.</param>
/// <param name="Note">Extra information (GFLOP/s, ratio, the exception of a failed check).</param>
public sealed record DeviceCheckLine(string Name, double Value, double? Limit, string Note = "")
{
    /// <summary>Parity within its limit (timings and information always pass).</summary>
    public bool Passed => Limit is not { } limit || Value <= limit;

    /// <summary>An information line (no value).</summary>
    public static DeviceCheckLine Info(string name, string note) => new(name, double.NaN, null, note);

    /// <summary>The line as the table prints it: name, value (E2 for parity, ms for timings), limit, PASS/FAIL, note.</summary>
    public string Format()
    {
        var ic = CultureInfo.InvariantCulture;
        string value = double.IsNaN(Value) && Limit is null ? "" :
            Limit is null ? string.Create(ic, $"{Value * 1e3:F2} ms") : string.Create(ic, $"{Value:E2}");
        string limit = Limit is { } l ? string.Create(ic, $"{l:E0}") : "";
        string status = Limit is null ? "" : Passed ? "PASS " : "FAIL ";
        return $"{Name,-58} {value,12}  {limit,8}  {status}{Note}";
    }

    /// <summary>The table's header line.</summary>
    public static string Header => $"{"check",-58} {"result",12}  {"limit",8}  note";
}

/// <summary>What the device check runs.</summary>
/// <param name="Tiny">Simulator sizes (CI runs the check this way on ILGPU's CPU accelerator).</param>
/// <param name="Iterations">Timed runs per timing (median).</param>
/// <param name="FailSection">A section that throws at its start (tests prove one failure costs only its section).</param>
public sealed record DeviceCheckOptions(bool Tiny, int Iterations, string? FailSection = null);

/// <summary>
/// The GPU check (run on the CUDA machine from the self-contained publish, which cannot carry the 91 MB pretrained
/// model): a MiniLM-shaped BERT with random weights runs on the ILGPU backend and on the CPU backend. Sections, each
/// on its own so that one failure costs one section: device information, every kernel's parity at the model's shapes
/// (<see cref="KernelParity"/>), engine forward/backward parity, a training step's parity, ONNX Runtime's forward,
/// and the engine's timings against it. Lines are handed to the caller as they are produced (the CUDA machine may be
/// lost at any moment: what was printed stays). With <c>tiny</c> sizes it runs on ILGPU's CPU simulator, which is how
/// CI exercises this code.
/// </summary>
public static class DeviceCheck
{
    /// <summary>The sections in the order they run.</summary>
    public static IReadOnlyList<string> Sections { get; } = ["device", "kernels", "engine", "step", "launches", "onnxruntime", "timings"];

    /// <summary>
    /// Runs the check on <paramref name="gpu"/>, handing every line to <paramref name="emit"/> as soon as it exists;
    /// returns the number of failed lines (a section that throws adds one failed line with the exception).
    /// </summary>
    public static int Run(GpuBackend gpu, DeviceCheckOptions options, Action<DeviceCheckLine> emit, Action<string>? log = null)
    {
        var o = options.Tiny
            ? new BertFixtureOptions(Layers: 2, Hidden: 16, Heads: 2, FfnSize: 32, VocabSize: 40, MaxPositions: 12, Seed: 11)
            : new BertFixtureOptions(Layers: 6, Hidden: 384, Heads: 12, FfnSize: 1536, VocabSize: 30522, MaxPositions: 512, Seed: 11);
        int B = options.Tiny ? 2 : 32, T = options.Tiny ? 5 : 64, m = options.Tiny ? 3 : 12, d = o.Hidden, L = o.Layers;
        int failed = 0;
        void Emit(DeviceCheckLine line)
        {
            if (!line.Passed) failed++;
            emit(line);
        }

        using var cpu = new CpuBackend();
        ModelWeights? weights = null;
        TokenBatch? tokens = null;
        List<NamedOnnxValue>? ortInputs = null;
        var rng = new Random(5);
        float[] R(int n, float scale = 1f) { var a = new float[n]; for (int i = 0; i < n; i++) a[i] = (float)(rng.NextDouble() * 2 - 1) * scale; return a; }
        float[]? prefix = null, prompt = null;
        double? ort = null;
        void Model()
        {
            if (weights is not null) return;
            weights = FixtureModels.RandomBertWeights(o);
            (tokens, ortInputs) = EngineBenchmark.Inputs(weights.Spec, B, T);
            prefix = R(2 * L * m * d);
            prompt = R(m * d);
        }

        foreach (var section in Sections)
        {
            log?.Invoke($"device check: {section}");
            try
            {
                if (section == options.FailSection) throw new InvalidOperationException($"forced failure of section '{section}' (--fail-section)");
                switch (section)
                {
                    case "device":
                        Emit(DeviceCheckLine.Info("backend", $"{gpu.Name} on {gpu.Device.Accelerator.Name} ({gpu.Device.Accelerator.AcceleratorType})"));
                        Emit(DeviceCheckLine.Info("ILGPU optimization level", GpuDevice.OptimizationLevelName));
                        var info = new StringWriter(CultureInfo.InvariantCulture);
                        gpu.Device.Accelerator.PrintInformation(info);
                        foreach (var text in info.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
                            Emit(DeviceCheckLine.Info("device", text));
                        Emit(DeviceCheckLine.Info("shapes", $"BERT L={L} d={d} heads={o.Heads} FFN={o.FfnSize}, B={B} T={T} m={m}"));
                        break;
                    case "kernels":
                        KernelParity.Run(cpu, gpu, options.Tiny ? KernelShapes.Tiny : KernelShapes.MiniLm, Emit);
                        break;
                    case "engine":
                        Model();
                        foreach (var (label, usePrompt) in new[] { ("prefix", false), ("prompt", true) })
                        {
                            int rows = B * (T + (usePrompt ? m : 0));
                            var dHidden = R(rows * d, 1e-2f);
                            var c = ForwardBackward(cpu, weights!, tokens!, usePrompt ? prompt! : [], usePrompt ? [] : prefix!, dHidden);
                            var g = ForwardBackward(gpu, weights!, tokens!, usePrompt ? prompt! : [], usePrompt ? [] : prefix!, dHidden);
                            Emit(new DeviceCheckLine($"engine forward with {label} (hidden states)", Normwise(g.Hidden, c.Hidden), 1e-4));
                            Emit(new DeviceCheckLine($"engine backward to the {label}", Normwise(g.Gradient, c.Gradient), 1e-3));
                        }
                        break;
                    case "step":
                        Model();
                        var stepCpu = TrainingStep(cpu, weights!, tokens!, m);
                        var stepGpu = TrainingStep(gpu, weights!, tokens!, m);
                        Emit(new DeviceCheckLine("SK-Prefix step: loss", Math.Abs(stepGpu.Loss - stepCpu.Loss) / Math.Max(1e-6, Math.Abs(stepCpu.Loss)), 1e-4));
                        Emit(new DeviceCheckLine("SK-Prefix step: adapter + head gradients", Normwise(stepGpu.Gradients, stepCpu.Gradients), 1e-3));
                        var trainedCpu = TrainedParameters(cpu, weights!, tokens!, m, ClippedSteps, ClippedMaxNorm);
                        var trainedGpu = TrainedParameters(gpu, weights!, tokens!, m, ClippedSteps, ClippedMaxNorm);
                        Emit(new DeviceCheckLine($"{ClippedSteps} sync-free steps, norm clipped to {ClippedMaxNorm}: parameters",
                            Normwise(trainedGpu.Parameters, trainedCpu.Parameters), 1e-4));
                        break;
                    case "launches":
                        // MiniLM's layer count: a step's launches depend on the layers, not on the widths (simulator: narrow layers).
                        Model();
                        var (minilm, stepTokens) = (weights!, tokens!);
                        if (options.Tiny)
                        {
                            minilm = FixtureModels.RandomBertWeights(o with { Layers = 6 });
                            stepTokens = EngineBenchmark.Inputs(minilm.Spec, B, T).Item1;
                        }
                        var traffic = StepTraffic(gpu, minilm, stepTokens, m);
                        foreach (var line in StepTrafficLines(traffic, $"L={minilm.Spec.Layers} d={minilm.Spec.Hidden}")) Emit(line);
                        // Counts as check lines: a change that adds launches or host round-trips fails here as it does in the tests.
                        Emit(new DeviceCheckLine("launches per SK-Prefix step", traffic.Launches, MaxStepLaunches));
                        Emit(new DeviceCheckLine("host waits + synchronous uploads per SK-Prefix step", traffic.Synchronizations + traffic.SynchronousUploads, 0));
                        break;
                    case "onnxruntime":
                        Model();
                        using (var session = new InferenceSession(FixtureModels.BertBytes(weights!)))
                        {
                            var inputs = EngineBenchmark.ForSession(session, ortInputs!);
                            ort = EngineBenchmark.Median(options.Iterations, () => { using var _ = session.Run(inputs, ["last_hidden_state"]); });
                        }
                        Emit(new DeviceCheckLine("onnxruntime forward (CPU provider)", ort.Value, null, Rate(ForwardGflop(weights!.Spec), ort.Value)));
                        break;
                    case "timings":
                        Model();
                        Timings(gpu, weights!, tokens!, prefix!, m, options.Iterations, ort, R(B * T * d, 1e-2f), Emit);
                        break;
                }
            }
            catch (Exception e)
            {
                Emit(new DeviceCheckLine($"section '{section}' failed", double.PositiveInfinity, 0, Describe(e)));
                log?.Invoke(e.ToString());
            }
        }
        return failed;

        double ForwardGflop(ModelSpec spec) => EngineBenchmark.ForwardFlops(spec, B, T, m) / 1e9;
    }

    /// <summary>The exception's type and message on one line (inner exceptions appended).</summary>
    public static string Describe(Exception e)
    {
        var text = $"{e.GetType().Name}: {e.Message}";
        for (var inner = e.InnerException; inner is not null; inner = inner.InnerException) text += $" <- {inner.GetType().Name}: {inner.Message}";
        return text.ReplaceLineEndings(" ");
    }

    private static void Timings(GpuBackend gpu, ModelWeights weights, TokenBatch tokens, float[] prefix, int m, int iterations, double? ort,
        float[] dHidden, Action<DeviceCheckLine> emit)
    {
        var spec = weights.Spec;
        double forwardGflop = EngineBenchmark.ForwardFlops(spec, tokens.Batch, tokens.SeqLen, m) / 1e9;
        double stepGflop = forwardGflop + EngineBenchmark.BackwardFlops(spec, tokens.Batch, tokens.SeqLen, m) / 1e9;
        using (var engine = new TransformerEngine(gpu, spec, weights))
        using (var p = gpu.UploadNew(prefix))
        using (var dp = gpu.Allocate(prefix.Length))
        using (var dh = gpu.UploadNew(dHidden))
        {
            double fwd = EngineBenchmark.Median(iterations, () => { engine.Forward(tokens, default, p.All); gpu.Synchronize(); });
            var versus = ort is { } o ? $", {fwd / o:F2}x the ORT CPU time" : "";
            emit(new DeviceCheckLine($"engine forward ({gpu.Name})", fwd, null, $"{Rate(forwardGflop, fwd)}{versus}"));
            double step = EngineBenchmark.Median(iterations, () =>
            {
                engine.Forward(tokens, default, p.All);
                engine.Backward(dh.All, default, dp.All);
                gpu.Synchronize();
            });
            emit(new DeviceCheckLine($"engine forward + backward to the prefix ({gpu.Name})", step, null, Rate(stepGflop, step)));
        }
        int rows = tokens.Batch * tokens.SeqLen, d = spec.Hidden, F = spec.FfnSize;
        using (var a = gpu.UploadNew(dHidden.AsSpan(0, Math.Min(dHidden.Length, rows * d)).ToArray()))
        using (var b = gpu.Allocate(d * F))
        using (var c = gpu.Allocate(rows * F))
        {
            // The FFN's up projection, the step's largest GEMM shape (M = B·T, N = FFN, K = d).
            double gemm = EngineBenchmark.Median(iterations, () => { gpu.Gemm(GemmOp.NN, rows, F, d, a.All, b.All, c.All); gpu.Synchronize(); });
            emit(new DeviceCheckLine($"gemm NN {rows}x{F}x{d} ({gpu.Name})", gemm, null, Rate(2.0 * rows * F * d / 1e9, gemm)));
        }
        GemmTierCheck.Timings(gpu.Device, KernelShapes.MiniLm with { Batch = tokens.Batch, Tokens = tokens.SeqLen, Hidden = d, FfnSize = F },
            iterations, emit);
        var timed = TrainingStepTime(gpu, weights, tokens, m, iterations);
        emit(new DeviceCheckLine($"full SK-Prefix training step incl. AdamW ({gpu.Name})", timed, null, Rate(stepGflop, timed)));
    }

    /// <summary>The most kernel launches a MiniLM (6-layer) SK-Prefix training step may take (issue 13: ≤ 100).</summary>
    public const int MaxStepLaunches = 100;

    /// <summary>The device traffic of one SK-Prefix step as check lines: the totals, then the launches per kernel.</summary>
    public static IEnumerable<DeviceCheckLine> StepTrafficLines(DeviceTraffic traffic, string model)
    {
        yield return DeviceCheckLine.Info($"device traffic per SK-Prefix step ({model})", traffic.ToString());
        foreach (var (kernel, count) in traffic.Histogram())
            yield return DeviceCheckLine.Info($"  launches of {kernel}", count.ToString(CultureInfo.InvariantCulture));
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
        float loss = model.ForwardBackward(tokens, Targets(tokens), seed: 77).Read();
        return (loss, backend.ToHost(model.Parameters.Gradients.All));
    }

    private const int ClippedSteps = 3;
    private const float ClippedMaxNorm = 1e-3f;   // far below the step's gradient norm: the device's clip scale is used

    /// <summary>
    /// The parameters after <paramref name="steps"/> SK-Prefix training steps (AdamW, gradients clipped to a global norm of
    /// <paramref name="maxGradNorm"/>), and every step's loss and gradient norm, read once at the end: the steps themselves
    /// never wait for the device.
    /// </summary>
    public static (float[] Parameters, (float Loss, float GradientNorm)[] Steps) TrainedParameters(Backend backend, ModelWeights weights,
        TokenBatch tokens, int m, int steps, float maxGradNorm)
    {
        using var model = StepModel(backend, weights, m);
        for (int step = 1; step <= steps; step++)
        {
            model.ForwardBackward(tokens, Targets(tokens), seed: (ulong)step);
            model.OptimizerStep(1e-2f, 0.01f, maxGradNorm, step);
        }
        return (backend.ToHost(model.Parameters.Values.All), model.ReadSteps(steps));
    }

    /// <summary>
    /// The device traffic of one SK-Prefix training step (forward, backward, loss, gradient norm, AdamW) after a warm-up
    /// step. The step is sync-free: its loss and gradient norm stay on the device, so it has no host wait.
    /// </summary>
    public static DeviceTraffic StepTraffic(GpuBackend gpu, ModelWeights weights, TokenBatch tokens, int m)
    {
        using var model = StepModel(gpu, weights, m);
        model.ForwardBackward(tokens, Targets(tokens), seed: 1);
        model.OptimizerStep(1e-3f, 0.01f, 1f, 1);
        gpu.Synchronize();
        var before = gpu.Traffic;
        model.ForwardBackward(tokens, Targets(tokens), seed: 2);
        model.OptimizerStep(1e-3f, 0.01f, 1f, 2);
        return gpu.Traffic - before;
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
