using System.CommandLine;
using System.Globalization;
using SkTuning.Gpu.Data;

namespace SkTuning.Gpu.Cli;

/// <summary><c>sktune eval</c>: the saved run's metrics on its task's dev set (or on another labelled file).</summary>
internal static class EvalCommand
{
    public static Command Create()
    {
        var run = new Option<string>("--run") { Description = "run folder written by sktune train", Required = true };
        var data = new Option<string?>("--data") { Description = "data folder for named tasks (default ../shared/data); for custom tasks a labelled file to evaluate" };
        var model = new Option<string?>("--model") { Description = "frozen model (default: the one the run was trained on)" };
        var device = CommonOptions.Device();
        var weights = CommonOptions.RunWeights();
        var command = new Command("eval", "evaluate a trained run on dev data") { run, data, model, device, weights };
        command.SetAction(CliRunner.Guard(parse =>
        {
            using var tuner = SkTuner.Load(parse.GetValue(run)!, parse.GetValue(model), parse.GetValue(device)!, CliRunner.Log, parse.GetValue(weights));
            var config = tuner.Config;
            string? dataOption = parse.GetValue(data);
            TaskSpec task;
            TaskData taskData;
            if (config.CustomTask is { } custom)
            {
                task = TaskCatalog.Custom(dataOption is null ? custom : custom with { DevFile = dataOption });
                taskData = task.Load(Path.GetDirectoryName(Path.GetFullPath(custom.TrainFile))!);
            }
            else
            {
                if (dataOption is not null && File.Exists(dataOption))
                    throw new SkTuningException($"--data {dataOption}: for the named task {config.Task} pass the data folder; labelled files are for custom tasks");
                task = TaskCatalog.Get(config.Task);
                taskData = task.Load(DataLocator.Resolve(dataOption));
            }
            if (config.Labels is { } names && taskData.Labels is { } labels && !names.SequenceEqual(labels.Names))
                throw new SkTuningException($"{tuner.Run.ConfigPath}: labels [{string.Join(",", names)}] differ from the data's [{string.Join(",", labels.Names)}]");
            var metrics = tuner.Evaluate(task, taskData, taskData.Dev, out _);
            var ic = CultureInfo.InvariantCulture;
            Console.WriteLine($"{config.Method} on {config.Task} dev ({taskData.Dev.Count:N0} examples)");
            foreach (var (name, value) in metrics) Console.WriteLine(string.Create(ic, $"{name,-12} {value:F4}"));
            return 0;
        }));
        return command;
    }
}
