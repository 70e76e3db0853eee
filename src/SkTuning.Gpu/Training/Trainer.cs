using System.Diagnostics;
using SkTuning.Gpu.Data;
using SkTuning.Gpu.Engine;
using SkTuning.Gpu.Import;
using SkTuning.Gpu.Kernels;
using SkTuning.Gpu.Runs;

namespace SkTuning.Gpu.Training;

/// <summary>Progress of a training run, reported after every step.</summary>
/// <param name="Step">Steps done.</param>
/// <param name="TotalSteps">Steps planned.</param>
/// <param name="Loss">Mean training loss since the last report line.</param>
/// <param name="ExamplesPerSecond">Training throughput so far.</param>
/// <param name="Eta">Estimated time to the last step.</param>
/// <param name="Dev">Dev metrics when this step evaluated, else null.</param>
public sealed record TrainProgress(long Step, int TotalSteps, double Loss, double ExamplesPerSecond, TimeSpan Eta, IReadOnlyDictionary<string, double>? Dev);

/// <summary>The outcome of <see cref="Trainer.Train"/>.</summary>
/// <param name="Config">The run's configuration.</param>
/// <param name="Best">Dev metrics of the best evaluation (the weights saved in adapter.safetensors).</param>
/// <param name="BestStep">Step of the best evaluation.</param>
/// <param name="Final">Dev metrics of the last step's weights.</param>
/// <param name="Steps">Steps done.</param>
/// <param name="SecondsPerStep">Mean training time per step (dev evaluations excluded).</param>
/// <param name="TotalSeconds">Training time (evaluations included), across resumes.</param>
/// <param name="Stopped">True when the run was stopped early by the caller (it can be resumed).</param>
public sealed record TrainResult(AdapterConfig Config, IReadOnlyDictionary<string, double> Best, long BestStep,
    IReadOnlyDictionary<string, double> Final, long Steps, double SecondsPerStep, double TotalSeconds, bool Stopped);

/// <summary>Where and how to train: everything besides the hyperparameters.</summary>
/// <param name="Model">The frozen model.</param>
/// <param name="ModelName">The --model the user gave (recorded in the run).</param>
/// <param name="Task">The task.</param>
/// <param name="Data">Its loaded data.</param>
/// <param name="Backend">The engine backend.</param>
/// <param name="OutDirectory">The run folder.</param>
/// <param name="CustomTask">For a custom task: how its data was read (saved so eval can read it again).</param>
public sealed record TrainingSetup(FrozenModel Model, string ModelName, TaskSpec Task, TaskData Data, Backend Backend, string OutDirectory,
    CustomTaskOptions? CustomTask = null);

/// <summary>
/// SK-Tuning's training loop: length-bucketed batches, AdamW with warmup and linear decay, global gradient-norm
/// clipping, evaluation on dev every N steps keeping the best weights, early stopping, atomic checkpoints that a
/// killed run resumes from exactly (same data order, dropout masks and optimizer state).
/// </summary>
public static class Trainer
{
    /// <summary>Evaluation batch size (fixed, so `sktune eval` reproduces the numbers exactly).</summary>
    public const int EvalBatchSize = 64;

    /// <summary>Trains (or, with <paramref name="resume"/>, continues) a run.</summary>
    /// <param name="setup">Model, data, backend and run folder.</param>
    /// <param name="options">Hyperparameters (ignored on resume: the run's own are used).</param>
    /// <param name="resume">Continue from the run folder's last checkpoint.</param>
    /// <param name="log">One-line messages.</param>
    /// <param name="progress">Called after every step.</param>
    /// <param name="stopAfterCheckpoint">Called after each commit but the last with its step; returning true stops the run there.</param>
    public static TrainResult Train(TrainingSetup setup, TrainOptions options, bool resume, Action<string>? log = null,
        Action<TrainProgress>? progress = null, Func<long, bool>? stopAfterCheckpoint = null)
    {
        var (frozen, task, data, backend) = (setup.Model, setup.Task, setup.Data, setup.Backend);
        var run = RunFolder.Create(setup.OutDirectory);
        using var runLock = RunLock.Acquire(setup.OutDirectory, log);
        run.RemoveLeftovers();
        AdapterConfig config;
        if (resume && RunFolder.IsRunFolder(setup.OutDirectory))
        {
            config = run.ReadConfig<AdapterConfig>();
            config.Validate(run.ConfigPath);
            if (!string.Equals(config.ModelHash, frozen.Hash, StringComparison.OrdinalIgnoreCase))
                throw new SkTuningException($"{run.ConfigPath}: the run was trained on model {config.ModelHash[..12]}, not {frozen.Hash[..12]} ({setup.ModelName})");
            options = config.Training;
        }
        else
        {
            if (resume) log?.Invoke($"{setup.OutDirectory}: the run never got as far as its configuration: starting it");
            else if (RunFolder.IsRunFolder(setup.OutDirectory))
                throw new SkTuningException($"{setup.OutDirectory}: already holds a run; pass --resume to continue it or choose another --out");
            options.Validate();
            resume = false;
            config = NewConfig(setup, options, log);
        }
        if (config.Labels is { } names && data.Labels is { } labels && !names.SequenceEqual(labels.Names))
            throw new SkTuningException($"{run.ConfigPath}: labels [{string.Join(",", names)}] differ from the data's [{string.Join(",", labels.Names)}]");

        var tokenizer = frozen.Tokenizer;
        var train = ExampleEncoder.Encode(tokenizer, data.Train, task.Kind, config.MaxTokens);
        var dev = ExampleEncoder.Encode(tokenizer, data.Dev, task.Kind, config.MaxTokens);
        log?.Invoke($"data: {train.Count:N0} train, {dev.Count:N0} dev examples; truncated to {config.MaxTokens} tokens: {train.TruncatedCount} train, {dev.TruncatedCount} dev");

        using var model = TunedModelBuilder.Build(frozen, config, backend, log);
        model.Recompute = options.Recompute;
        log?.Invoke($"trainable parameters: {config.TrainableParameters:N0} ({100.0 * config.TrainableParameters / config.ModelParameters:F2}% of the model's {config.ModelParameters:N0})");
        var sampler = new BatchSampler(train.Lengths(), options.BatchSize, options.Seed);
        var history = new RunHistory { PrimaryMetric = config.PrimaryMetric };
        var state = new TrainerState(0, 0, 0, options.Seed, [], double.NaN, -1, 0, 0);

        var checkpoint = resume ? run.ReadCheckpoint<TrainerState>() : null;
        if (checkpoint is not null)
        {
            var source = Path.Combine(run.CheckpointPath, RunFolder.StateFileName);
            model.Parameters.Import(model.Parameters.Values, checkpoint.Parameters, source);
            model.Parameters.Import(model.Parameters.AdamM, checkpoint.AdamM, source);
            model.Parameters.Import(model.Parameters.AdamV, checkpoint.AdamV, source);
            state = checkpoint.Trainer;
            // The commit's own metrics (the top-level copy may be one commit behind after a kill).
            history = run.ReadHistory();
            history.TruncateAfter(state.Step);
            run.Publish();
            log?.Invoke($"resumed at step {state.Step} (epoch {state.Epoch}, batch {state.DataPosition})");
        }
        else
        {
            if (resume) log?.Invoke("no checkpoint in the run folder yet: starting from step 0");
            model.Initialize(options.Seed);
            if (task.Kind == TaskKind.Regression)
            {
                // Start the regression head at the training targets' mean: with a zero bias, AdamW's small steps spend
                // the first thousand steps just shifting the output towards it (STS-B's mean is 2.7 on 0..5).
                float mean = (float)data.Train.Average(e => e.Value);
                model.Parameters.Set(model.Parameters["head.bias"], [mean]);
            }
            if (!resume) run.WriteConfig(config);
        }

        var clock = Stopwatch.StartNew();
        double elapsedBefore = state.ElapsedSeconds, lossSum = 0;
        int lossCount = 0;
        long stepsThisSession = 0;
        var unread = new List<long>();                 // steps whose loss and norm are still only on the device
        var read = new List<(long Step, float Loss)>(); // read, not yet reported to progress
        var epochBatches = sampler.Epoch(state.Epoch);
        var lastDev = history.Points.LastOrDefault(x => x.Dev is not null)?.Dev;
        bool stopped = false;
        // A run that ended (last step or early stop) has its final metrics committed: resuming it only rewrites the report.
        while (history.Final is null && state.Step < options.Steps)
        {
            if (state.DataPosition >= epochBatches.Count)
            {
                state = state with { Epoch = state.Epoch + 1, DataPosition = 0 };
                epochBatches = sampler.Epoch(state.Epoch);
            }
            var batch = BatchBuilder.Build(train.Examples, epochBatches[(int)state.DataPosition], tokenizer.PadId);
            long step = state.Step + 1;
            // The loss and gradient norm stay on the device; the host reads them (one wait) when it logs a curve point,
            // when the device's step log is full, and before every evaluation or checkpoint.
            model.ForwardBackward(batch.Tokens, new HeadTargets(batch.Labels, batch.Values, batch.TokenLabels), StepSeed(options.Seed, step));
            float lr = LearningRateSchedule.At((int)step, options.Steps, options.WarmupSteps, options.LearningRate);
            model.OptimizerStep(lr, options.WeightDecay, options.MaxGradNorm, (int)step);
            unread.Add(step);
            stepsThisSession++;
            state = state with { Step = step, DataPosition = state.DataPosition + 1, ExamplesSeen = state.ExamplesSeen + batch.Size };

            bool evaluate = step % options.EvalEvery == 0 || step == options.Steps;
            bool checkpointNow = evaluate || (options.CheckpointEvery > 0 && step % options.CheckpointEvery == 0);
            // The learning curve gets a training-loss point five times per evaluation interval (committed with the next checkpoint).
            bool curvePoint = checkpointNow || step % Math.Max(1, options.EvalEvery / 5) == 0;
            if (curvePoint || unread.Count == SkTuningModel.StepLogCapacity)
            {
                var logged = model.ReadSteps(unread.Count);
                for (int i = 0; i < logged.Length; i++)
                {
                    var (loss, norm) = logged[i];
                    if (!float.IsFinite(loss))
                        throw new SkTuningException($"step {unread[i]}: the training loss is {loss}; lower --lr (now {options.LearningRate}) or check the data");
                    if (!float.IsFinite(norm))
                        throw new SkTuningException($"step {unread[i]}: the gradient norm is {norm}; lower --lr (now {options.LearningRate})");
                    lossSum += loss; lossCount++;
                    read.Add((unread[i], loss));
                }
                unread.Clear();
            }
            double elapsed = elapsedBefore + clock.Elapsed.TotalSeconds;   // after the read: the device has caught up
            IReadOnlyDictionary<string, double>? devMetrics = null;
            BestAdapter? newBest = null;
            if (evaluate)
            {
                var evalClock = Stopwatch.StartNew();
                var predictions = Evaluator.Predict(model, dev, data.Dev, EvalBatchSize, tokenizer.PadId);
                var metrics = Evaluator.Score(task, data, data.Dev, predictions);
                metrics["loss"] = predictions.Loss;
                devMetrics = lastDev = metrics;
                double score = metrics[config.PrimaryMetric];
                if (double.IsNaN(state.BestMetric) || score > state.BestMetric)
                {
                    state = state with { BestMetric = score, BestStep = step, EvaluationsWithoutImprovement = 0 };
                    history.Best = metrics;
                    history.BestStep = step;
                    newBest = new BestAdapter(Tensors(model.Parameters, model.Parameters.Values), config.ModelHash, config.Method);
                }
                else state = state with { EvaluationsWithoutImprovement = state.EvaluationsWithoutImprovement + 1 };
                state = state with { EvaluationSeconds = state.EvaluationSeconds + evalClock.Elapsed.TotalSeconds };
            }
            bool earlyStop = evaluate && options.Patience > 0 && state.EvaluationsWithoutImprovement >= options.Patience;
            if (earlyStop) log?.Invoke($"early stop at step {step}: no improvement of {config.PrimaryMetric} in {options.Patience} evaluations");
            if (step == options.Steps || earlyStop) history.Final = lastDev;
            if (curvePoint)
            {
                history.Add(new CurvePoint(step, state.ExamplesSeen, lossSum / Math.Max(1, lossCount), lr, elapsed, devMetrics));
                lossSum = 0; lossCount = 0;
            }
            if (checkpointNow)
            {
                state = state with { ElapsedSeconds = elapsed };
                Commit(run, model, state, history, newBest);
                if (history.Final is null && stopAfterCheckpoint?.Invoke(step) == true) { stopped = true; break; }
            }
            double rate = state.ExamplesSeen == 0 ? 0 : stepsThisSession * options.BatchSize / Math.Max(1e-9, clock.Elapsed.TotalSeconds);
            var eta = TimeSpan.FromSeconds(clock.Elapsed.TotalSeconds / Math.Max(1, stepsThisSession) * (options.Steps - step));
            foreach (var (readStep, loss) in read) progress?.Invoke(new TrainProgress(readStep, options.Steps, loss, rate, eta, readStep == step ? devMetrics : null));
            read.Clear();
        }
        double total = elapsedBefore + clock.Elapsed.TotalSeconds;
        var result = new TrainResult(config, history.Best ?? new Dictionary<string, double>(), history.BestStep ?? 0,
            history.Final ?? lastDev ?? new Dictionary<string, double>(), state.Step, (total - state.EvaluationSeconds) / Math.Max(1, state.Step), total, stopped);
        if (!stopped) WriteReport(run, setup, result, history);
        if (!stopped && !options.KeepCheckpoint && run.HasResumeState)
        {
            run.DropResumeState();
            log?.Invoke($"{setup.OutDirectory}: dropped the resume state (--keep-checkpoint false); the best adapter and metrics stay");
        }
        return result;
    }

    /// <summary>The dropout seed of a step: a hash of the run seed and the step, so a resumed run draws the same masks.</summary>
    public static ulong StepSeed(int seed, long step) => Dropout.Hash((ulong)seed, step);

    private static AdapterConfig NewConfig(TrainingSetup setup, TrainOptions o, Action<string>? log)
    {
        var (task, data) = (setup.Task, setup.Data);
        int classes = task.Kind == TaskKind.Regression ? 1 : data.Labels?.Count ?? throw new SkTuningException($"task {task.Name}: no labels");
        return Configure(setup.Model, setup.ModelName, task.Name, task.Kind, task.PrimaryMetric, data.Labels?.Names.ToArray(), classes,
            setup.CustomTask, o, log) with
        {
            LabelNames = data.Labels?.Names.Select(task.LabelName).ToArray(), TextPairs = data.IsPair,
            Weights = setup.Backend.FrozenWeights == Engine.WeightPrecision.Bf16 ? "bf16" : "fp32",
        };
    }

    /// <summary>
    /// The configuration of a new run: resolves the method, encodes the semantic text zero-shot (for m), and counts the
    /// trainable parameters from the method's formula.
    /// </summary>
    /// <exception cref="SkTuningException">An unknown or unsupported method, or a mode the method does not have.</exception>
    public static AdapterConfig Configure(FrozenModel frozen, string modelName, string taskName, TaskKind kind, string primaryMetric,
        string[]? labels, int classes, CustomTaskOptions? custom, TrainOptions o, Action<string>? log = null)
    {
        var spec = frozen.Spec;
        if (o.Method == "sk-prompt" && o.Mode == AdapterMode.PerLayer)
            throw new SkTuningException("--mode per-layer is an SK-Prefix mode; SK-Prompt takes token or pooled");
        var method = Baselines.MethodCatalog.Get(o.Method);
        if (!method.Supported) throw new SkTuningException($"method '{o.Method}' is not supported yet ({method.Description})");
        var pooling = o.Pooling ?? TrainOptions.DefaultPooling(spec);
        if (pooling == Pooling.Last && frozen.Imported.AttentionMaskName is null)
            throw new SkTuningException($"{frozen.Source.OnnxPath}: --pooling last needs the model's attention mask to find the last real token, and the graph has no attention-mask input");
        bool semantic = o.Method.StartsWith("sk-", StringComparison.Ordinal);
        TunedModelBuilder.SourceStates(frozen, o.Kind, semantic ? o.Mode : AdapterMode.Token, o.PromptSource, o.SemanticText, log, out int m);
        int tokens = semantic || o.Tokens <= 0 ? m : o.Tokens;
        long trainable = Baselines.MethodCatalog.TrainableParameterCount(o.Method, spec, tokens, classes, TunedModelBuilder.Options(o));
        // A causal model's prefix or prompt takes positions before the input: the input gets what is left.
        int maxTokens = spec.Causal && method.Kind is not null ? spec.MaxTokens - tokens : spec.MaxTokens;
        if (maxTokens < 1)
            throw new SkTuningException($"the {tokens}-token prefix/prompt leaves no position of the model's {spec.MaxTokens} for the input");
        return new AdapterConfig
        {
            Method = o.Method, Mode = o.Mode, PromptSource = o.PromptSource, SemanticText = o.SemanticText,
            SemanticTokens = m, Tokens = tokens, Model = modelName, ModelHash = frozen.Hash, Task = taskName, CustomTask = custom,
            TaskKind = kind, Labels = labels, Pooling = pooling, Classes = classes,
            Dim = spec.Hidden, Layers = spec.Layers, MaxTokens = maxTokens, PrimaryMetric = primaryMetric,
            TrainableParameters = trainable, ModelParameters = spec.ParameterCount, Training = o,
        };
    }

    private static Dictionary<string, NamedTensor> Tensors(TrainableParameters p, Engine.DeviceArray<float> buffer)
    {
        var host = p.Export(buffer);
        return p.Infos.ToDictionary(i => i.Name, i => new NamedTensor(i.Shape, host[i.Name]));
    }

    private static void Commit(RunFolder run, SkTuningModel model, TrainerState state, RunHistory history, BestAdapter? newBest)
    {
        var p = model.Parameters;
        run.Commit(new TrainingCheckpoint<TrainerState>(Tensors(p, p.Values), Tensors(p, p.AdamM), Tensors(p, p.AdamV), state), history, newBest);
    }

    private static void WriteReport(RunFolder run, TrainingSetup setup, TrainResult result, RunHistory history)
    {
        var c = result.Config;
        var o = c.Training;
        run.WriteLearningCurve($"{c.Method} on {c.Task} ({c.Model})", history, c.PrimaryMetric);
        run.WriteReport(new RunReport
        {
            Title = $"{c.Method} on {c.Task}",
            Method = $"{c.Method}, {c.Mode.ToString().ToLowerInvariant()} mode, semantic text \"{c.SemanticText}\" ({c.SemanticTokens} tokens)",
            Dataset = $"{c.Task}: {setup.Data.Train.Count:N0} train / {setup.Data.Dev.Count:N0} dev",
            ModelName = c.Model,
            ModelHash = c.ModelHash,
            BestMetrics = result.Best,
            BestStep = result.BestStep,
            FinalMetrics = result.Final,
            TrainableParameters = c.TrainableParameters,
            ModelParameters = c.ModelParameters,
            SecondsPerStep = result.SecondsPerStep,
            TotalSeconds = result.TotalSeconds,
            Steps = result.Steps,
            Hyperparameters = new Dictionary<string, object?>
            {
                ["device"] = setup.Backend.Name, ["steps"] = o.Steps, ["batch_size"] = o.BatchSize, ["learning_rate"] = o.LearningRate,
                ["warmup_steps"] = o.WarmupSteps, ["weight_decay"] = o.WeightDecay, ["max_grad_norm"] = o.MaxGradNorm,
                ["dropout"] = o.Dropout, ["seed"] = o.Seed, ["eval_every"] = o.EvalEvery, ["patience"] = o.Patience, ["pooling"] = c.Pooling.ToString().ToLowerInvariant(),
            },
        });
    }
}
