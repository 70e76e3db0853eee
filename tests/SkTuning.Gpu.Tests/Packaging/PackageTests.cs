using System.Diagnostics;
using System.IO.Compression;
using System.Xml.Linq;

namespace SkTuning.Gpu.Tests.Packaging;

/// <summary>
/// What `dotnet pack` makes, used as a user would: the sktune tool installed from the packed folder, and the library
/// referenced by a fresh console project. One pack for the class (<see cref="PackedPackages"/>).
/// </summary>
public sealed class PackageTests(PackedPackages packed) : IClassFixture<PackedPackages>
{
    [Fact]
    public void TheToolInstallsFromTheFolderAndPrintsTheUsage()
    {
        var tools = Path.Combine(packed.Root, "tools");
        var watch = Stopwatch.StartNew();
        var install = packed.Dotnet(packed.Root, "tool", "install", "--tool-path", tools, "sktune", "--configfile", packed.NuGetConfig);
        var installTime = watch.Elapsed;
        Assert.True(install.ExitCode == 0, install.Output);

        var help = packed.Run(packed.Root, Path.Combine(tools, OperatingSystem.IsWindows() ? "sktune.exe" : "sktune"), privateNuGet: true, "--help");
        Assert.True(help.ExitCode == 0, help.Output);
        Assert.Contains("Usage:", help.Output);
        Assert.Contains("sktune [command] [options]", help.Output);
        Assert.Contains("train", help.Output);
        Console.WriteLine($"pack {packed.PackTime.TotalSeconds:F0} s, tool install {installTime.TotalSeconds:F1} s");
    }

    [Fact]
    public void TheToolPackageCarriesOnlyItsRidsCpuNatives()
    {
        var pointer = Path.Combine(packed.Packages, "sktune.0.1.0.nupkg");
        using (var zip = ZipFile.OpenRead(pointer))
            Assert.Contains(zip.Entries, e => e.FullName == "tools/any/any/DotnetToolSettings.xml");

        using var rid = ZipFile.OpenRead(Path.Combine(packed.Packages, $"sktune.{packed.Rid}.0.1.0.nupkg"));
        var natives = rid.Entries.Select(e => e.Name).Where(n => n.Contains("onnxruntime") && !n.StartsWith("Microsoft.")).ToList();
        var expected = OperatingSystem.IsWindows() ? "onnxruntime.dll" : OperatingSystem.IsMacOS() ? "libonnxruntime.dylib" : "libonnxruntime.so";
        Assert.Contains(expected, natives);
        Assert.All(natives, n => Assert.DoesNotContain("cuda", n));   // the CPU build
        Assert.All(natives, n => Assert.EndsWith(Path.GetExtension(expected), n));   // no other platform's
        Assert.DoesNotContain(rid.Entries, e => e.Name.StartsWith("SentenceTransformers."));   // models come from NuGet at run time
    }

    [Fact]
    public void TheLibraryDependsOnTheManagedOnnxRuntimeOnly()
    {
        using var zip = ZipFile.OpenRead(Path.Combine(packed.Packages, "SkTuning.Gpu.0.1.0.nupkg"));
        using var nuspec = zip.GetEntry("SkTuning.Gpu.nuspec")!.Open();
        var doc = XDocument.Load(nuspec);
        var dependencies = doc.Descendants().Where(e => e.Name.LocalName == "dependency").Select(e => (string)e.Attribute("id")!).ToList();
        Assert.Contains("Microsoft.ML.OnnxRuntime.Managed", dependencies);
        Assert.Contains("SkTuning.Gpu.Kernels", dependencies);
        Assert.DoesNotContain(dependencies, d => d.StartsWith("Microsoft.ML.OnnxRuntime") && d != "Microsoft.ML.OnnxRuntime.Managed");
        Assert.Equal("MIT", doc.Descendants().Single(e => e.Name.LocalName == "license").Value);
        Assert.Contains(zip.Entries, e => e.FullName == "lib/net10.0/SkTuning.Gpu.xml");
        Assert.Contains(zip.Entries, e => e.FullName == "README.md");
        Assert.True(File.Exists(Path.Combine(packed.Packages, "SkTuning.Gpu.0.1.0.snupkg")));
    }

    [Fact]
    public void AConsoleProjectReferencingTheLibraryRestoresBuildsAndRuns()
    {
        var app = Directory.CreateDirectory(Path.Combine(packed.Root, "consumer")).FullName;
        File.WriteAllText(Path.Combine(app, "consumer.csproj"), """
            <Project Sdk="Microsoft.NET.Sdk">
              <PropertyGroup>
                <OutputType>Exe</OutputType>
                <TargetFramework>net10.0</TargetFramework>
                <ImplicitUsings>enable</ImplicitUsings>
              </PropertyGroup>
              <ItemGroup>
                <PackageReference Include="SkTuning.Gpu" Version="0.1.0" />
              </ItemGroup>
            </Project>
            """);
        File.WriteAllText(Path.Combine(app, "Program.cs"),
            """Console.WriteLine(string.Join(",", SkTuning.Gpu.Import.ModelCatalog.Names));""");
        File.Copy(packed.NuGetConfig, Path.Combine(app, "nuget.config"));

        var build = packed.Dotnet(app, "build", "-c", "Release", "-nodeReuse:false");
        Assert.True(build.ExitCode == 0, build.Output);
        var run = packed.Dotnet(app, Path.Combine(app, "bin", "Release", "net10.0", "consumer.dll"));
        Assert.True(run.ExitCode == 0, run.Output);
        Assert.Equal("minilm,arctic-xs", run.Output.Trim());
    }
}
