using System.CommandLine;
using System.Globalization;
using SkTuning.Gpu.Import;

namespace SkTuning.Gpu.Cli;

/// <summary><c>sktune inspect</c>: the model description read from the ONNX graph.</summary>
internal static class InspectCommand
{
    public static Command Create()
    {
        var model = CommonOptions.Model();
        var command = new Command("inspect", "print the architecture read from the model's ONNX graph") { model };
        command.SetAction(CliRunner.Guard(parse =>
        {
            var frozen = FrozenModel.Load(parse.GetValue(model)!);
            var s = frozen.Spec;
            var ic = CultureInfo.InvariantCulture;
            Console.WriteLine($"model       {frozen.Source.Name} ({frozen.Source.OnnxPath})");
            Console.WriteLine($"family      {s.Family.ToString().ToLowerInvariant()}");
            Console.WriteLine($"layers      {s.Layers}");
            Console.WriteLine($"hidden (d)  {s.Hidden}");
            Console.WriteLine($"heads       {s.Heads} × {s.HeadSize}{(s.KvHeads != s.Heads ? $" ({s.KvHeads} KV heads)" : "")}");
            Console.WriteLine($"FFN         {s.FfnSize} ({s.Activation})");
            Console.WriteLine($"norm        {s.Norm}, {s.NormPlacement.ToString().ToLowerInvariant()}, epsilon {s.Epsilon.ToString("G3", ic)}");
            Console.WriteLine($"positions   {s.Positions}, max {s.MaxTokens}{(s.PositionPaddingId is { } pad ? $" (counted from padding id {pad} + 1)" : "")}; {(s.Causal ? "causal" : "bidirectional")}");
            Console.WriteLine($"vocabulary  {s.VocabSize.ToString("N0", ic)} ({frozen.Tokenizer.Kind}), token types {s.TypeVocabSize}");
            Console.WriteLine($"mask value  {s.MaskValue.ToString("G6", ic)}");
            Console.WriteLine($"parameters  {s.ParameterCount.ToString("N0", ic)} ({(s.ParameterCount / 1e6).ToString("F1", ic)}M)");
            Console.WriteLine($"sha256      {frozen.Hash}");
            return 0;
        }));
        return command;
    }
}
