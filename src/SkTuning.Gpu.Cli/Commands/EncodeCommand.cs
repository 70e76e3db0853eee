using System.CommandLine;
using System.Globalization;
using System.Numerics.Tensors;
using SkTuning.Gpu.Import;

namespace SkTuning.Gpu.Cli;

/// <summary><c>sktune encode</c>: zero-shot hidden states of a text through ONNX Runtime.</summary>
internal static class EncodeCommand
{
    public static Command Create()
    {
        var model = CommonOptions.Model();
        var text = new Option<string>("--text") { Description = "the text to encode", Required = true };
        var layers = new Option<string>("--layers") { Description = "last (default) or all", DefaultValueFactory = _ => "last" };
        layers.AcceptOnlyFromAmong("last", "all");
        var compare = new Option<string?>("--compare") { Description = "a second text: print the cosine similarity of the mean-pooled last states" };
        var command = new Command("encode", "zero-shot hidden states of a text (ONNX Runtime)") { model, text, layers, compare };
        command.SetAction(CliRunner.Guard(parse =>
        {
            var frozen = FrozenModel.Load(parse.GetValue(model)!);
            using var encoder = frozen.CreateEncoder(CliRunner.Log);
            bool all = parse.GetValue(layers) == "all";
            var states = encoder.Encode(parse.GetValue(text)!, all);
            var ic = CultureInfo.InvariantCulture;
            Console.WriteLine($"tokens {states.Tokens}, d {states.Dim}, {states.Layers.Count} layer output{(states.Layers.Count == 1 ? "" : "s")}");
            for (int l = 0; l < states.Layers.Count; l++)
            {
                var name = all ? (l == 0 ? "embeddings" : $"layer {l}") : "last";
                Console.WriteLine(string.Create(ic, $"{name,-11} [{states.Tokens} × {states.Dim}]  norm {TensorPrimitives.Norm(states.Layers[l]):F4}"));
            }
            if (parse.GetValue(compare) is { } other)
            {
                var a = states.MeanPooled();
                var b = encoder.Encode(other).MeanPooled();
                Console.WriteLine(string.Create(ic, $"cosine(mean-pooled) {TensorPrimitives.CosineSimilarity(a, b):F4}"));
            }
            return 0;
        }));
        return command;
    }
}
