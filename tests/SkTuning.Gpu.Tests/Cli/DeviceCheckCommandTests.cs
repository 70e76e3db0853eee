using System.Diagnostics;
using SkTuning.Gpu.Benchmarking;
using SkTuning.Gpu.Data;
using SkTuning.Gpu.Engine;
using SkTuning.Gpu.Kernels.Gpu;
using SkTuning.Gpu.Tests.Data;
using SkTuning.Gpu.Tests.Support;

namespace SkTuning.Gpu.Tests.Cli;

/// <summary>
/// <c>benchmarks/device-check.sh</c> and <c>sktune device-check</c> on ILGPU's CPU simulator, end to end: every section
/// reports, each line reaches the log file, and a section that fails costs only itself.
/// </summary>
public class DeviceCheckCommandTests
{
    private static readonly string[] EverySection =
    [
        "backend", "kernel gemm NN", "kernel layernorm backward", "kernel attention GQA", "kernel adamw",
        "engine forward with prefix", "engine backward to the prompt", "SK-Prefix step: loss", "onnxruntime forward",
        "full SK-Prefix training step", "tier Tiled64 + bias", "tier Vectorized128 + bias", "tier SplitK + bias",
        "% of the H200 fp32 peak",
    ];

    private static CliProcess.Result RunScript(string outDir, params string[] args)
    {
        var root = DataLocator.FindRepoRoot(AppContext.BaseDirectory) ?? throw new InvalidOperationException("repository root not found");
        var start = new ProcessStartInfo("bash") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false, WorkingDirectory = root };
        start.ArgumentList.Add(Path.Combine(root, "benchmarks", "device-check.sh"));
        foreach (var a in args) start.ArgumentList.Add(a);
        start.Environment["SKTUNE"] = $"dotnet {Path.Combine(AppContext.BaseDirectory, "sktune.dll")}";
        start.Environment["OUT"] = outDir;
        start.Environment["ITERATIONS"] = "1";
        // The script's 170 s limit is sized for the GPU machine; the simulator under a loaded CI machine may need longer.
        start.Environment["DEVICE_CHECK_TIMEOUT"] = "600";
        using var process = Process.Start(start)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(TimeSpan.FromMinutes(11))) { process.Kill(true); throw new TimeoutException("device-check.sh"); }
        return new CliProcess.Result(process.ExitCode, stdout.Result, stderr.Result);
    }

    [Fact]
    public void TheScriptRunsEverySectionOnTheSimulatorAndLogsEachLine()
    {
        using var dir = new TempDir();
        var r = RunScript(dir.Path, "--simulate");
        Assert.True(r.ExitCode == 0, r.Stdout + r.Stderr);
        var log = File.ReadAllText(Path.Combine(dir.Path, "device-check.txt"));
        foreach (var what in EverySection)
        {
            Assert.Contains(what, r.Stdout);
            Assert.Contains(what, log);
        }
        Assert.DoesNotContain("FAIL", log);
        Assert.Contains("== device-check passed", log);
    }

    [Fact]
    public void AFailingSectionCostsOnlyItselfAndTheRunExitsOne()
    {
        using var dir = new TempDir();
        var r = RunScript(dir.Path, "--simulate", "--fail-section", "engine");
        Assert.Equal(1, r.ExitCode);
        var log = File.ReadAllText(Path.Combine(dir.Path, "device-check.txt"));
        Assert.Contains("section 'engine' failed", log);
        Assert.Contains("forced failure of section 'engine'", log);
        Assert.DoesNotContain("engine forward with prefix", log);
        foreach (var what in EverySection.Where(w => !w.StartsWith("engine", StringComparison.Ordinal))) Assert.Contains(what, log);
        Assert.Contains("1 check(s) FAILED", log);
        Assert.Contains("== device-check exit code 1", log);
        Assert.Contains("   at ", r.Stderr);   // SKTUNE_DEBUG=1: the stack trace of the failure reaches the log
    }

    [Fact]
    public void AnUnknownSectionIsAnInputError()
    {
        var r = CliProcess.Run("device-check", "--simulate", "--fail-section", "nonsense");
        CliErrorTests.AssertOneLineError(r, "--fail-section", "nonsense", "kernels");
    }

    [Fact]
    public void AKernelThatDisagreesOrThrowsFailsItsOwnLine()
    {
        using var a = new CpuBackend();
        using var b = new CpuBackend();
        var wrong = KernelParity.Compare(a, b, "kernel wrong", 1e-4, sc => [sc.B == a ? 1f : 1.1f]);
        Assert.False(wrong.Passed);
        Assert.Equal(0.1, wrong.Value, 1e-6);
        var poisoned = KernelParity.Compare(a, b, "kernel skips an element", 1e-4, sc => sc.B == a ? [1f] : sc.Down(sc.Poisoned(1)));
        Assert.False(poisoned.Passed);
        var thrown = KernelParity.Compare(a, b, "kernel throws", 1e-4, sc => sc.B == a ? [1f] : throw new InvalidOperationException("launch failed"));
        Assert.False(thrown.Passed);
        Assert.Contains("InvalidOperationException: launch failed", thrown.Note);
        Assert.True(KernelParity.Compare(a, b, "kernel agrees", 1e-4, sc => [2f]).Passed);
    }

    [Fact]
    public void TheDriverResolverTriesTheSonameAndTheProbeSaysWhyNoDeviceWasFound()
    {
        Assert.Equal(["cuda", "libcuda.so.1", "libcuda.so"], CudaDriverLibrary.Candidates("cuda"));
        Assert.Equal(["cublas"], CudaDriverLibrary.Candidates("cublas"));
        var (available, detail) = GpuDevice.ProbeCuda();
        Assert.False(string.IsNullOrWhiteSpace(detail));
        // Without a GPU (CI) the reason names what was tried: ILGPU asked for its driver and the resolver tried the soname.
        if (!available) Assert.Contains("libcuda.so.1", detail);
    }
}
