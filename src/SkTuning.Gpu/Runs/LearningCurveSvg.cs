using System.Globalization;
using System.Text;
using System.Xml;
using System.Xml.Linq;

namespace SkTuning.Gpu.Runs;

/// <summary>Which y axis a <see cref="Series"/> is plotted against.</summary>
public enum ChartAxis
{
    /// <summary>The left axis (train loss, or every series of a comparison).</summary>
    Left,

    /// <summary>The right axis (a dev metric beside the loss).</summary>
    Right,
}

/// <summary>A point of a chart series.</summary>
/// <param name="X">The x value (a step).</param>
/// <param name="Y">The y value; a non-finite point is skipped.</param>
public readonly record struct ChartPoint(double X, double Y);

/// <summary>One line of a chart.</summary>
/// <param name="Name">The legend text.</param>
/// <param name="Points">The points, in drawing order; NaN or infinite ones are skipped.</param>
/// <param name="Axis">The y axis it is scaled to.</param>
/// <param name="Markers">Whether to draw a circle at each point (a single-point series always gets one).</param>
public sealed record Series(string Name, IReadOnlyList<ChartPoint> Points, ChartAxis Axis = ChartAxis.Left, bool Markers = false);

/// <summary>
/// Self-contained SVG line charts: the learning curve of a run (train loss on the left axis, a dev metric with
/// markers on the right) and comparisons of several runs (one line per series), from one renderer. Each series
/// is one <c>&lt;polyline class="series"&gt;</c>; text is XML-escaped.
/// </summary>
public static class LearningCurveSvg
{
    private const double Width = 760, Height = 440, Top = 56, Bottom = 56, LeftMargin = 76;
    private static readonly string[] Palette =
        ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];
    private static readonly XNamespace Svg = "http://www.w3.org/2000/svg";

    /// <summary>Writes a chart of <paramref name="series"/> to <paramref name="path"/> atomically.</summary>
    public static void Write(string path, string title, IReadOnlyList<Series> series, string xLabel = "step",
        string? leftLabel = null, string? rightLabel = null) =>
        AtomicFile.WriteAllText(path, Render(title, series, xLabel, leftLabel, rightLabel));

    /// <summary>Writes the learning curve of <paramref name="history"/>: train loss and, when given, dev <paramref name="devMetric"/>.</summary>
    public static void Write(string path, string title, RunHistory history, string? devMetric) =>
        AtomicFile.WriteAllText(path, Render(title, FromHistory(history, devMetric), "step", "train loss", devMetric is null ? null : "dev " + devMetric));

    /// <summary>The learning-curve series of <paramref name="history"/>: "train loss" (left) and "dev METRIC" (right, markers).</summary>
    public static IReadOnlyList<Series> FromHistory(RunHistory history, string? devMetric)
    {
        var series = new List<Series>
        {
            new("train loss", history.Points.Select(p => new ChartPoint(p.Step, p.TrainLoss)).ToList()),
        };
        if (devMetric != null)
            series.Add(new Series("dev " + devMetric,
                history.Points.Where(p => p.Dev != null && p.Dev.ContainsKey(devMetric))
                    .Select(p => new ChartPoint(p.Step, p.Dev![devMetric])).ToList(),
                ChartAxis.Right, Markers: true));
        return series;
    }

    /// <summary>The SVG text of a chart of <paramref name="series"/>.</summary>
    public static string Render(string title, IReadOnlyList<Series> series, string xLabel = "step", string? leftLabel = null, string? rightLabel = null)
    {
        ArgumentNullException.ThrowIfNull(series);
        var finite = series.Select(s => s.Points.Where(p => double.IsFinite(p.X) && double.IsFinite(p.Y)).ToList()).ToList();
        bool hasRight = series.Any(s => s.Axis == ChartAxis.Right);
        double right = hasRight ? 76 : 28;
        double plotLeft = LeftMargin, plotRight = Width - right, plotTop = Top, plotBottom = Height - Bottom;

        var xs = Axis.Of(finite.SelectMany(p => p).Select(p => p.X));
        var ys = Axis.Of(Enumerable.Range(0, series.Count).Where(i => series[i].Axis == ChartAxis.Left).SelectMany(i => finite[i]).Select(p => p.Y));
        var ry = Axis.Of(Enumerable.Range(0, series.Count).Where(i => series[i].Axis == ChartAxis.Right).SelectMany(i => finite[i]).Select(p => p.Y));
        double Px(double x) => plotLeft + (x - xs.Min) / (xs.Max - xs.Min) * (plotRight - plotLeft);
        double Py(Axis a, double y) => plotBottom - (y - a.Min) / (a.Max - a.Min) * (plotBottom - plotTop);

        var root = new XElement(Svg + "svg",
            new XAttribute("width", F(Width)), new XAttribute("height", F(Height)),
            new XAttribute("viewBox", $"0 0 {F(Width)} {F(Height)}"),
            new XAttribute("font-family", "sans-serif"), new XAttribute("font-size", "12"));
        root.Add(new XElement(Svg + "rect", new XAttribute("width", "100%"), new XAttribute("height", "100%"), new XAttribute("fill", "white")));
        root.Add(Text(Width / 2, 28, title, "middle", ("font-size", "16"), ("font-weight", "bold"), ("class", "title")));

        // Grid, ticks and tick labels.
        var axes = new XElement(Svg + "g", new XAttribute("class", "axes"), new XAttribute("stroke", "#000"));
        foreach (var t in xs.Ticks)
        {
            double x = Px(t);
            root.Add(Line(x, plotTop, x, plotBottom, "#e5e5e5"));
            axes.Add(Line(x, plotBottom, x, plotBottom + 5, "#000"));
            root.Add(Text(x, plotBottom + 18, xs.Label(t), "middle", ("class", "tick")));
        }
        foreach (var t in ys.Ticks)
        {
            double y = Py(ys, t);
            root.Add(Line(plotLeft, y, plotRight, y, "#e5e5e5"));
            axes.Add(Line(plotLeft - 5, y, plotLeft, y, "#000"));
            root.Add(Text(plotLeft - 8, y + 4, ys.Label(t), "end", ("class", "tick")));
        }
        axes.Add(Line(plotLeft, plotBottom, plotRight, plotBottom, "#000"));
        axes.Add(Line(plotLeft, plotTop, plotLeft, plotBottom, "#000"));
        if (hasRight)
        {
            axes.Add(Line(plotRight, plotTop, plotRight, plotBottom, "#000"));
            foreach (var t in ry.Ticks)
            {
                double y = Py(ry, t);
                axes.Add(Line(plotRight, y, plotRight + 5, y, "#000"));
                root.Add(Text(plotRight + 8, y + 4, ry.Label(t), "start", ("class", "tick")));
            }
        }
        root.Add(axes);
        root.Add(Text((plotLeft + plotRight) / 2, Height - 14, xLabel, "middle", ("class", "axis-label")));
        if (leftLabel != null)
            root.Add(Text(18, (plotTop + plotBottom) / 2, leftLabel, "middle", ("class", "axis-label"),
                ("transform", $"rotate(-90 18 {F((plotTop + plotBottom) / 2)})")));
        if (hasRight && rightLabel != null)
            root.Add(Text(Width - 14, (plotTop + plotBottom) / 2, rightLabel, "middle", ("class", "axis-label"),
                ("transform", $"rotate(90 {F(Width - 14)} {F((plotTop + plotBottom) / 2)})")));

        // The lines.
        for (int i = 0; i < series.Count; i++)
        {
            var s = series[i];
            var a = s.Axis == ChartAxis.Right ? ry : ys;
            string color = Palette[i % Palette.Length];
            var g = new XElement(Svg + "g", new XAttribute("class", "series-group"));
            g.Add(new XElement(Svg + "polyline",
                new XAttribute("class", "series"), new XAttribute("data-series", Clean(s.Name)),
                new XAttribute("points", string.Join(' ', finite[i].Select(p => $"{F(Px(p.X))},{F(Py(a, p.Y))}"))),
                new XAttribute("fill", "none"), new XAttribute("stroke", color), new XAttribute("stroke-width", "2"),
                new XAttribute("stroke-linejoin", "round")));
            if (s.Markers || finite[i].Count == 1)
                foreach (var p in finite[i])
                    g.Add(new XElement(Svg + "circle", new XAttribute("class", "marker"),
                        new XAttribute("cx", F(Px(p.X))), new XAttribute("cy", F(Py(a, p.Y))), new XAttribute("r", "3.5"),
                        new XAttribute("fill", color)));
            root.Add(g);
        }

        // The legend, top right inside the plot.
        if (series.Count > 0)
        {
            double rowHeight = 18, boxWidth = 34 + 7 * series.Max(s => Clean(s.Name).Length);
            boxWidth = Math.Min(boxWidth, plotRight - plotLeft - 8);
            double bx = plotRight - boxWidth - 8, by = plotTop + 8;
            var legend = new XElement(Svg + "g", new XAttribute("class", "legend"));
            legend.Add(new XElement(Svg + "rect", new XAttribute("x", F(bx)), new XAttribute("y", F(by)),
                new XAttribute("width", F(boxWidth)), new XAttribute("height", F(rowHeight * series.Count + 8)),
                new XAttribute("fill", "white"), new XAttribute("fill-opacity", "0.85"), new XAttribute("stroke", "#999")));
            for (int i = 0; i < series.Count; i++)
            {
                double y = by + 4 + rowHeight * i + rowHeight / 2;
                string color = Palette[i % Palette.Length];
                legend.Add(Line(bx + 6, y, bx + 26, y, color, "2"));
                legend.Add(Text(bx + 32, y + 4, series[i].Name, "start", ("class", "legend-label")));
            }
            root.Add(legend);
        }
        return new XDocument(root).ToString() + "\n";
    }

    private static XElement Line(double x1, double y1, double x2, double y2, string stroke, string width = "1") =>
        new(Svg + "line", new XAttribute("x1", F(x1)), new XAttribute("y1", F(y1)), new XAttribute("x2", F(x2)), new XAttribute("y2", F(y2)),
            new XAttribute("stroke", stroke), new XAttribute("stroke-width", width));

    private static XElement Text(double x, double y, string text, string anchor, params (string Name, string Value)[] attributes)
    {
        var e = new XElement(Svg + "text", new XAttribute("x", F(x)), new XAttribute("y", F(y)), new XAttribute("text-anchor", anchor), Clean(text));
        foreach (var (name, value) in attributes) e.Add(new XAttribute(name, value));
        return e;
    }

    /// <summary>Drops characters XML cannot hold (control characters, lone surrogates); XLinq escapes the rest.</summary>
    private static string Clean(string text)
    {
        var sb = new StringBuilder(text.Length);
        for (int i = 0; i < text.Length; i++)
        {
            char c = text[i];
            if (char.IsHighSurrogate(c) && i + 1 < text.Length && char.IsLowSurrogate(text[i + 1])) { sb.Append(c).Append(text[++i]); continue; }
            if (XmlConvert.IsXmlChar(c) && c != '\r' && c != '\n' && c != '\t') sb.Append(c);
            else if (c is '\r' or '\n' or '\t') sb.Append(' ');
        }
        return sb.ToString();
    }

    private static string F(double v) => Math.Round(v, 2).ToString("0.##", CultureInfo.InvariantCulture);

    /// <summary>An axis range widened to "nice" tick values (1, 2 or 5 times a power of ten).</summary>
    private sealed record Axis(double Min, double Max, double Step, IReadOnlyList<double> Ticks)
    {
        public static Axis Of(IEnumerable<double> values)
        {
            double lo = double.PositiveInfinity, hi = double.NegativeInfinity;
            foreach (var v in values) { lo = Math.Min(lo, v); hi = Math.Max(hi, v); }
            if (lo > hi) { lo = 0; hi = 1; }
            if (lo == hi)
            {
                double pad = Math.Abs(lo) > 0 ? Math.Abs(lo) * 0.1 : 0.5;
                lo -= pad;
                hi += pad;
            }
            double step = NiceStep((hi - lo) / 5);
            double min = Math.Floor(lo / step) * step, max = Math.Ceiling(hi / step) * step;
            if (max <= min) max = min + step;
            var ticks = new List<double>();
            for (int k = 0; ; k++)
            {
                double t = min + k * step;
                if (t > max + step * 1e-9 || k > 50) break;
                ticks.Add(Math.Abs(t) < step * 1e-9 ? 0 : t);
            }
            return new Axis(min, max, step, ticks);
        }

        private static double NiceStep(double raw)
        {
            double magnitude = Math.Pow(10, Math.Floor(Math.Log10(raw)));
            double f = raw / magnitude;
            return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * magnitude;
        }

        public string Label(double value)
        {
            int decimals = Math.Clamp((int)Math.Ceiling(-Math.Log10(Step) - 1e-9), 0, 8);
            return value.ToString("F" + decimals, CultureInfo.InvariantCulture);
        }
    }
}
