using System.CommandLine;
using System.Globalization;
using SkTuning.Gpu.Data;
using SkTuning.Gpu.Engine;
using SkTuning.Gpu.Import;
using SkTuning.Gpu.Training;

namespace SkTuning.Gpu.Cli;

/// <summary><c>sktune train</c>: SK-Tuning on a task, from one command — the project's main job.</summary>
internal static class TrainCommand
{
    public static Command Create()
    {
        var model = CommonOptions.Model();
        var device = CommonOptions.Device();
        var weights = CommonOptions.Weights();
        var data = DataOptions.Create();
        var method = new Option<string>("--method")
        {
            Description = "sk-prefix or sk-prompt, or a baseline: prompt, prefix, ptuning-v2, lora, linear, full (baselines take their customary learning rate unless --lr)",
            DefaultValueFactory = _ => "sk-prefix",
        };
        method.AcceptOnlyFromAmong([.. MethodDefaults.Methods]);
        var mode = new Option<string>("--mode") { Description = "adapter mode: per-layer (sk-prefix), token or pooled (default: per-layer for sk-prefix, token for sk-prompt)" };
        mode.AcceptOnlyFromAmong("token", "pooled", "per-layer");
        var source = new Option<string>("--prompt-source") { Description = "sk-prompt source states: last or embedding", DefaultValueFactory = _ => "last" };
        source.AcceptOnlyFromAmong("last", "embedding");
        var text = new Option<string?>("--text") { Description = "the semantic text (default: one per task)" };
        var d = new TrainOptions();
        var init = new Option<string>("--init") { Description = "adapter start: random, or model (the frozen model's own key/value maps; identity for sk-prompt)", DefaultValueFactory = _ => d.Init == AdapterInit.Model ? "model" : "random" };
        init.AcceptOnlyFromAmong("random", "model");
        var pooling = new Option<string?>("--pooling") { Description = "sequence pooling: mean, cls or last (default: last real token for causal decoders, mean for encoders)" };
        pooling.AcceptOnlyFromAmong("mean", "cls", "last");
        var steps = new Option<int>("--steps") { Description = "optimizer steps", DefaultValueFactory = _ => d.Steps };
        var batch = new Option<int>("--batch") { Description = $"examples per step (1 to {TrainOptions.MaxBatchSize})", DefaultValueFactory = _ => d.BatchSize };
        var lr = new Option<float?>("--lr") { Description = $"peak learning rate (default {d.LearningRate} for sk-*, the method's own for baselines)" };
        var warmup = new Option<int>("--warmup") { Description = "warmup steps", DefaultValueFactory = _ => d.WarmupSteps };
        var decay = new Option<float>("--weight-decay") { Description = "AdamW weight decay", DefaultValueFactory = _ => d.WeightDecay };
        var clip = new Option<float>("--clip") { Description = "max global gradient norm", DefaultValueFactory = _ => d.MaxGradNorm };
        var dropout = new Option<float>("--dropout") { Description = "dropout on prefix/prompt and head", DefaultValueFactory = _ => d.Dropout };
        var seed = new Option<int>("--seed") { Description = "seed of init, data order and dropout", DefaultValueFactory = _ => d.Seed };
        var evalEvery = new Option<int>("--eval-every") { Description = "evaluate on dev every N steps", DefaultValueFactory = _ => d.EvalEvery };
        var patience = new Option<int>("--patience") { Description = "early stop after N evaluations without improvement (0 = off)", DefaultValueFactory = _ => d.Patience };
        var checkpointEvery = new Option<int>("--checkpoint-every") { Description = "also checkpoint every N steps (0 = at evaluations)", DefaultValueFactory = _ => d.CheckpointEvery };
        var keepCheckpoint = new Option<bool>("--keep-checkpoint")
        {
            Description = "true: a finished run keeps its resume state (parameters and AdamW moments) in checkpoint/; false: it is dropped at the end (the best adapter and metrics stay; --resume then has nothing to resume)",
            DefaultValueFactory = _ => d.KeepCheckpoint,
        };
        var recompute = new Option<bool>("--recompute")
        {
            Description = "activation recomputation: keep each layer's input only and rerun its forward in the backward (less memory, about one more forward per step; same gradients)",
        };
        var output = new Option<string?>("--out") { Description = "run folder (default runs/TASK-METHOD)" };
        var resume = new Option<bool>("--resume") { Description = "continue the run in --out from its last commit (one stopped before its first commit starts over)" };
        var command = new Command("train", "SK-Tuning: train an adapter and head on a task (default: SK-Prefix on SST-2 with MiniLM)")
        {
            model, device, weights, method, mode, source, text, init, pooling, steps, batch, lr, warmup, decay, clip, dropout, seed, evalEvery, patience,
            checkpointEvery, keepCheckpoint, recompute, output, resume,
        };
        data.AddTo(command);
        command.SetAction(CliRunner.Guard(parse =>
        {
            var (task, taskData, custom) = data.Load(parse);
            string methodName = parse.GetValue(method)!;
            var options = new TrainOptions
            {
                Method = methodName,
                Mode = parse.GetValue(mode) switch
                {
                    "pooled" => AdapterMode.Pooled,
                    "per-layer" => AdapterMode.PerLayer,
                    "token" => AdapterMode.Token,
                    _ => methodName == "sk-prompt" ? AdapterMode.Token : d.Mode,
                },
                PromptSource = parse.GetValue(source) == "embedding" ? PromptSource.Embedding : PromptSource.Last,
                SemanticText = parse.GetValue(text) ?? SemanticTexts.For(task.Name),
                Pooling = parse.GetValue(pooling) switch { "cls" => Pooling.Cls, "last" => Pooling.Last, "mean" => Pooling.Mean, _ => null },
                Init = parse.GetValue(init) == "model" ? AdapterInit.Model : AdapterInit.Random,
                Steps = parse.GetValue(steps), BatchSize = parse.GetValue(batch),
                LearningRate = parse.GetValue(lr) ?? d.LearningRate, WarmupSteps = parse.GetValue(warmup), WeightDecay = parse.GetValue(decay),
                MaxGradNorm = parse.GetValue(clip), Dropout = parse.GetValue(dropout), Seed = parse.GetValue(seed),
                EvalEvery = parse.GetValue(evalEvery), Patience = parse.GetValue(patience),
                CheckpointEvery = parse.GetValue(checkpointEvery), KeepCheckpoint = parse.GetValue(keepCheckpoint), Recompute = parse.GetValue(recompute),
            };
            if (!methodName.StartsWith("sk-", StringComparison.Ordinal)) options = MethodDefaults.For(methodName, options, parse.GetValue(lr));
            options.Validate();
            string outDir = parse.GetValue(output) ?? DefaultOut(task.Name, methodName, parse.GetValue(resume));
            string modelName = parse.GetValue(model)!;
            CliRunner.Log($"loading {modelName}");
            var frozen = FrozenModel.Load(modelName);
            using var backend = BackendFactory.Create(parse.GetValue(device)!, CliRunner.Log, parse.GetValue(weights)!);
            var progress = new ProgressPrinter();
            var result = Trainer.Train(new TrainingSetup(frozen, modelName, task, taskData, backend, outDir, custom), options,
                parse.GetValue(resume), CliRunner.Log, progress.Report);
            progress.Finish();
            var ic = CultureInfo.InvariantCulture;
            string Metrics(IReadOnlyDictionary<string, double> m) => string.Join(", ", m.Where(kv => kv.Key != "loss").Select(kv => string.Create(ic, $"{kv.Key} {kv.Value:F4}")));
            Console.WriteLine($"run      {Path.GetFullPath(outDir)}");
            Console.WriteLine($"method   {result.Config.Method} ({result.Config.Mode.ToString().ToLowerInvariant()}), \"{result.Config.SemanticText}\"");
            Console.WriteLine(string.Create(ic, $"trainable {result.Config.TrainableParameters:N0} parameters ({100.0 * result.Config.TrainableParameters / result.Config.ModelParameters:F2}% of the model)"));
            Console.WriteLine($"best     {Metrics(result.Best)} (step {result.BestStep}, saved in adapter.safetensors)");
            Console.WriteLine($"final    {Metrics(result.Final)} (step {result.Steps})");
            Console.WriteLine(string.Create(ic, $"time     {result.TotalSeconds:F0} s, {result.SecondsPerStep:F3} s/step on {backend.Name}"));
            return 0;
        }));
        return command;
    }

    // runs/TASK-METHOD, or the first free runs/TASK-METHOD-N, so rerunning the README command starts a new run
    // (with --resume: the latest existing one).
    private static string DefaultOut(string task, string method, bool resume)
    {
        string Name(int n) => Path.Combine("runs", n == 1 ? $"{task}-{method}" : $"{task}-{method}-{n}");
        int i = 1;
        while (Runs.RunFolder.IsRunFolder(Name(i))) i++;
        return resume ? Name(Math.Max(1, i - 1)) : Name(i);
    }
}
