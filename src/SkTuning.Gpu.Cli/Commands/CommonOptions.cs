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
}
