using System.CommandLine;
using SkTuning.Gpu.Cli;

// sktune: the command-line face of SkTuning.Gpu. Each command lives in its own file under Commands/.
var root = new RootCommand("SK-Tuning of frozen transformer models with hand-written GPU/CPU kernels")
{
    InspectCommand.Create(),
    EncodeCommand.Create(),
    BenchCommand.Create(),
    TrainCommand.Create(),
    EvalCommand.Create(),
    PredictCommand.Create(),
    ExportCommand.Create(),
    CompareCommand.Create(),
    DeviceCheckCommand.Create(),
    VerifyCommand.Create(),
};
return CliRunner.Run(root, args);
