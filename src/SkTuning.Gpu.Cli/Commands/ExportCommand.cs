using System.CommandLine;
using SkTuning.Gpu.Export;

namespace SkTuning.Gpu.Cli;

/// <summary>
/// <c>sktune export</c>: a trained run in a format other tools load. <c>peft</c>: a Hugging Face PEFT adapter folder
/// plus the head (<see cref="PeftExporter"/>); <c>onnx</c>: one standalone graph from token ids to the task's outputs
/// (<see cref="OnnxExporter"/>).
/// </summary>
internal static class ExportCommand
{
    public static Command Create()
    {
        var run = new Option<string>("--run") { Description = "run folder written by sktune train", Required = true };
        var format = new Option<string>("--format") { Description = "onnx (standalone graph: token ids to logits/probabilities) or peft (Hugging Face PEFT adapter + head)", Required = true };
        format.AcceptOnlyFromAmong("peft", "onnx");
        var output = new Option<string>("--out") { Description = "onnx: the .onnx file (a folder gets model.onnx); peft: the export folder (created; files in it are replaced)", Required = true };
        var model = new Option<string?>("--model") { Description = "frozen model (default: the one the run was trained on)" };
        var baseModel = new Option<string?>("--base-model")
        {
            Description = "base_model_name_or_path to record (default: the Hugging Face id of a catalog model, else the run's --model)",
        };
        var command = new Command("export", "export a trained run for other tools") { run, format, output, model, baseModel };
        command.SetAction(CliRunner.Guard(parse =>
        {
            if (parse.GetValue(format) == "onnx")
            {
                var path = parse.GetValue(output)!;
                if (!path.EndsWith(".onnx", StringComparison.OrdinalIgnoreCase)) path = Path.Combine(path, "model.onnx");
                var onnx = OnnxExporter.Export(parse.GetValue(run)!, path, parse.GetValue(model), CliRunner.Log);
                Console.WriteLine($"ONNX model written to {onnx.Path}{(onnx.ExternalDataPath is null ? "" : $" (weights in {onnx.ExternalDataPath})")}: " +
                    $"inputs {string.Join(", ", onnx.Inputs)}; outputs {string.Join(", ", onnx.Outputs)}");
                return 0;
            }
            var export = PeftExporter.Export(parse.GetValue(run)!, parse.GetValue(output)!, parse.GetValue(model), parse.GetValue(baseModel), CliRunner.Log);
            Console.WriteLine($"{export.PeftType} adapter, head and README written to {export.Directory}");
            return 0;
        }));
        return command;
    }
}
