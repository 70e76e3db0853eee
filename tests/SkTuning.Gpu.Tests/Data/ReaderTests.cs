using SkTuning.Gpu.Data;

namespace SkTuning.Gpu.Tests.Data;

public sealed class ReaderTests : IDisposable
{
    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    private static string OneLine(SkTuningException e)
    {
        Assert.DoesNotContain('\n', e.Message);
        return e.Message;
    }

    [Fact]
    public void TsvWithHeaderByName()
    {
        string f = _dir.Write("a.tsv", "label\tsentence\tother\n1\tgood \" film\tx\r\n\n0\tbad\ty\n");
        var rows = DelimitedReader.Tsv(f).Read("sentence", null, "label").ToList();
        Assert.Equal(2, rows.Count);
        Assert.Equal("good \" film", rows[0].Text); // quotes are text in TSV
        Assert.Equal("1", rows[0].Label);
        Assert.Equal(2, rows[0].Line);
        Assert.Equal(4, rows[1].Line); // blank line 3 skipped
        Assert.Null(rows[0].TextPair);
    }

    [Fact]
    public void TsvWithoutHeaderByIndex()
    {
        string f = _dir.Write("cola.tsv", "gj04\t1\t\tOur friends won't buy this.\ngj04\t0\t*\tThe more you eat.");
        var rows = DelimitedReader.Tsv(f, hasHeader: false).Read(3, null, 1).ToList();
        Assert.Equal(["Our friends won't buy this.", "The more you eat."], rows.Select(r => r.Text));
        Assert.Equal(["1", "0"], rows.Select(r => r.Label));
        Assert.Equal(1, rows[0].Line);
    }

    [Fact]
    public void BomIsStripped()
    {
        byte[] body = new System.Text.UTF8Encoding(false).GetBytes("Quality\t#1 String\t#2 String\n1\ta\tb\n");
        string f = _dir.WriteBytes("bom.tsv", [0xEF, 0xBB, 0xBF, .. body]);
        var rows = DelimitedReader.Tsv(f).Read("#1 String", "#2 String", "Quality").ToList();
        Assert.Equal(("a", "b", "1"), (rows[0].Text, rows[0].TextPair, rows[0].Label));
    }

    [Fact]
    public void MissingColumnNamesFileAndLine()
    {
        string f = _dir.Write("short.tsv", "sentence\tlabel\nok\t1\nbroken\nfine\t0\n");
        var e = Assert.Throws<SkTuningException>(() => DelimitedReader.Tsv(f).Read("sentence", null, "label").ToList());
        Assert.Equal($"{f}:3: expected 2 columns, found 1", OneLine(e));
    }

    [Fact]
    public void MissingColumnWithoutHeader()
    {
        string f = _dir.Write("short.tsv", "a\t1\t\tx\na\t1\n");
        var e = Assert.Throws<SkTuningException>(() => DelimitedReader.Tsv(f, false).Read(3, null, 1).ToList());
        Assert.Equal($"{f}:2: expected 4 columns, found 2", OneLine(e));
    }

    [Fact]
    public void UnknownColumnName()
    {
        string f = _dir.Write("h.tsv", "sentence\tlabel\nx\t1\n");
        var e = Assert.Throws<SkTuningException>(() => DelimitedReader.Tsv(f).Read("text", null, "label").ToList());
        Assert.StartsWith($"{f}:1: no column 'text'", OneLine(e));
    }

    [Fact]
    public void InvalidUtf8NamesFileAndLine()
    {
        var enc = new System.Text.UTF8Encoding(false);
        byte[] bytes = [.. enc.GetBytes("sentence\tlabel\nfine\t1\nbad "), 0xC3, 0x28, .. enc.GetBytes("\t0\n")];
        string f = _dir.WriteBytes("bad.tsv", bytes);
        var e = Assert.Throws<SkTuningException>(() => DelimitedReader.Tsv(f).Read("sentence", null, "label").ToList());
        Assert.Equal($"{f}:3: invalid UTF-8", OneLine(e));

        string c = _dir.WriteBytes("bad.conll", [.. enc.GetBytes("a O\n\nb "), 0xFF, .. enc.GetBytes(" O\n")]);
        e = Assert.Throws<SkTuningException>(() => new ConllReader(c).Read().ToList());
        Assert.Equal($"{c}:3: invalid UTF-8", OneLine(e));
    }

    [Fact]
    public void EmptyFiles()
    {
        string f = _dir.Write("empty.tsv", "");
        Assert.Equal($"{f}: no examples", OneLine(Assert.Throws<SkTuningException>(() => DelimitedReader.Tsv(f).Read("s", null, "l").ToList())));
        string h = _dir.Write("header-only.tsv", "s\tl\n");
        Assert.Equal($"{h}: no examples", OneLine(Assert.Throws<SkTuningException>(() => DelimitedReader.Tsv(h).Read("s", null, "l").ToList())));
        string j = _dir.Write("empty.jsonl", "\n\n");
        Assert.Equal($"{j}: no examples", OneLine(Assert.Throws<SkTuningException>(() => new JsonLinesReader(j).Read("t", null, "l").ToList())));
        string c = _dir.Write("empty.conll", "-DOCSTART- O\n\n");
        Assert.Equal($"{c}: no examples", OneLine(Assert.Throws<SkTuningException>(() => new ConllReader(c).Read().ToList())));
    }

    [Fact]
    public void MissingFile()
    {
        string f = Path.Combine(_dir.Path, "nope.tsv");
        Assert.Equal($"{f}: file not found", OneLine(Assert.Throws<SkTuningException>(() => DelimitedReader.Tsv(f).Read("s", null, "l").ToList())));
    }

    [Fact]
    public void CsvQuoting()
    {
        string f = _dir.Write("q.csv", "text,label\n\"hello, \"\"world\"\"\",pos\n\"two\nlines\",neg\nplain,pos\n");
        var rows = DelimitedReader.Csv(f).Read("text", null, "label").ToList();
        Assert.Equal(["hello, \"world\"", "two\nlines", "plain"], rows.Select(r => r.Text));
        Assert.Equal([2, 3, 5], rows.Select(r => r.Line));
        string bad = _dir.Write("bad.csv", "text,label\n\"open,pos\n");
        var e = Assert.Throws<SkTuningException>(() => DelimitedReader.Csv(bad).Read("text", null, "label").ToList());
        Assert.StartsWith($"{bad}:2: quoted field", OneLine(e));
    }

    [Fact]
    public void JsonLines()
    {
        string f = _dir.Write("d.jsonl", "{\"a\":\"x\",\"b\":\"y\",\"label\":1}\n\n{\"a\":\"z\",\"b\":\"w\",\"label\":\"neg\"}\n");
        var rows = new JsonLinesReader(f).Read("a", "b", "label").ToList();
        Assert.Equal([("x", "y", "1", 1), ("z", "w", "neg", 3)], rows.Select(r => (r.Text, r.TextPair!, r.Label, r.Line)));
        string m = _dir.Write("m.jsonl", "{\"a\":\"x\",\"label\":1}\n{\"a\":\"x\"}\n");
        Assert.Equal($"{m}:2: missing field 'label'", OneLine(Assert.Throws<SkTuningException>(() => new JsonLinesReader(m).Read("a", null, "label").ToList())));
        string bad = _dir.Write("bad.jsonl", "{\"a\":\"x\",\"label\":1}\n{\"a\": nope}\n");
        Assert.StartsWith($"{bad}:2: invalid JSON", OneLine(Assert.Throws<SkTuningException>(() => new JsonLinesReader(bad).Read("a", null, "label").ToList())));
    }

    [Fact]
    public void JsonLinesSentences()
    {
        string f = _dir.Write("s.jsonl", "{\"tokens\":[\"John\",\"lives\"],\"tags\":[\"I-PER\",\"O\"]}\n");
        var s = Assert.Single(new JsonLinesReader(f).ReadSentences("tokens", "tags", TagScheme.Iob1));
        Assert.Equal(["B-PER", "O"], s.Tags);
        string n = _dir.Write("n.jsonl", "{\"tokens\":[\"a\"],\"tags\":[\"X\"]}\n");
        Assert.Equal($"{n}:1: tag 'X' is not O, B-type or I-type", OneLine(Assert.Throws<SkTuningException>(() => new JsonLinesReader(n).ReadSentences("tokens", "tags").ToList())));
        string m = _dir.Write("m.jsonl", "{\"tokens\":[\"a\",\"b\"],\"tags\":[\"O\"]}\n");
        Assert.Equal($"{m}:1: 2 words but 1 tags", OneLine(Assert.Throws<SkTuningException>(() => new JsonLinesReader(m).ReadSentences("tokens", "tags").ToList())));
    }

    [Fact]
    public void ConllSentences()
    {
        string f = _dir.Write("a.conll", "-DOCSTART- O\n\nJohn\tB-PER\nSmith\tI-PER\nruns\tO\n\n\nParis B-LOC\n");
        var s = new ConllReader(f).Read().ToList();
        Assert.Equal(2, s.Count);
        Assert.Equal(["John", "Smith", "runs"], s[0].Words);
        Assert.Equal(["B-PER", "I-PER", "O"], s[0].Tags);
        Assert.Equal(3, s[0].Line);
        Assert.Equal(["Paris"], s[1].Words);
        Assert.Equal(8, s[1].Line);
    }

    [Fact]
    public void ConllIob1IsReadAsBio()
    {
        string f = _dir.Write("iob1.conll", "The I-ORG\nMad I-ORG\nCapsule I-ORG\nand O\nJohn I-PER\nMary B-PER\nin O\nTokyo I-LOC\nJapan I-MISC\n");
        var s = Assert.Single(new ConllReader(f, TagScheme.Iob1).Read());
        Assert.Equal(["B-ORG", "I-ORG", "I-ORG", "O", "B-PER", "B-PER", "O", "B-LOC", "B-MISC"], s.Tags);
    }

    [Fact]
    public void Iob1ToBio()
    {
        // I- after O, at the start or after another type starts an entity → B-; I- continuing the same type stays;
        // IOB1's B- (adjacent same-type entities) stays B-.
        Assert.Equal(["B-PER", "I-PER", "B-PER", "O", "B-LOC", "B-ORG", "I-ORG"],
            ConllReader.Iob1ToBio(["I-PER", "I-PER", "B-PER", "O", "I-LOC", "I-ORG", "I-ORG"]));
    }

    [Fact]
    public void ConllBadLines()
    {
        string f = _dir.Write("bad.conll", "John B-PER\nalone\n");
        Assert.Equal($"{f}:2: expected a token and a tag, found 1 field", OneLine(Assert.Throws<SkTuningException>(() => new ConllReader(f).Read().ToList())));
        string g = _dir.Write("badtag.conll", "John PERSON\n");
        Assert.StartsWith($"{g}:1: tag 'PERSON'", OneLine(Assert.Throws<SkTuningException>(() => new ConllReader(g).Read().ToList())));
    }
}
