using System.CommandLine;
using System.Globalization;
using SkTuning.Gpu.Benchmarking;
using SkTuning.Gpu.Engine;
using SkTuning.Gpu.Kernels.Gpu;

namespace SkTuning.Gpu.Cli;

/// <summary><c>sktune device-check</c>: CUDA parity against the CPU backend and CUDA timings; a short table last.</summary>
internal static class DeviceCheckCommand
{
    public static Command Create()
    {
        var simulate = new Option<bool>("--simulate") { Description = "run tiny sizes on ILGPU's CPU simulator (no GPU needed)" };
        var iterations = new Option<int>("--iterations") { Description = "timed runs per timing (median)", DefaultValueFactory = _ => 10 };
        var command = new Command("device-check", "GPU parity and timing check (a MiniLM-shaped random model; prints a table last)") { simulate, iterations };
        command.SetAction(CliRunner.Guard(parse =>
        {
            bool sim = parse.GetValue(simulate);
            if (!sim && !GpuDevice.CudaAvailable()) throw new SkTuningException("device-check: no CUDA device found (use --simulate to run on ILGPU's CPU simulator)");
            using var gpu = new GpuBackend(sim ? GpuDevice.CreateCpuSimulator() : GpuDevice.CreateCuda());
            var lines = DeviceCheck.Run(gpu, tiny: sim, Math.Max(1, parse.GetValue(iterations)), CliRunner.Log);
            var ic = CultureInfo.InvariantCulture;
            Console.WriteLine($"{"check",-58} {"result",12}  {"limit",8}  note");
            foreach (var line in lines)
            {
                string value = line.Limit is null ? string.Create(ic, $"{line.Value * 1e3:F2} ms") : string.Create(ic, $"{line.Value:E2}");
                string limit = line.Limit is { } l ? string.Create(ic, $"{l:E0}") : "";
                string status = line.Limit is null ? "" : line.Passed ? "PASS " : "FAIL ";
                Console.WriteLine($"{line.Name,-58} {value,12}  {limit,8}  {status}{line.Note}");
            }
            int failed = lines.Count(l => !l.Passed);
            Console.WriteLine(failed == 0 ? "device check: all parity checks passed" : $"device check: {failed} parity check(s) FAILED");
            return failed == 0 ? 0 : 1;
        }));
        return command;
    }
}
