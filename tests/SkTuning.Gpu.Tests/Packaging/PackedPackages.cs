using System.Diagnostics;
using SkTuning.Gpu.Data;

namespace SkTuning.Gpu.Tests.Packaging;

/// <summary>
/// Packs the repository once per test class, as <c>build.ps1 pack</c> does but for this machine's RID only, into a
/// fresh folder. Builds go to <c>.publish/pack-tests</c> (kept between runs, so a second run is incremental) and never
/// touch the repository's own bin/ and obj/. NuGet work uses a private packages folder, so that a rebuilt 0.1.0 is
/// never shadowed by one cached earlier, with the machine's global packages folder as a read-only fallback: restores
/// need no network.
/// </summary>
public sealed class PackedPackages : IDisposable
{
    public string Repo { get; } = DataLocator.FindRepoRoot(AppContext.BaseDirectory) ?? throw new InvalidOperationException("repository root not found");
    public string Root { get; } = Directory.CreateTempSubdirectory("sktune-pack-").FullName;
    public string Packages => Path.Combine(Root, "packages");
    public string Rid { get; } = $"{(OperatingSystem.IsWindows() ? "win" : OperatingSystem.IsMacOS() ? "osx" : "linux")}-" +
                                 System.Runtime.InteropServices.RuntimeInformation.OSArchitecture.ToString().ToLowerInvariant();
    public TimeSpan PackTime { get; }

    public PackedPackages()
    {
        var watch = Stopwatch.StartNew();
        var pack = Run(Repo, "dotnet", privateNuGet: false, "pack", "SkTuning.Gpu.sln", "-c", "Release", "-nodeReuse:false",
            "--artifacts-path", Path.Combine(Repo, ".publish", "pack-tests"), "-o", Packages, $"-p:ToolPackageRuntimeIdentifiers={Rid}");
        PackTime = watch.Elapsed;
        if (pack.ExitCode != 0) throw new InvalidOperationException($"dotnet pack failed:\n{pack.Output}");
        File.WriteAllText(Path.Combine(Root, "nuget.config"), $"""
            <?xml version="1.0" encoding="utf-8"?>
            <configuration>
              <packageSources><clear /><add key="packed" value="{Packages}" /></packageSources>
              <fallbackPackageFolders><add key="machine" value="{GlobalPackagesFolder}" /></fallbackPackageFolders>
            </configuration>
            """);
    }

    public string NuGetConfig => Path.Combine(Root, "nuget.config");

    private static string GlobalPackagesFolder =>
        Environment.GetEnvironmentVariable("NUGET_PACKAGES") is { Length: > 0 } nuget
            ? nuget
            : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".nuget", "packages");

    public sealed record Result(int ExitCode, string Output);

    /// <summary>Runs <paramref name="exe"/>, with NuGet's packages folder private to this fixture unless packing; stdout and stderr together.</summary>
    public Result Run(string workingDirectory, string exe, bool privateNuGet, params string[] args)
    {
        var start = new ProcessStartInfo(exe)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            WorkingDirectory = workingDirectory,
        };
        foreach (var a in args) start.ArgumentList.Add(a);
        // The test host runs under `dotnet test`: its MSBuild variables would steer the child's build.
        foreach (var name in start.Environment.Keys.Where(k => k.StartsWith("MSBuild", StringComparison.OrdinalIgnoreCase)).ToList())
            start.Environment.Remove(name);
        if (privateNuGet) start.Environment["NUGET_PACKAGES"] = Path.Combine(Root, "nuget");
        start.Environment["DOTNET_NOLOGO"] = "1";
        start.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        using var process = Process.Start(start)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(TimeSpan.FromMinutes(8))) { process.Kill(true); throw new TimeoutException($"{exe} {string.Join(' ', args)}"); }
        return new Result(process.ExitCode, stdout.Result + stderr.Result);
    }

    public Result Dotnet(string workingDirectory, params string[] args) => Run(workingDirectory, "dotnet", privateNuGet: true, args);

    public void Dispose() => Directory.Delete(Root, recursive: true);
}
