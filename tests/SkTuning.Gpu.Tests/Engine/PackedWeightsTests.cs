using SkTuning.Gpu.Engine;
using SkTuning.Gpu.Tests.Support;

namespace SkTuning.Gpu.Tests.Engine;

/// <summary>The CPU backend's frozen fp32 matrices, packed once at upload (<see cref="Backend.UploadMatrix"/>).</summary>
public class PackedWeightsTests
{
    /// <summary>
    /// The forward (NN) and input-gradient (NT) GEMMs on a packed upload equal, bit for bit, the same GEMMs on the weight
    /// uploaded row-major: packing once changes when B is packed, not the arithmetic. Fresh random inputs, outputs poisoned.
    /// </summary>
    [Theory]
    [InlineData(12, 384, 1152)]   // one sentence through MiniLM's QKV projection
    [InlineData(5, 37, 101)]      // a partial last panel
    public void PackedUploadGivesTheRowMajorUploadsResults(int m, int inWidth, int outWidth)
    {
        var rng = new Random(m + inWidth + outWidth);
        var host = TestData.Random(rng, inWidth * outWidth);
        using var backend = new CpuBackend();
        using var packed = backend.UploadMatrix(host, inWidth, outWidth);
        using var plain = backend.UploadNew(host);
        using var x = backend.UploadNew(TestData.Random(rng, m * inWidth));
        using var dy = backend.UploadNew(TestData.Random(rng, m * outWidth));
        using var bias = backend.UploadNew(TestData.Random(rng, outWidth));
        using var y1 = backend.UploadNew(TestData.Poisoned(m * outWidth));
        using var y2 = backend.UploadNew(TestData.Poisoned(m * outWidth));
        using var dx1 = backend.UploadNew(TestData.Random(rng, m * inWidth));
        using var dx2 = backend.UploadNew(backend.ToHost(dx1.All));

        backend.Gemm(GemmOp.NN, m, outWidth, inWidth, x.All, (WeightMatrix)packed.All, y1.All, bias.All);
        backend.Gemm(GemmOp.NN, m, outWidth, inWidth, x.All, (WeightMatrix)plain.All, y2.All, bias.All);
        backend.Gemm(GemmOp.NT, m, inWidth, outWidth, dy.All, (WeightMatrix)packed.All, dx1.All, accumulate: true);
        backend.Gemm(GemmOp.NT, m, inWidth, outWidth, dy.All, (WeightMatrix)plain.All, dx2.All, accumulate: true);

        var y = backend.ToHost(y1.All);
        Assert.All(y, v => Assert.True(float.IsFinite(v)));
        Assert.Equal(backend.ToHost(y2.All), y);
        Assert.Equal(backend.ToHost(dx2.All), backend.ToHost(dx1.All));
    }

    [Fact]
    public void WeightGradientOfAPackedMatrixIsRefused()
    {
        using var backend = new CpuBackend();
        using var w = backend.UploadMatrix(TestData.Random(new Random(1), 6), 3, 2);
        using var a = backend.Allocate(6);
        using var c = backend.Allocate(4);
        var ex = Assert.Throws<ArgumentException>(() => backend.Gemm(GemmOp.TN, 2, 2, 3, a.All, (WeightMatrix)w.All, c.All));
        Assert.Contains("frozen weights take no gradient", ex.Message);
    }
}
