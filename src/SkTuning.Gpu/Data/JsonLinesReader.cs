using System.Text.Json;

namespace SkTuning.Gpu.Data;

/// <summary>
/// Streams JSON Lines files (one object per line, blank lines skipped) as strict UTF-8, fields by name.
/// Every error is one line naming the file and line.
/// </summary>
public sealed class JsonLinesReader
{
    /// <summary>Creates a reader for <paramref name="path"/>.</summary>
    public JsonLinesReader(string path) => Path = path;

    /// <summary>The file.</summary>
    public string Path { get; }

    /// <summary>Every object with its 1-based line number.</summary>
    public IEnumerable<(int Line, JsonElement Object)> Objects()
    {
        using var reader = new Utf8LineReader(Path);
        string? line;
        while ((line = reader.ReadLine()) != null)
        {
            if (string.IsNullOrWhiteSpace(line)) continue;
            JsonDocument doc;
            try
            {
                doc = JsonDocument.Parse(line);
            }
            catch (JsonException e)
            {
                throw new SkTuningException($"{Path}:{reader.LineNumber}: invalid JSON ({e.Message.ReplaceLineEndings(" ")})", e);
            }
            using (doc)
            {
                if (doc.RootElement.ValueKind != JsonValueKind.Object)
                    throw new SkTuningException($"{Path}:{reader.LineNumber}: expected a JSON object, found {doc.RootElement.ValueKind}");
                yield return (reader.LineNumber, doc.RootElement.Clone());
            }
        }
    }

    /// <summary>
    /// Rows of text, optional pair text and label. Texts must be JSON strings; a label may be a string,
    /// number or boolean (kept as written). A missing field or an empty file is a <see cref="SkTuningException"/>.
    /// </summary>
    public IEnumerable<RawExample> Read(string textField, string? pairField, string labelField)
    {
        bool any = false;
        foreach (var (line, obj) in Objects())
        {
            string text = String(obj, textField, line);
            string? pair = pairField is null ? null : String(obj, pairField, line);
            string label = Scalar(obj, labelField, line);
            any = true;
            yield return new RawExample(Path, line, text, pair, label);
        }
        if (!any) throw new SkTuningException($"{Path}: no examples");
    }

    /// <summary>
    /// Sentences for token classification: <paramref name="wordsField"/> is an array of strings and
    /// <paramref name="tagsField"/> an array of the same length of tags "O", "B-type" or "I-type" (IOB1 is converted to BIO).
    /// </summary>
    public IEnumerable<RawSentence> ReadSentences(string wordsField, string tagsField, TagScheme scheme = TagScheme.Bio)
    {
        bool any = false;
        foreach (var (line, obj) in Objects())
        {
            var words = Array(obj, wordsField, line);
            var tags = Array(obj, tagsField, line);
            if (words.Length != tags.Length)
                throw new SkTuningException($"{Path}:{line}: {words.Length} words but {tags.Length} tags");
            if (words.Length == 0) continue;
            foreach (var t in tags)
                if (!ConllReader.IsBioTag(t))
                    throw new SkTuningException($"{Path}:{line}: tag '{LabelSet.Printable(t)}' is not O, B-type or I-type");
            if (scheme == TagScheme.Iob1) tags = ConllReader.Iob1ToBio(tags);
            any = true;
            yield return new RawSentence(Path, line, words, tags, Enumerable.Repeat(line, words.Length).ToArray());
        }
        if (!any) throw new SkTuningException($"{Path}: no examples");
    }

    private JsonElement Field(JsonElement obj, string name, int line) =>
        obj.TryGetProperty(name, out var v) && v.ValueKind != JsonValueKind.Null
            ? v
            : throw new SkTuningException($"{Path}:{line}: missing field '{name}'");

    private string String(JsonElement obj, string name, int line)
    {
        var v = Field(obj, name, line);
        return v.ValueKind == JsonValueKind.String
            ? v.GetString()!
            : throw new SkTuningException($"{Path}:{line}: field '{name}' is {v.ValueKind}, expected a string");
    }

    private string Scalar(JsonElement obj, string name, int line)
    {
        var v = Field(obj, name, line);
        return v.ValueKind switch
        {
            JsonValueKind.String => v.GetString()!.Trim(),
            JsonValueKind.Number => v.GetRawText(),
            JsonValueKind.True => "true",
            JsonValueKind.False => "false",
            _ => throw new SkTuningException($"{Path}:{line}: field '{name}' is {v.ValueKind}, expected a string or number"),
        };
    }

    private string[] Array(JsonElement obj, string name, int line)
    {
        var v = Field(obj, name, line);
        if (v.ValueKind != JsonValueKind.Array)
            throw new SkTuningException($"{Path}:{line}: field '{name}' is {v.ValueKind}, expected an array");
        var r = new string[v.GetArrayLength()];
        int i = 0;
        foreach (var e in v.EnumerateArray())
        {
            r[i++] = e.ValueKind switch
            {
                JsonValueKind.String => e.GetString()!,
                _ => throw new SkTuningException($"{Path}:{line}: field '{name}' item {i - 1} is {e.ValueKind}, expected a string"),
            };
        }
        return r;
    }
}
