using System.CommandLine;
using SkTuning.Gpu.Benchmarking;
using SkTuning.Gpu.Engine;
using SkTuning.Gpu.Kernels.Gpu;

namespace SkTuning.Gpu.Cli;

/// <summary>
/// <c>sktune device-check</c>: CUDA parity against the CPU backend (per kernel, engine, training step) and CUDA timings.
/// Every line is printed and flushed as it is produced (and appended to <c>--out</c>), so a run cut short keeps what it
/// measured; exit 1 when any check failed.
/// </summary>
internal static class DeviceCheckCommand
{
    public static Command Create()
    {
        var simulate = new Option<bool>("--simulate") { Description = "run tiny sizes on ILGPU's CPU simulator (no GPU needed)" };
        var iterations = new Option<int>("--iterations") { Description = "timed runs per timing (median)", DefaultValueFactory = _ => 10 };
        var output = new Option<string?>("--out") { Description = "also append every line to this file (flushed per line)" };
        var failSection = new Option<string?>("--fail-section")
        {
            Description = $"make one section throw (to see that the others still report): {string.Join(", ", DeviceCheck.Sections)}",
        };
        var command = new Command("device-check", "GPU parity (per kernel, engine, training step) and timing check on a MiniLM-shaped random model")
        {
            simulate, iterations, output, failSection,
        };
        command.SetAction(CliRunner.Guard(parse =>
        {
            bool sim = parse.GetValue(simulate);
            var fail = parse.GetValue(failSection);
            if (fail is not null && !DeviceCheck.Sections.Contains(fail))
                throw new SkTuningException($"--fail-section: '{fail}' is not a section ({string.Join(", ", DeviceCheck.Sections)})");
            using var file = parse.GetValue(output) is { } path ? OpenLog(path) : null;
            void Print(string text)
            {
                Console.Out.WriteLine(text);
                Console.Out.Flush();
                file?.WriteLine(text);
                file?.Flush();
            }
            if (!sim)
            {
                var (available, detail) = GpuDevice.ProbeCuda();
                Print(DeviceCheckLine.Info("CUDA probe", detail).Format());
                if (!available) throw new SkTuningException($"device-check: no CUDA device found — {detail} (use --simulate to run on ILGPU's CPU simulator)");
            }
            using var gpu = new GpuBackend(sim ? GpuDevice.CreateCpuSimulator() : GpuDevice.CreateCuda());
            Print(DeviceCheckLine.Header);
            int failed = DeviceCheck.Run(gpu, new DeviceCheckOptions(sim, Math.Max(1, parse.GetValue(iterations)), fail), line => Print(line.Format()), CliRunner.Log);
            Print(failed == 0 ? "device check: all parity checks passed" : $"device check: {failed} check(s) FAILED");
            return failed == 0 ? 0 : 1;
        }));
        return command;
    }

    private static StreamWriter OpenLog(string path)
    {
        try
        {
            return new StreamWriter(path, append: true);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new SkTuningException($"--out {path}: cannot write ({e.Message})");
        }
    }
}
