using System.CommandLine;

namespace SkTuning.Gpu.Cli;

/// <summary>Options shared by several commands.</summary>
internal static class CommonOptions
{
    public static Option<string> Model() => new("--model")
    {
        Description = "catalog name (minilm, arctic-xs), .onnx file or folder with model.onnx and tokenizer files",
        DefaultValueFactory = _ => "minilm",
    };

    public static Option<string> Device()
    {
        var option = new Option<string>("--device")
        {
            Description = "auto (CUDA when ILGPU finds a device, else CPU), cuda or cpu",
            DefaultValueFactory = _ => "auto",
        };
        option.AcceptOnlyFromAmong("auto", "cuda", "cpu");
        return option;
    }

    /// <summary><c>--weights fp32|bf16</c>: how the frozen model's weight matrices are stored (default fp32).</summary>
    public static Option<string> Weights()
    {
        var option = new Option<string>("--weights")
        {
            Description = "storage of the frozen model's weight matrices: fp32, or bf16 (half the memory; CPU backend only)",
            DefaultValueFactory = _ => "fp32",
        };
        option.AcceptOnlyFromAmong("fp32", "bf16");
        return option;
    }

    /// <summary><c>--weights fp32|bf16</c> for a trained run: unset means as the run was trained (its config's <c>weights</c>).</summary>
    public static Option<string?> RunWeights()
    {
        var option = new Option<string?>("--weights")
        {
            Description = "storage of the frozen model's weight matrices: fp32 or bf16 (default: as the run was trained; another value is allowed, with a note)",
        };
        option.AcceptOnlyFromAmong("fp32", "bf16");
        return option;
    }
}
