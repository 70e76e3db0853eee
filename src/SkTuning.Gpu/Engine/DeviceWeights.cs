using SkTuning.Gpu.Import;
using SkTuning.Gpu.Training;

namespace SkTuning.Gpu.Engine;

/// <summary>
/// The transformer's weights as views on a backend (q, k, v fused into one [d, 3d] matrix for a single GEMM): either
/// frozen arrays uploaded once and owned here, or named slices of a <see cref="TrainableParameters"/> buffer (full
/// fine-tuning: the values, and with the same layout the gradients).
/// </summary>
internal sealed class DeviceWeights : IDisposable
{
    private readonly List<IDisposable> _owned = [];

    private DeviceWeights() { }

    public DeviceView<float> WordEmbeddings { get; private init; }
    public DeviceView<float> PositionEmbeddings { get; private init; }
    public DeviceView<float> TokenTypeEmbeddings { get; private init; }
    public DeviceView<float> EmbeddingLnGamma { get; private init; }
    public DeviceView<float> EmbeddingLnBeta { get; private init; }
    public DeviceLayer[] Layers { get; private init; } = [];

    public static DeviceWeights Upload(Backend backend, ModelSpec spec, ModelWeights w)
    {
        var owned = new List<IDisposable>();
        DeviceView<float> U(float[] host)
        {
            var a = backend.Allocate(host.Length);
            backend.Upload(host, a.All);
            owned.Add(a);
            return a.All;
        }
        var result = new DeviceWeights
        {
            WordEmbeddings = U(w.Embeddings.Word),
            PositionEmbeddings = U(w.Embeddings.Position),
            TokenTypeEmbeddings = U(w.Embeddings.TokenType),
            EmbeddingLnGamma = U(w.Embeddings.NormGamma),
            EmbeddingLnBeta = U(w.Embeddings.NormBeta),
            Layers = w.Layers.Select(l => new DeviceLayer(U(l.FusedQkvWeight(spec.Hidden)), U(l.FusedQkvBias()), U(l.Wo), U(l.Bo),
                U(l.AttentionNormGamma), U(l.AttentionNormBeta), U(l.W1), U(l.B1), U(l.W2), U(l.B2),
                U(l.FfnNormGamma), U(l.FfnNormBeta))).ToArray(),
        };
        result._owned.AddRange(owned);
        return result;
    }

    /// <summary>
    /// Views of the engine's named tensors (<see cref="EngineParameters.WeightTensors"/>) in <paramref name="buffer"/>, one of
    /// <paramref name="p"/>'s buffers (values or gradients). Nothing is owned.
    /// </summary>
    /// <exception cref="SkTuningException">A tensor is missing or has another shape.</exception>
    public static DeviceWeights FromParameters(TrainableParameters p, DeviceArray<float> buffer, ModelSpec spec)
    {
        DeviceView<float> V(string name, int[] shape)
        {
            if (!p.Contains(name))
                throw new SkTuningException($"full fine-tuning: the trainable parameters have no tensor '{name}' (register EngineParameters.WeightTensors)");
            var info = p[name];
            if (!info.Shape.SequenceEqual(shape))
                throw new SkTuningException($"full fine-tuning: tensor '{name}' is [{string.Join(",", info.Shape)}], expected [{string.Join(",", shape)}]");
            return buffer.Slice(info.Offset, info.Length);
        }
        var t = EngineParameters.WeightTensors(spec).ToDictionary(x => x.Name, x => x.Shape);
        DeviceView<float> N(string name) => V(name, t[name]);
        return new DeviceWeights
        {
            WordEmbeddings = N(EngineParameters.WordEmbeddings),
            PositionEmbeddings = N(EngineParameters.PositionEmbeddings),
            TokenTypeEmbeddings = N(EngineParameters.TokenTypeEmbeddings),
            EmbeddingLnGamma = N(EngineParameters.EmbeddingNormGamma),
            EmbeddingLnBeta = N(EngineParameters.EmbeddingNormBeta),
            Layers = Enumerable.Range(0, spec.Layers).Select(l =>
            {
                var n = EngineParameters.LayerNames(l);
                return new DeviceLayer(N(n.QkvWeight), N(n.QkvBias), N(n.AttentionOutputWeight), N(n.AttentionOutputBias),
                    N(n.AttentionNormGamma), N(n.AttentionNormBeta), N(n.FfnUpWeight), N(n.FfnUpBias), N(n.FfnDownWeight), N(n.FfnDownBias),
                    N(n.FfnNormGamma), N(n.FfnNormBeta));
            }).ToArray(),
        };
    }

    public void Dispose()
    {
        foreach (var a in _owned) a.Dispose();
    }
}

/// <summary>One layer's weights on the device, stored [in, out].</summary>
internal sealed record DeviceLayer(
    DeviceView<float> Wqkv, DeviceView<float> Bqkv, DeviceView<float> Wo, DeviceView<float> Bo,
    DeviceView<float> AttnLnGamma, DeviceView<float> AttnLnBeta, DeviceView<float> W1, DeviceView<float> B1,
    DeviceView<float> W2, DeviceView<float> B2, DeviceView<float> OutLnGamma, DeviceView<float> OutLnBeta);
