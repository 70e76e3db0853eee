namespace SkTuning.Gpu.Data;

/// <summary>How entity tags are written in a file.</summary>
public enum TagScheme
{
    /// <summary>BIO (IOB2): every entity starts with B-.</summary>
    Bio,

    /// <summary>IOB1: entities start with I-; B- only separates two adjacent entities of the same type. Converted to BIO on read.</summary>
    Iob1,
}

/// <summary>
/// Streams CoNLL files as strict UTF-8: one "token tag" per line (tab-separated, else whitespace-separated;
/// with more than two columns the first is the token and the last the tag), blank lines between sentences,
/// "-DOCSTART-" lines skipped. Tags must be O, B-type or I-type; IOB1 files are converted to BIO.
/// </summary>
public sealed class ConllReader
{
    /// <summary>Creates a reader for <paramref name="path"/> whose tags follow <paramref name="scheme"/>.</summary>
    public ConllReader(string path, TagScheme scheme = TagScheme.Bio)
    {
        Path = path;
        Scheme = scheme;
    }

    /// <summary>The file.</summary>
    public string Path { get; }

    /// <summary>The scheme of the file's tags (the sentences read are always BIO).</summary>
    public TagScheme Scheme { get; }

    /// <summary>The sentences, tags in BIO; an empty file is a <see cref="SkTuningException"/>.</summary>
    public IEnumerable<RawSentence> Read()
    {
        using var reader = new Utf8LineReader(Path);
        var words = new List<string>();
        var tags = new List<string>();
        var lines = new List<int>();
        bool any = false;
        string? line;
        while (true)
        {
            line = reader.ReadLine();
            bool blank = line is null || string.IsNullOrWhiteSpace(line);
            if (blank)
            {
                if (words.Count > 0)
                {
                    var t = tags.ToArray();
                    if (Scheme == TagScheme.Iob1) t = Iob1ToBio(t);
                    any = true;
                    yield return new RawSentence(Path, lines[0], words.ToArray(), t, lines.ToArray());
                    words.Clear(); tags.Clear(); lines.Clear();
                }
                if (line is null) break;
                continue;
            }
            string[] parts = line!.Contains('\t')
                ? line.Split('\t', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries)
                : line.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries);
            if (parts.Length > 0 && parts[0] == "-DOCSTART-") continue;
            if (parts.Length < 2)
                throw new SkTuningException($"{Path}:{reader.LineNumber}: expected a token and a tag, found {parts.Length} field");
            string tag = parts[^1];
            if (!IsBioTag(tag))
                throw new SkTuningException($"{Path}:{reader.LineNumber}: tag '{LabelSet.Printable(tag)}' is not O, B-type or I-type");
            words.Add(parts[0]);
            tags.Add(tag);
            lines.Add(reader.LineNumber);
        }
        if (!any) throw new SkTuningException($"{Path}: no examples");
    }

    /// <summary>Whether <paramref name="tag"/> is "O", "B-type" or "I-type" with a non-empty type.</summary>
    public static bool IsBioTag(string tag) =>
        tag == "O" || (tag.Length > 2 && (tag[0] == 'B' || tag[0] == 'I') && tag[1] == '-');

    /// <summary>
    /// IOB1 → BIO: an I-X that does not continue an entity of type X (after O, after another type, or at the
    /// start) becomes B-X; B-X (IOB1's separator of adjacent same-type entities) stays B-X.
    /// </summary>
    public static string[] Iob1ToBio(IReadOnlyList<string> tags)
    {
        var r = new string[tags.Count];
        string prevType = "";
        for (int i = 0; i < tags.Count; i++)
        {
            string t = tags[i];
            if (t.Length > 2 && t[1] == '-')
            {
                string type = t[2..];
                r[i] = t[0] == 'I' && type != prevType ? "B-" + type : t;
                prevType = type;
            }
            else
            {
                r[i] = t;
                prevType = "";
            }
        }
        return r;
    }
}
