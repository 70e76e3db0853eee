using SkTuning.Gpu.Data;

namespace SkTuning.Gpu.Tests.Data;

public sealed class LabelSetTests : IDisposable
{
    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    [Fact]
    public void NumericLabelsSortNumerically()
    {
        var l = LabelSet.FromTraining(["10", "2", "0", "2"]);
        Assert.Equal(["0", "2", "10"], l.Names);
        Assert.Equal(2, l.IdOf("10"));
    }

    [Fact]
    public void NamedLabelsSortOrdinally()
    {
        Assert.Equal(["entailment", "not_entailment"], LabelSet.FromTraining(["not_entailment", "entailment"]).Names);
        Assert.Equal(["ham", "spam"], LabelSet.FromTraining(["spam", "ham"]).Names);
    }

    [Fact]
    public void TagSetHasBothPrefixesOfEveryType()
    {
        var l = LabelSet.FromTags(["O", "I-PER", "B-LOC", "O"]);
        Assert.Equal(["O", "B-LOC", "I-LOC", "B-PER", "I-PER"], l.Names);
    }

    [Fact]
    public void UnseenDevLabelNamesFileLineAndLabel()
    {
        var l = LabelSet.FromTraining(["a", "b"]);
        var e = Assert.Throws<SkTuningException>(() => l.Encode("c", "dev.tsv", 7));
        Assert.Equal("dev.tsv:7: label 'c' does not occur in the training data (labels: a, b)", e.Message);
    }

    [Fact]
    public void UnseenDevLabelInCustomTask()
    {
        string train = _dir.Write("train.tsv", "text\tlabel\nx\tpos\ny\tneg\n");
        string dev = _dir.Write("dev.tsv", "text\tlabel\nz\tpos\nw\tneutral\n");
        var task = TaskCatalog.Custom(new CustomTaskOptions { TrainFile = train, DevFile = dev });
        var e = Assert.Throws<SkTuningException>(() => task.Load(""));
        Assert.StartsWith($"{dev}:3: label 'neutral' does not occur in the training data", e.Message);
    }

    [Fact]
    public void UnseenDevTagInCustomConll()
    {
        string train = _dir.Write("train.conll", "a B-PER\nb O\n");
        string dev = _dir.Write("dev.conll", "a I-PER\n\nb B-LOC\n");
        var task = TaskCatalog.Custom(new CustomTaskOptions { TrainFile = train, DevFile = dev, Kind = TaskKind.TokenClassification });
        var e = Assert.Throws<SkTuningException>(() => task.Load(""));
        Assert.StartsWith($"{dev}:3: label 'B-LOC' does not occur in the training data", e.Message);
    }
}
