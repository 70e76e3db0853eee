using System.CommandLine;
using SkTuning.Gpu.Engine;
using SkTuning.Gpu.Verification;

namespace SkTuning.Gpu.Cli;

/// <summary><c>sktune verify</c>: does the engine compute what the user's ONNX export computes? Exit 0 yes, 1 no, 2 bad input.</summary>
internal static class VerifyCommand
{
    public static Command Create()
    {
        var model = CommonOptions.Model();
        var device = CommonOptions.Device();
        var weights = CommonOptions.Weights();
        var command = new Command("verify",
            "import a model, run ONNX Runtime and the engine on a few texts and compare every layer (tolerance 1e-4 relative; 3e-2 with --weights bf16), " +
            "check the gradient against finite differences; exit 1 when anything is above tolerance")
        { model, device, weights };
        command.SetAction(CliRunner.Guard(parse =>
        {
            using var backend = BackendFactory.Create(parse.GetValue(device)!, CliRunner.Log, parse.GetValue(weights)!);
            var report = ModelVerifier.Run(parse.GetValue(model)!, backend, CliRunner.Log);
            foreach (var line in ModelVerifier.Format(report)) Console.WriteLine(line);
            return report.Passed ? 0 : CliRunner.InternalError;
        }));
        return command;
    }
}
