using System.Text.Json;
using System.Text.Json.Serialization;

namespace SkTuning.Gpu.Runs;

/// <summary>
/// The JSON conventions of run folders: snake_case properties, indented, enums as snake_case strings, NaN and
/// infinities as the strings "NaN"/"Infinity", missing required constructor parameters are errors. Reads report
/// a missing or bad file as a one-line <see cref="SkTuningException"/> naming it.
/// </summary>
public static class RunJson
{
    /// <summary>The serializer options every run-folder JSON file uses.</summary>
    public static JsonSerializerOptions Options { get; } = CreateOptions();

    /// <summary>Serializes <paramref name="value"/> and writes it to <paramref name="path"/> atomically.</summary>
    public static void Write<T>(string path, T value) =>
        AtomicFile.WriteAllText(path, JsonSerializer.Serialize(value, Options) + "\n");

    /// <summary>Reads and deserializes <paramref name="path"/>; a missing, unreadable, corrupt or null file is a one-line error.</summary>
    public static T Read<T>(string path)
    {
        string text;
        try
        {
            text = InputFile.ReadAllText(path);
        }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException)
        {
            throw new SkTuningException($"{path}: no such file");
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new SkTuningException($"{path}: cannot read: {SafeTensors.OneLine(e.Message)}", e);
        }
        T? value;
        try
        {
            value = JsonSerializer.Deserialize<T>(text, Options);
        }
        catch (Exception e) when (e is JsonException or NotSupportedException or ArgumentException or InvalidOperationException)
        {
            throw new SkTuningException($"{path}: invalid JSON for {typeof(T).Name}: {SafeTensors.OneLine(e.Message)}", e);
        }
        return value ?? throw new SkTuningException($"{path}: invalid JSON for {typeof(T).Name}: the document is null");
    }

    private static JsonSerializerOptions CreateOptions()
    {
        var options = new JsonSerializerOptions
        {
            PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
            WriteIndented = true,
            NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals,
            RespectNullableAnnotations = true,
            RespectRequiredConstructorParameters = true,
            AllowTrailingCommas = true,
            ReadCommentHandling = JsonCommentHandling.Skip,
        };
        options.Converters.Add(new JsonStringEnumConverter(JsonNamingPolicy.SnakeCaseLower));
        options.MakeReadOnly(populateMissingResolver: true);
        return options;
    }
}
