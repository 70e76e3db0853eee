using System.CommandLine;
using System.Globalization;
using SkTuning.Gpu.Engine;
using SkTuning.Gpu.Import;
using SkTuning.Gpu.Training;

namespace SkTuning.Gpu.Cli;

/// <summary><c>sktune compare</c>: several methods, same data, head, seed and budget; compare.md, compare.json, compare.svg.</summary>
internal static class CompareCommand
{
    public static Command Create()
    {
        var model = CommonOptions.Model();
        var device = CommonOptions.Device();
        var data = DataOptions.Create();
        var methods = new Option<string>("--methods") { Description = $"comma-separated: {string.Join(",", MethodDefaults.Methods)}", DefaultValueFactory = _ => string.Join(",", MethodDefaults.Methods) };
        var steps = new Option<int>("--steps") { Description = "optimizer steps per method", DefaultValueFactory = _ => 500 };
        var batch = new Option<int>("--batch") { Description = "examples per step", DefaultValueFactory = _ => 32 };
        var lr = new Option<float?>("--lr") { Description = "one learning rate for all methods (default: each method's own)" };
        var evalEvery = new Option<int>("--eval-every") { Description = "evaluate on dev every N steps", DefaultValueFactory = _ => 100 };
        var target = new Option<double?>("--target") { Description = "report steps and seconds to reach this dev metric" };
        var text = new Option<string?>("--text") { Description = "semantic text of the SK methods (default: one per task)" };
        var seed = new Option<int>("--seed") { Description = "seed shared by every method", DefaultValueFactory = _ => 42 };
        var seeds = new Option<string?>("--seeds") { Description = "comma-separated seeds: every method once per seed; the table shows mean ± sd (overrides --seed)" };
        var output = new Option<string?>("--out") { Description = "output folder (default runs/compare-TASK)" };
        var command = new Command("compare", "train several methods with the same budget and compare metric, speed, size and memory")
            { model, device, methods, steps, batch, lr, evalEvery, target, text, seed, seeds, output };
        data.AddTo(command);
        command.SetAction(CliRunner.Guard(parse =>
        {
            var seedList = ParseSeeds(parse.GetValue(seeds));
            var (task, taskData, custom) = data.Load(parse);
            var names = parse.GetValue(methods)!.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
            foreach (var n in names)
                if (!MethodDefaults.Methods.Contains(n)) throw new SkTuningException($"--methods: unknown method '{n}' (methods: {string.Join(", ", MethodDefaults.Methods)})");
            var shared = new TrainOptions
            {
                SemanticText = parse.GetValue(text) ?? SemanticTexts.For(task.Name),
                Steps = parse.GetValue(steps), BatchSize = parse.GetValue(batch), EvalEvery = parse.GetValue(evalEvery), Seed = seedList is { Count: > 0 } ? seedList[0] : parse.GetValue(seed),
            };
            (shared with { LearningRate = parse.GetValue(lr) ?? shared.LearningRate }).Validate();
            string outDir = parse.GetValue(output) ?? Path.Combine("runs", $"compare-{task.Name}");
            string modelName = parse.GetValue(model)!;
            var frozen = FrozenModel.Load(modelName);
            using var backend = BackendFactory.Create(parse.GetValue(device)!, CliRunner.Log);
            var progress = new ProgressPrinter();
            float? lrOverride = parse.GetValue(lr);
            var setup = new TrainingSetup(frozen, modelName, task, taskData, backend, outDir, custom);
            TrainOptions OptionsFor(string m, TrainOptions o) => MethodDefaults.For(m, o, lrOverride);
            string commandLine = "sktune " + string.Join(' ', Environment.GetCommandLineArgs().Skip(1).Select(a => a.Contains(' ') ? $"\"{a}\"" : a));
            string title = $"{task.Name}: method comparison ({modelName}, {backend.Name})";
            string markdown;
            bool allFailed;
            if (seedList is { Count: > 1 })
            {
                var rows = Comparison.RunSeeds(setup, names, shared, seedList, parse.GetValue(target), OptionsFor, CliRunner.Log, progress.Report);
                progress.Finish();
                Comparison.Write(outDir, title, task.PrimaryMetric, parse.GetValue(target), shared.Steps, seedList, rows, commandLine);
                markdown = Comparison.Markdown(title, task.PrimaryMetric, parse.GetValue(target), shared.Steps, seedList, rows, commandLine);
                allFailed = rows.All(r => r.Error is not null);
            }
            else
            {
                var rows = Comparison.Run(setup, names, shared, parse.GetValue(target), OptionsFor, CliRunner.Log, progress.Report);
                progress.Finish();
                Comparison.Write(outDir, title, task.PrimaryMetric, parse.GetValue(target), shared.Steps, rows, commandLine);
                markdown = Comparison.Markdown(title, task.PrimaryMetric, parse.GetValue(target), shared.Steps, rows, commandLine);
                allFailed = rows.All(r => r.Error is not null);
            }
            Console.Write(markdown);
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"written: {Path.Combine(outDir, "compare.md")}, compare.json, compare.svg"));
            return allFailed ? CliRunner.BadInput : 0;
        }));
        return command;
    }

    private static List<int>? ParseSeeds(string? text)
    {
        if (text is null) return null;
        var list = new List<int>();
        foreach (var part in text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            if (!int.TryParse(part, NumberStyles.Integer, CultureInfo.InvariantCulture, out int v))
                throw new SkTuningException($"--seeds: '{part}' is not an integer");
            if (list.Contains(v)) throw new SkTuningException($"--seeds: seed {v} is listed twice");
            list.Add(v);
        }
        if (list.Count == 0) throw new SkTuningException("--seeds: no seed given");
        return list;
    }
}
