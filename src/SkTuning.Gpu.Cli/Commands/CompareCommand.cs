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
        var output = new Option<string?>("--out") { Description = "output folder (default runs/compare-TASK)" };
        var command = new Command("compare", "train several methods with the same budget and compare metric, speed, size and memory")
            { model, device, methods, steps, batch, lr, evalEvery, target, text, seed, output };
        data.AddTo(command);
        command.SetAction(CliRunner.Guard(parse =>
        {
            var (task, taskData, custom) = data.Load(parse);
            var names = parse.GetValue(methods)!.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
            foreach (var n in names)
                if (!MethodDefaults.Methods.Contains(n)) throw new SkTuningException($"--methods: unknown method '{n}' (methods: {string.Join(", ", MethodDefaults.Methods)})");
            var shared = new TrainOptions
            {
                SemanticText = parse.GetValue(text) ?? SemanticTexts.For(task.Name),
                Steps = parse.GetValue(steps), BatchSize = parse.GetValue(batch), EvalEvery = parse.GetValue(evalEvery), Seed = parse.GetValue(seed),
            };
            string outDir = parse.GetValue(output) ?? Path.Combine("runs", $"compare-{task.Name}");
            string modelName = parse.GetValue(model)!;
            var frozen = FrozenModel.Load(modelName);
            using var backend = BackendFactory.Create(parse.GetValue(device)!, CliRunner.Log);
            var progress = new ProgressPrinter();
            float? lrOverride = parse.GetValue(lr);
            var rows = Comparison.Run(new TrainingSetup(frozen, modelName, task, taskData, backend, outDir, custom), names, shared,
                parse.GetValue(target), (m, o) => MethodDefaults.For(m, o, lrOverride), CliRunner.Log, progress.Report);
            progress.Finish();
            string commandLine = "sktune " + string.Join(' ', Environment.GetCommandLineArgs().Skip(1).Select(a => a.Contains(' ') ? $"\"{a}\"" : a));
            Comparison.Write(outDir, $"{task.Name}: method comparison ({modelName}, {backend.Name})", task.PrimaryMetric, parse.GetValue(target),
                shared.Steps, rows, commandLine);
            Console.Write(Comparison.Markdown($"{task.Name}: method comparison", task.PrimaryMetric, parse.GetValue(target), shared.Steps, rows, commandLine));
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"written: {Path.Combine(outDir, "compare.md")}, compare.json, compare.svg"));
            return rows.All(r => r.Error is not null) ? CliRunner.BadInput : 0;
        }));
        return command;
    }
}
