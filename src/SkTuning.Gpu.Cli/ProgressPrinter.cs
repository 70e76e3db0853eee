using System.Globalization;
using SkTuning.Gpu.Training;

namespace SkTuning.Gpu.Cli;

/// <summary>
/// Training progress on stderr: a bar redrawn in place on a terminal; plain lines (about every 5% of the run
/// and at each evaluation) when output is redirected to a file or pipe.
/// </summary>
internal sealed class ProgressPrinter
{
    private readonly bool _terminal = !Console.IsErrorRedirected;
    private double _smoothedLoss = double.NaN;
    private long _lastLine;
    private bool _drawn;

    public void Report(TrainProgress p)
    {
        _smoothedLoss = double.IsNaN(_smoothedLoss) ? p.Loss : 0.95 * _smoothedLoss + 0.05 * p.Loss;
        var ic = CultureInfo.InvariantCulture;
        string dev = p.Dev is null ? "" : "  dev " + string.Join(", ", p.Dev.Where(kv => kv.Key != "loss").Select(kv => string.Create(ic, $"{kv.Key} {kv.Value:F4}")));
        string stats = string.Create(ic, $"step {p.Step}/{p.TotalSteps}  loss {_smoothedLoss:F4}  {p.ExamplesPerSecond:F0} ex/s  ETA {p.Eta:hh\\:mm\\:ss}");
        if (_terminal)
        {
            int width = 24, filled = (int)(width * p.Step / Math.Max(1, p.TotalSteps));
            Console.Error.Write($"\r[{new string('#', filled)}{new string('.', width - filled)}] {stats}   ");
            _drawn = true;
            if (p.Dev is not null) { Console.Error.WriteLine(); Console.Error.WriteLine($"  step {p.Step}:{dev}"); }
            return;
        }
        long every = Math.Max(1, p.TotalSteps / 20);
        if (p.Dev is not null || p.Step - _lastLine >= every || p.Step == p.TotalSteps)
        {
            Console.Error.WriteLine($"[{DateTime.Now:HH:mm:ss}] {stats}{dev}");
            _lastLine = p.Step;
        }
    }

    public void Finish()
    {
        if (_drawn) Console.Error.WriteLine();
    }
}
