using SkTuning.Gpu.Import;

namespace SkTuning.Gpu.Engine;

/// <summary>The frozen weights uploaded to a backend once (q, k, v fused into one [d, 3d] matrix for a single GEMM).</summary>
internal sealed class DeviceWeights : IDisposable
{
    private readonly List<IDisposable> _owned = [];

    private DeviceWeights() { }

    public DeviceArray<float> WordEmbeddings { get; private init; } = null!;
    public DeviceArray<float> PositionEmbeddings { get; private init; } = null!;
    public DeviceArray<float> TokenTypeEmbeddings { get; private init; } = null!;
    public DeviceArray<float> EmbeddingLnGamma { get; private init; } = null!;
    public DeviceArray<float> EmbeddingLnBeta { get; private init; } = null!;
    public DeviceLayer[] Layers { get; private init; } = [];

    public static DeviceWeights Upload(Backend backend, ModelSpec spec, ModelWeights w)
    {
        var owned = new List<IDisposable>();
        DeviceArray<float> U(float[] host)
        {
            var a = backend.Allocate(host.Length);
            backend.Upload(host, a.All);
            owned.Add(a);
            return a;
        }
        var result = new DeviceWeights
        {
            WordEmbeddings = U(w.Embeddings.Word),
            PositionEmbeddings = U(w.Embeddings.Position),
            TokenTypeEmbeddings = U(w.Embeddings.TokenType),
            EmbeddingLnGamma = U(w.Embeddings.NormGamma),
            EmbeddingLnBeta = U(w.Embeddings.NormBeta),
            Layers = w.Layers.Select(l => new DeviceLayer(U(l.FusedQkvWeight()), U(l.FusedQkvBias()), U(l.Wo), U(l.Bo),
                U(l.AttentionNormGamma), U(l.AttentionNormBeta), U(l.W1), U(l.B1), U(l.W2), U(l.B2),
                U(l.OutputNormGamma), U(l.OutputNormBeta))).ToArray(),
        };
        result._owned.AddRange(owned);
        return result;
    }

    public void Dispose()
    {
        foreach (var a in _owned) a.Dispose();
    }
}

/// <summary>One layer's weights on the device, stored [in, out].</summary>
internal sealed record DeviceLayer(
    DeviceArray<float> Wqkv, DeviceArray<float> Bqkv, DeviceArray<float> Wo, DeviceArray<float> Bo,
    DeviceArray<float> AttnLnGamma, DeviceArray<float> AttnLnBeta, DeviceArray<float> W1, DeviceArray<float> B1,
    DeviceArray<float> W2, DeviceArray<float> B2, DeviceArray<float> OutLnGamma, DeviceArray<float> OutLnBeta);
