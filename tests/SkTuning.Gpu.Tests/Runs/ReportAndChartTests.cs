using System.Xml.Linq;
using SkTuning.Gpu.Runs;

namespace SkTuning.Gpu.Tests.Runs;

public sealed class ReportAndChartTests : IDisposable
{
    private static readonly XNamespace Svg = "http://www.w3.org/2000/svg";
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "sktune-report-" + Guid.NewGuid().ToString("N"));

    public ReportAndChartTests() => Directory.CreateDirectory(_dir);

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static XElement[] Polylines(XDocument doc) => doc.Descendants(Svg + "polyline").ToArray();

    private static int PointCount(XElement polyline) =>
        ((string)polyline.Attribute("points")!).Split(' ', StringSplitOptions.RemoveEmptyEntries).Length;

    private static RunHistory SampleHistory()
    {
        var h = new RunHistory { PrimaryMetric = "accuracy" };
        for (int s = 1; s <= 10; s++)
            h.Add(new CurvePoint(s * 50, s * 1600, 0.7 / s, 1e-3, s * 2.0,
                s % 3 == 0 ? new Dictionary<string, double> { ["accuracy"] = 0.6 + s * 0.02 } : null));
        return h;
    }

    [Fact]
    public void LearningCurveHasLossAndDevLinesWithMarkers()
    {
        var folder = RunFolder.Create(Path.Combine(_dir, "run"));
        folder.WriteLearningCurve("sst2 <sk-prompt> & \"friends\"", SampleHistory(), "accuracy");
        var doc = XDocument.Load(folder.LearningCurvePath);
        Assert.Equal(Svg + "svg", doc.Root!.Name);
        var lines = Polylines(doc);
        Assert.Equal(2, lines.Length);
        Assert.Equal("train loss", (string)lines[0].Attribute("data-series")!);
        Assert.Equal(10, PointCount(lines[0]));
        Assert.Equal("dev accuracy", (string)lines[1].Attribute("data-series")!);
        Assert.Equal(3, PointCount(lines[1]));
        Assert.Equal(3, doc.Descendants(Svg + "circle").Count(c => (string?)c.Attribute("class") == "marker"));
        var texts = doc.Descendants(Svg + "text").Select(t => t.Value).ToList();
        Assert.Contains("sst2 <sk-prompt> & \"friends\"", texts);
        Assert.Contains("train loss", texts);
        Assert.Contains("dev accuracy", texts);
        Assert.Contains("step", texts);
        Assert.True(doc.Descendants(Svg + "text").Count(t => (string?)t.Attribute("class") == "tick") >= 8);
        Assert.Contains("&lt;sk-prompt&gt; &amp;", File.ReadAllText(folder.LearningCurvePath));
    }

    [Fact]
    public void MultiSeriesHasOnePolylinePerSeriesAndSkipsNonFinitePoints()
    {
        var series = new List<Series>
        {
            new("sk-prompt", [new(0, 0.5), new(100, 0.7), new(200, double.NaN), new(300, 0.8)]),
            new("sk-prefix", [new(0, 0.55), new(100, double.PositiveInfinity), new(double.NaN, 0.1), new(300, 0.85)], Markers: true),
            new("single", [new(150, 0.6)]),
            new("all-missing", [new(100, double.NaN)]),
            new("empty \u0001 control", []),
        };
        var path = Path.Combine(_dir, "compare.svg");
        LearningCurveSvg.Write(path, "methods on sst2", series, leftLabel: "dev accuracy");
        var doc = XDocument.Load(path);
        var lines = Polylines(doc);
        Assert.Equal([3, 2, 1, 0, 0], lines.Select(PointCount));
        Assert.Equal(["sk-prompt", "sk-prefix", "single", "all-missing", "empty  control"], lines.Select(l => (string)l.Attribute("data-series")!));
        // Markers on the marked series and on the lone point.
        Assert.Equal(2 + 1, doc.Descendants(Svg + "circle").Count());
        Assert.DoesNotContain("NaN", File.ReadAllText(path));
        Assert.DoesNotContain("Infinity", File.ReadAllText(path));
    }

    [Fact]
    public void SinglePointAndEmptyChartsRender()
    {
        var one = new RunHistory();
        one.Add(new CurvePoint(1, 32, 0.69, 1e-3, 0.1, new Dictionary<string, double> { ["mcc"] = double.NaN }));
        var svg = LearningCurveSvg.Render("one", LearningCurveSvg.FromHistory(one, "mcc"), "step", "train loss", "dev mcc");
        var doc = XDocument.Parse(svg);
        Assert.Equal([1, 0], Polylines(doc).Select(PointCount));
        Assert.DoesNotContain("NaN", svg);

        var empty = XDocument.Parse(LearningCurveSvg.Render("nothing", []));
        Assert.Empty(Polylines(empty));
        Assert.Equal("nothing", empty.Descendants(Svg + "text").First().Value);
    }

    [Fact]
    public void ReportContainsTheNumbersGiven()
    {
        var report = new RunReport
        {
            Title = "SK-prompt on SST-2",
            Method = "SK-prompt: 10 virtual tokens | last-token pooling",
            Dataset = "SST-2 (67,349 train / 872 dev)",
            ModelName = "all-MiniLM-L6-v2",
            ModelHash = "0123456789abcdef",
            BestMetrics = new Dictionary<string, double> { ["accuracy"] = 0.87654, ["f1"] = 0.8812 },
            BestStep = 1500,
            FinalMetrics = new Dictionary<string, double> { ["accuracy"] = 0.8612, ["f1"] = double.NaN },
            TrainableParameters = 4610,
            ModelParameters = 22_713_216,
            SecondsPerStep = 0.0423,
            TotalSeconds = 3723,
            Steps = 2000,
            Hyperparameters = new Dictionary<string, object?> { ["learning_rate"] = 3e-3, ["batch_size"] = 32, ["pooling"] = "last_token", ["warmup"] = null },
        };
        var folder = RunFolder.Create(Path.Combine(_dir, "run"));
        folder.WriteReport(report);
        var md = File.ReadAllText(folder.ReportPath);
        Assert.StartsWith("# SK-prompt on SST-2\n", md);
        Assert.Contains("| Method | SK-prompt: 10 virtual tokens \\| last-token pooling |", md);
        Assert.Contains("SST-2 (67,349 train / 872 dev)", md);
        Assert.Contains("all-MiniLM-L6-v2 (`0123456789abcdef`)", md);
        Assert.Contains("| Trainable parameters | 4,610 (0.0203% of the model's 22,713,216) |", md);
        Assert.Contains("| Time per step | 42.3 ms |", md);
        Assert.Contains("| Total time | 1h 02m 03s |", md);
        Assert.Contains("| Steps | 2,000 |", md);
        Assert.Contains("| Metric | Best (step 1500) | Final |", md);
        Assert.Contains("| accuracy | 0.8765 | 0.8612 |", md);
        Assert.Contains("| f1 | 0.8812 | NaN |", md);
        Assert.Contains("| learning_rate | 0.003 |", md);
        Assert.Contains("| batch_size | 32 |", md);
        Assert.Contains("| pooling | last_token |", md);
        Assert.Contains("![learning curve](learning_curve.svg)", md);
    }

    [Theory]
    [InlineData(0.0123, "12.3 ms")]
    [InlineData(4.567, "4.57 s")]
    [InlineData(187, "3m 07s")]
    [InlineData(3723, "1h 02m 03s")]
    public void DurationsAreReadable(double seconds, string expected) => Assert.Equal(expected, RunReport.Duration(seconds));
}
