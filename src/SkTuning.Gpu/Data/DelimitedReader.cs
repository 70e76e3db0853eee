using System.Globalization;
using System.Text;

namespace SkTuning.Gpu.Data;

/// <summary>The file formats the readers understand.</summary>
public enum DataFormat
{
    /// <summary>Tab-separated values, no quote handling (GLUE TSVs have stray quote characters inside fields).</summary>
    Tsv,

    /// <summary>Comma-separated values with RFC 4180 quoting (quoted fields may contain commas, "" and newlines).</summary>
    Csv,

    /// <summary>One JSON object per line, fields by name.</summary>
    JsonLines,

    /// <summary>CoNLL: one "token tag" (tab or space separated) per line, blank lines between sentences.</summary>
    Conll,
}

/// <summary>A column chosen by header name or by 0-based index.</summary>
public readonly record struct ColumnRef
{
    /// <summary>The header name, or null when chosen by index.</summary>
    public string? Name { get; }

    /// <summary>The 0-based index, or -1 when chosen by name.</summary>
    public int Index { get; }

    /// <summary>A column by header name.</summary>
    public ColumnRef(string name) { Name = name; Index = -1; }

    /// <summary>A column by 0-based index.</summary>
    public ColumnRef(int index)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(index);
        Name = null;
        Index = index;
    }

    /// <summary>"3" is the index 3; anything else is a name.</summary>
    public static ColumnRef Parse(string s) =>
        int.TryParse(s, NumberStyles.None, CultureInfo.InvariantCulture, out int i) ? new ColumnRef(i) : new ColumnRef(s);

    /// <summary>A column by name.</summary>
    public static implicit operator ColumnRef(string name) => new(name);

    /// <summary>A column by index.</summary>
    public static implicit operator ColumnRef(int index) => new(index);

    /// <inheritdoc/>
    public override string ToString() => Name is null ? Index.ToString(CultureInfo.InvariantCulture) : $"'{Name}'";
}

/// <summary>One record of a delimited file: its fields and the line where it starts.</summary>
/// <param name="Line">1-based line number.</param>
/// <param name="Fields">The fields, unquoted.</param>
public readonly record struct DelimitedRecord(int Line, string[] Fields);

/// <summary>
/// Streams TSV or CSV files as strict UTF-8 (BOM skipped), with or without a header row, picking columns
/// by name or index. Every error is one line naming the file and line.
/// </summary>
public sealed class DelimitedReader
{
    /// <summary>Creates a reader for <paramref name="path"/>.</summary>
    /// <param name="path">The file.</param>
    /// <param name="delimiter">Field separator.</param>
    /// <param name="hasHeader">Whether the first line names the columns.</param>
    /// <param name="quoting">Whether double quotes delimit fields (CSV); false reads quotes as text (TSV).</param>
    public DelimitedReader(string path, char delimiter, bool hasHeader, bool quoting)
    {
        Path = path;
        Delimiter = delimiter;
        HasHeader = hasHeader;
        Quoting = quoting;
    }

    /// <summary>A TSV reader: tab-separated, no quote handling.</summary>
    public static DelimitedReader Tsv(string path, bool hasHeader = true) => new(path, '\t', hasHeader, false);

    /// <summary>A CSV reader: comma-separated, RFC 4180 quoting.</summary>
    public static DelimitedReader Csv(string path, bool hasHeader = true) => new(path, ',', hasHeader, true);

    /// <summary>The file.</summary>
    public string Path { get; }

    /// <summary>The field separator.</summary>
    public char Delimiter { get; }

    /// <summary>Whether the first line is a header.</summary>
    public bool HasHeader { get; }

    /// <summary>Whether double quotes delimit fields.</summary>
    public bool Quoting { get; }

    /// <summary>
    /// Every record, the header included, skipping empty lines. Column counts are not checked here.
    /// </summary>
    public IEnumerable<DelimitedRecord> Records()
    {
        using var reader = new Utf8LineReader(Path);
        var fields = new List<string>();
        var sb = new StringBuilder();
        string? line;
        while ((line = reader.ReadLine()) != null)
        {
            if (line.Length == 0) continue;
            int start = reader.LineNumber;
            fields.Clear();
            if (!Quoting)
            {
                yield return new DelimitedRecord(start, line.Split(Delimiter));
                continue;
            }
            // CSV: a quoted field may continue on the next lines.
            int i = 0;
            while (true)
            {
                sb.Clear();
                if (i < line.Length && line[i] == '"')
                {
                    i++;
                    while (true)
                    {
                        if (i >= line.Length)
                        {
                            line = reader.ReadLine()
                                ?? throw new SkTuningException($"{Path}:{start}: quoted field is not closed before the end of the file");
                            sb.Append('\n');
                            i = 0;
                            continue;
                        }
                        char c = line[i++];
                        if (c != '"') { sb.Append(c); continue; }
                        if (i < line.Length && line[i] == '"') { sb.Append('"'); i++; continue; }
                        break;
                    }
                    if (i < line.Length && line[i] != Delimiter)
                        throw new SkTuningException($"{Path}:{reader.LineNumber}: unexpected character '{line[i]}' after a closing quote");
                }
                else
                {
                    int j = line.IndexOf(Delimiter, i);
                    int end = j < 0 ? line.Length : j;
                    sb.Append(line, i, end - i);
                    i = end;
                }
                fields.Add(sb.ToString());
                if (i >= line.Length) break;
                i++; // the delimiter
                if (i == line.Length) { fields.Add(""); break; }
            }
            yield return new DelimitedRecord(start, fields.ToArray());
        }
    }

    /// <summary>
    /// Reads rows of text, optional pair text and label. Every data row must have as many columns as the
    /// header (or, without a header, as the first row); an empty file, a missing column or an unknown
    /// column name is a <see cref="SkTuningException"/>. Labels are trimmed; texts are kept as written.
    /// </summary>
    public IEnumerable<RawExample> Read(ColumnRef text, ColumnRef? pair, ColumnRef label)
    {
        int expected = -1, iText = -1, iPair = -1, iLabel = -1;
        bool any = false;
        foreach (var rec in Records())
        {
            if (expected < 0)
            {
                if (HasHeader)
                {
                    var header = rec.Fields.Select(f => f.Trim()).ToArray();
                    expected = header.Length;
                    iText = Resolve(text, header, rec.Line);
                    iPair = pair is { } p ? Resolve(p, header, rec.Line) : -1;
                    iLabel = Resolve(label, header, rec.Line);
                    continue;
                }
                iText = Resolve(text, null, rec.Line);
                iPair = pair is { } p2 ? Resolve(p2, null, rec.Line) : -1;
                iLabel = Resolve(label, null, rec.Line);
                int needed = Math.Max(iText, Math.Max(iPair, iLabel)) + 1;
                expected = Math.Max(needed, rec.Fields.Length);
            }
            if (rec.Fields.Length != expected)
                throw new SkTuningException($"{Path}:{rec.Line}: expected {expected} columns, found {rec.Fields.Length}");
            any = true;
            yield return new RawExample(Path, rec.Line, rec.Fields[iText], iPair >= 0 ? rec.Fields[iPair] : null, rec.Fields[iLabel].Trim());
        }
        if (!any) throw new SkTuningException($"{Path}: no examples");
    }

    private int Resolve(ColumnRef col, string[]? header, int line)
    {
        if (col.Name is null)
        {
            if (header != null && col.Index >= header.Length)
                throw new SkTuningException($"{Path}:{line}: column {col.Index} requested but the header has {header.Length} columns");
            return col.Index;
        }
        if (header == null)
            throw new SkTuningException($"{Path}: column '{col.Name}' is named but the file has no header (use a 0-based column index)");
        int i = Array.IndexOf(header, col.Name);
        if (i < 0)
            throw new SkTuningException($"{Path}:{line}: no column '{col.Name}' in the header (columns: {string.Join(", ", header.Select(LabelSet.Printable))})");
        return i;
    }
}
