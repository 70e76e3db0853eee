using SkTuning.Gpu.Data;
using SkTuning.Gpu.Training;

namespace SkTuning.Gpu.Tests.Data;

public sealed class TaskCatalogTests : IDisposable
{
    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    [Fact]
    public void NamedTasksDeclareKindsAndMetrics()
    {
        Assert.Equal(["sst2", "cola", "mrpc", "rte", "stsb", "wnut17", "wikigold", "sms-spam"], TaskCatalog.Names);
        Assert.Equal(MetricNames.Matthews, TaskCatalog.Get("cola").PrimaryMetric);
        Assert.Equal([MetricNames.F1, MetricNames.Accuracy], TaskCatalog.Get("mrpc").MetricNames);
        Assert.Equal(TaskKind.Regression, TaskCatalog.Get("STSB").Kind);
        Assert.Equal([MetricNames.Pearson, MetricNames.Spearman], TaskCatalog.Get("stsb").MetricNames);
        Assert.Equal(TaskKind.TokenClassification, TaskCatalog.Get("wnut17").Kind);
        Assert.Equal("spam", TaskCatalog.Get("sms-spam").PositiveLabel);
        var e = Assert.Throws<SkTuningException>(() => TaskCatalog.Get("mnli"));
        Assert.StartsWith("unknown task 'mnli'", e.Message);
    }

    [Fact]
    public void MissingDataRoot()
    {
        string root = Path.Combine(_dir.Path, "absent");
        var e = Assert.Throws<SkTuningException>(() => TaskCatalog.Get("sst2").Load(root));
        Assert.Equal($"{root}: data folder not found (pass --data <folder>)", e.Message);
    }

    [Fact]
    public void CustomRegressionRejectsNonNumber()
    {
        string train = _dir.Write("t.tsv", "a\tb\tscore\nx\ty\t3.5\nx\ty\thigh\n");
        var task = TaskCatalog.Custom(new CustomTaskOptions { TrainFile = train, DevFile = train, TextColumn = "a", PairColumn = "b", LabelColumn = "score", Kind = TaskKind.Regression });
        var e = Assert.Throws<SkTuningException>(() => task.Load(""));
        Assert.Equal($"{train}:3: regression target 'high' is not a number", e.Message);
    }

    [Fact]
    public void CustomCsvSplitsStratifiedWithoutDevFile()
    {
        var lines = new List<string> { "text,label" };
        for (int i = 0; i < 80; i++) lines.Add($"\"pos, {i}\",pos");
        for (int i = 0; i < 20; i++) lines.Add($"neg {i},neg");
        string train = _dir.Write("t.csv", string.Join('\n', lines));
        var task = TaskCatalog.Custom(new CustomTaskOptions { TrainFile = train });
        Assert.Equal([MetricNames.Accuracy, MetricNames.MacroF1, MetricNames.Matthews], task.MetricNames);
        var d = task.Load("", seed: 7);
        Assert.Equal(90, d.Train.Count);
        Assert.Equal(10, d.Dev.Count);
        Assert.Equal(8, d.Dev.Count(e => d.Labels![e.Label] == "pos"));
        Assert.StartsWith("pos, ", d.Train.First(e => d.Labels![e.Label] == "pos").Text);
        var again = task.Load("", seed: 7);
        Assert.Equal(d.Dev.Select(e => e.Source), again.Dev.Select(e => e.Source));
    }

    [Fact]
    public void CustomJsonLinesPair()
    {
        string f = _dir.Write("p.jsonl", "{\"premise\":\"a\",\"hypothesis\":\"b\",\"label\":0}\n{\"premise\":\"c\",\"hypothesis\":\"d\",\"label\":1}\n");
        var d = TaskCatalog.Custom(new CustomTaskOptions { TrainFile = f, DevFile = f, TextColumn = "premise", PairColumn = "hypothesis" }).Load("");
        Assert.True(d.IsPair);
        Assert.Equal(("c", "d", 1), (d.Dev[1].Text, d.Dev[1].TextPair!, d.Dev[1].Label));
    }

    [Fact]
    public void UnknownExtension()
    {
        var e = Assert.Throws<SkTuningException>(() => TaskCatalog.Custom(new CustomTaskOptions { TrainFile = "data.xyz" }));
        Assert.StartsWith("data.xyz: cannot tell the format", e.Message);
    }

    [Fact]
    public void EvaluateClassification()
    {
        string f = _dir.Write("t.tsv", "text\tlabel\na\tham\nb\tspam\nc\tspam\nd\tham\n");
        var task = TaskCatalog.Custom(new CustomTaskOptions { TrainFile = f, DevFile = f, PositiveLabel = "spam" });
        var d = task.Load("");
        Assert.Equal(1, d.PositiveId);
        // gold ham spam spam ham; predicted spam spam ham ham → TP 1, predicted 2, gold 2 → F1 0.5; accuracy 2/4
        var r = task.Evaluate(d, d.Dev, [1, 1, 0, 0]);
        Assert.Equal(0.5, r[MetricNames.F1], 12);
        Assert.Equal(0.5, r[MetricNames.Accuracy], 12);
    }

    private static string Root => SharedData.Root!;

    [DataTheory]
    [InlineData("sst2", 67_349, 872, 2)]
    [InlineData("cola", 8_551, 1_043, 2)]
    [InlineData("mrpc", 3_667, 408, 2)]
    [InlineData("rte", 2_490, 277, 2)]
    [InlineData("stsb", 5_749, 1_500, 0)]
    [InlineData("wnut17", 3_394, 1_009, 13)]
    public void GlueAndWnutLoadWithReadmeCounts(string name, int train, int dev, int labels)
    {
        var d = TaskCatalog.Get(name).Load(Root);
        Assert.Equal(train, d.Train.Count);
        Assert.Equal(dev, d.Dev.Count);
        Assert.Equal(labels, d.Labels?.Count ?? 0);
        Assert.All(d.Train, e => Assert.False(string.IsNullOrEmpty(e.Text)));
    }

    [DataFact]
    public void GlueDetails()
    {
        var sst = TaskCatalog.Get("sst2").Load(Root);
        Assert.Equal(["0", "1"], sst.Labels!.Names);
        Assert.Null(sst.Train[0].TextPair);
        Assert.StartsWith("hide new secretions", sst.Train[0].Text);

        var cola = TaskCatalog.Get("cola").Load(Root);
        Assert.Equal("Our friends won't buy this analysis, let alone the next one we propose.", cola.Train[0].Text);

        var mrpc = TaskCatalog.Get("mrpc").Load(Root);
        Assert.StartsWith("Amrozi accused his brother , whom he called \" the witness \"", mrpc.Train[0].Text);
        Assert.StartsWith("Referring to him", mrpc.Train[0].TextPair);
        Assert.Equal(1, mrpc.Train[0].Label);
        Assert.Equal(1, mrpc.PositiveId);

        var rte = TaskCatalog.Get("rte").Load(Root);
        Assert.Equal(["entailment", "not_entailment"], rte.Labels!.Names);
        Assert.Equal(1, rte.Train[0].Label);

        var stsb = TaskCatalog.Get("stsb").Load(Root);
        Assert.Equal(5.0, stsb.Train[0].Value);
        Assert.Equal(3.8, stsb.Train[1].Value);
        Assert.All(stsb.Train.Concat(stsb.Dev), e => Assert.InRange(e.Value, 0, 5));
        Assert.Equal("An air plane is taking off.", stsb.Train[0].TextPair);
    }

    [DataFact]
    public void WnutIsBio()
    {
        var d = TaskCatalog.Get("wnut17").Load(Root);
        Assert.Equal("O", d.Labels![0]);
        Assert.Contains("B-creative-work", d.Labels.Names);
        Assert.All(d.Train, e => Assert.Equal(e.Words!.Length, e.WordLabels!.Length));
        Assert.Equal(1_287, d.Test!.Count);
    }

    [DataFact]
    public void WikigoldSplitsBySentence()
    {
        var task = TaskCatalog.Get("wikigold");
        var d = task.Load(Root);
        // 1,696 sentences: round(0.8·1696) = 1357 train, round(0.1·1696) = 170 dev, 169 test
        Assert.Equal(1_696, d.Train.Count + d.Dev.Count + d.Test!.Count);
        Assert.Equal((1_357, 170, 169), (d.Train.Count, d.Dev.Count, d.Test.Count));
        Assert.Equal(["O", "B-LOC", "I-LOC", "B-MISC", "I-MISC", "B-ORG", "I-ORG", "B-PER", "I-PER"], d.Labels!.Names);
        // IOB1 → BIO: no entity starts with I- after conversion
        foreach (var e in d.Train.Concat(d.Dev).Concat(d.Test))
        {
            var tags = d.Labels.Decode(e.WordLabels);
            for (int i = 0; i < tags.Length; i++)
                if (tags[i].StartsWith("I-", StringComparison.Ordinal))
                    Assert.True(i > 0 && tags[i - 1].Length > 2 && tags[i - 1][2..] == tags[i][2..], $"{e.Source}: {tags[i]} at {i}");
        }
        var again = task.Load(Root);
        Assert.Equal(d.Dev.Select(e => e.Source), again.Dev.Select(e => e.Source));
        var other = task.Load(Root, seed: 1);
        Assert.NotEqual(d.Dev.Select(e => e.Source), other.Dev.Select(e => e.Source));
    }

    [DataFact]
    public void SmsSpamSplitIsStratifiedAndDeterministic()
    {
        var task = TaskCatalog.Get("sms-spam");
        var d = task.Load(Root);
        Assert.Equal(["ham", "spam"], d.Labels!.Names);
        Assert.Equal(5_574, d.Train.Count + d.Dev.Count);
        // 4,827 ham and 747 spam: dev takes round(482.7) = 483 ham and round(74.7) = 75 spam
        int spam = d.Train.Concat(d.Dev).Count(e => e.Label == 1);
        Assert.Equal(747, spam);
        Assert.Equal(75, d.Dev.Count(e => e.Label == 1));
        Assert.Equal(483, d.Dev.Count(e => e.Label == 0));
        var again = task.Load(Root);
        Assert.Equal(d.Dev.Select(e => e.Source), again.Dev.Select(e => e.Source));
        var other = task.Load(Root, seed: 1);
        Assert.NotEqual(d.Dev.Select(e => e.Source), other.Dev.Select(e => e.Source));
        Assert.Empty(d.Dev.Select(e => e.Source).Intersect(d.Train.Select(e => e.Source)));
    }

    [DataFact]
    public void DefaultRootFindsSharedData()
    {
        Assert.Equal(Path.GetFullPath(Root), Path.GetFullPath(DataLocator.DefaultRoot()));
        Assert.Equal(Path.GetFullPath(Root), DataLocator.Resolve(null));
    }
}
