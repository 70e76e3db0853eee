using System.IO.Compression;
using System.Net;
using System.Security.Cryptography;
using SkTuning.Gpu.Import;

namespace SkTuning.Gpu.Tests.Import;

/// <summary>The lookup order of a catalog model's package, over temporary folders and a fake feed: never the network.</summary>
public sealed class ModelPackageLocatorTests : IDisposable
{
    private readonly string _root = Directory.CreateTempSubdirectory("sktune-locator-").FullName;
    private string App => Path.Combine(_root, "app");
    private string Global => Path.Combine(_root, "nuget");
    private string Cache => Path.Combine(_root, "cache");

    private static readonly byte[] AssemblyBytes = [77, 90, 1, 2, 3, 4, 5];
    private static readonly byte[] Nupkg = MakeNupkg();
    private static readonly ModelPackage Package = new("Some.Model", "1.2.3", Convert.ToBase64String(SHA512.HashData(Nupkg)));

    public void Dispose() => Directory.Delete(_root, recursive: true);

    [Fact]
    public void TheApplicationsCopyComesFirst()
    {
        var app = Touch(App, "models", "Some.Model.dll");
        Touch(Global, "some.model", "1.2.3", "lib", "netstandard2.1", "Some.Model.dll");
        Touch(Cache, "some.model", "1.2.3", "Some.Model.dll");
        Assert.Equal(app, Locator(new FakeFeed()).Locate(Package));
    }

    [Fact]
    public void ThenTheNuGetGlobalPackagesFolder()
    {
        var global = Touch(Global, "some.model", "1.2.3", "lib", "netstandard2.1", "Some.Model.dll");
        Touch(Cache, "some.model", "1.2.3", "Some.Model.dll");
        Assert.Equal(global, Locator(new FakeFeed()).Locate(Package));
    }

    [Fact]
    public void ThenTheCacheWithoutDownloading()
    {
        var cached = Touch(Cache, "some.model", "1.2.3", "Some.Model.dll");
        Touch(Global, "some.model", "9.9.9", "lib", "netstandard2.1", "Some.Model.dll");   // another version does not count
        var feed = new FakeFeed();
        Assert.Equal(cached, Locator(feed).Locate(Package));
        Assert.Empty(feed.Requests);
    }

    [Fact]
    public void ElseDownloadsOnceFromTheFlatContainerIntoTheCache()
    {
        var feed = new FakeFeed { Body = Nupkg };
        var path = Locator(feed).Locate(Package);
        Assert.Equal(Path.Combine(Cache, "some.model", "1.2.3", "Some.Model.dll"), path);
        Assert.Equal(AssemblyBytes, File.ReadAllBytes(path));
        Assert.Equal(["https://feed.test/v3/some.model/1.2.3/some.model.1.2.3.nupkg"], feed.Requests);

        Assert.Equal(path, Locator(feed).Locate(Package));
        Assert.Single(feed.Requests);
    }

    [Fact]
    public void AHashMismatchIsRefusedAndNothingIsCached()
    {
        var tampered = (byte[])Nupkg.Clone();
        tampered[^1] ^= 1;
        var e = Assert.Throws<SkTuningException>(() => Locator(new FakeFeed { Body = tampered }).Locate(Package));
        Assert.Contains("SHA-512", e.Message);
        Assert.False(Directory.Exists(Cache));
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void OfflineOrMissingIsAOneLineEnvironmentError(bool offline)
    {
        var feed = offline ? new FakeFeed { Fail = new HttpRequestException("Name or service not known") } : new FakeFeed();
        var e = Assert.Throws<SkTuningEnvironmentException>(() => Locator(feed).Locate(Package));
        Assert.Contains("Some.Model 1.2.3", e.Message);
        Assert.Contains(offline ? "Name or service not known" : "HTTP 404", e.Message);
        Assert.Contains("SKTUNE_NUGET_FEED", e.Message);
        Assert.DoesNotContain('\n', e.Message);
    }

    private ModelPackageLocator Locator(FakeFeed feed) => new(App, Global, Cache, new Uri("https://feed.test/v3"), feed);

    private static string Touch(params string[] parts)
    {
        var path = Path.Combine(parts);
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        File.WriteAllBytes(path, [1]);
        return path;
    }

    private static byte[] MakeNupkg()
    {
        var buffer = new MemoryStream();
        using (var zip = new ZipArchive(buffer, ZipArchiveMode.Create))
        {
            using (var nuspec = new StreamWriter(zip.CreateEntry("Some.Model.nuspec").Open())) nuspec.Write("<package />");
            using var dll = zip.CreateEntry("lib/netstandard2.1/Some.Model.dll").Open();
            dll.Write(AssemblyBytes);
        }
        return buffer.ToArray();
    }

    /// <summary>Answers every request with <see cref="Body"/> (404 when null) or throws <see cref="Fail"/>.</summary>
    private sealed class FakeFeed : HttpMessageHandler
    {
        public byte[]? Body { get; init; }
        public Exception? Fail { get; init; }
        public List<string> Requests { get; } = [];

        protected override HttpResponseMessage Send(HttpRequestMessage request, CancellationToken cancellationToken)
        {
            Requests.Add(request.RequestUri!.AbsoluteUri);
            if (Fail is not null) throw Fail;
            return Body is null
                ? new HttpResponseMessage(HttpStatusCode.NotFound)
                : new HttpResponseMessage(HttpStatusCode.OK) { Content = new ByteArrayContent(Body) };
        }

        protected override Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken) =>
            Task.FromResult(Send(request, cancellationToken));
    }
}
