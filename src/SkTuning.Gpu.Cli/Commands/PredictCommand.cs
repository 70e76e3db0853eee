using System.CommandLine;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace SkTuning.Gpu.Cli;

/// <summary><c>sktune predict</c>: predictions of a trained run for a text or a file of texts, as JSON lines.</summary>
internal static class PredictCommand
{
    private static readonly JsonSerializerOptions Json = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
    };

    public static Command Create()
    {
        var run = new Option<string>("--run") { Description = "run folder written by sktune train", Required = true };
        var text = new Option<string?>("--text") { Description = "one text to classify" };
        var pair = new Option<string?>("--pair") { Description = "the second sentence, for pair tasks" };
        var file = new Option<string?>("--file") { Description = "a UTF-8 file with one text per line (pairs: text<TAB>pair)" };
        var model = new Option<string?>("--model") { Description = "frozen model (default: the one the run was trained on)" };
        var device = CommonOptions.Device();
        var weights = CommonOptions.RunWeights();
        var command = new Command("predict", "predict with a trained run; prints one JSON object per input") { run, text, pair, file, model, device, weights };
        command.SetAction(CliRunner.Guard(parse =>
        {
            var inputs = new List<(string Text, string? Pair, string Source)>();
            if (parse.GetValue(text) is { } t)
            {
                if (string.IsNullOrWhiteSpace(t)) throw new SkTuningException("--text is empty; give the text to classify");
                if (parse.GetValue(pair) is { } p && string.IsNullOrWhiteSpace(p)) throw new SkTuningException("--pair is empty; give the second text, or leave --pair out");
                inputs.Add((t, parse.GetValue(pair), parse.GetValue(pair) is null ? "--text" : "--pair"));
            }
            else if (parse.GetValue(pair) is not null) throw new SkTuningException("--pair needs --text (the first text of the pair)");
            if (parse.GetValue(file) is { } path) inputs.AddRange(ReadLines(path));
            if (inputs.Count == 0) throw new SkTuningException("give --text or --file");
            // Checked before the model loads: the run's configuration alone says whether it reads pairs.
            string runPath = parse.GetValue(run)!;
            var runFolder = Runs.RunFolder.Open(runPath);
            var config = runFolder.ReadConfig<Training.AdapterConfig>();
            config.Validate(runFolder.ConfigPath);
            foreach (var (_, second, source) in inputs) config.CheckInput(second, source);
            using var tuner = SkTuner.Load(runPath, parse.GetValue(model), parse.GetValue(device)!, CliRunner.Log, parse.GetValue(weights));
            var predictions = tuner.PredictBatch(inputs.ConvertAll(x => (x.Text, x.Pair)));
            for (int i = 0; i < inputs.Count; i++)
                Console.WriteLine(JsonSerializer.Serialize(new { text = inputs[i].Text, pair = inputs[i].Pair, prediction = predictions[i] }, Json));
            return 0;
        }));
        return command;
    }

    private static IEnumerable<(string, string?, string)> ReadLines(string path)
    {
        if (!File.Exists(path)) throw new SkTuningException($"{path}: file not found");
        var utf8 = new System.Text.UTF8Encoding(false, throwOnInvalidBytes: true);
        string[] lines;
        try
        {
            var bytes = InputFile.ReadAllBytes(path).AsSpan();
            lines = utf8.GetString(bytes[(bytes.StartsWith("\xEF\xBB\xBF"u8) ? 3 : 0)..]).Split('\n').Select(l => l.TrimEnd('\r')).ToArray();
        }
        catch (System.Text.DecoderFallbackException) { throw new SkTuningException($"{path}: invalid UTF-8"); }
        var result = new List<(string, string?, string)>();
        for (int i = 0; i < lines.Length; i++)
        {
            if (string.IsNullOrWhiteSpace(lines[i])) continue;
            var parts = lines[i].Split('\t');
            if (parts.Length > 2) throw new SkTuningException($"{path}:{i + 1}: expected text or text<TAB>pair, found {parts.Length} columns");
            result.Add((parts[0], parts.Length == 2 ? parts[1] : null, $"{path}:{i + 1}"));
        }
        if (result.Count == 0) throw new SkTuningException($"{path}: no texts");
        return result;
    }
}
