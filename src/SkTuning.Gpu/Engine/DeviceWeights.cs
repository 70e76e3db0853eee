using SkTuning.Gpu.Import;
using SkTuning.Gpu.Training;

namespace SkTuning.Gpu.Engine;

/// <summary>
/// The transformer's weights as views on a backend, by role and named as <see cref="EngineParameters.WeightTensors"/>
/// (q, k, v fused into one [d, d + 2·kvDim] matrix; SwiGLU's gate and up fused into [d, 2F]): either frozen arrays uploaded
/// once and owned here, or named slices of a <see cref="TrainableParameters"/> buffer (full fine-tuning: the values, and
/// with the same layout the gradients). A tensor the model does not have (a bias, RMSNorm's β, a position table) is an
/// empty view, which every kernel reads as "absent".
/// </summary>
internal sealed class DeviceWeights : IDisposable
{
    private readonly List<IDisposable> _owned = [];

    private DeviceWeights() { }

    public WeightMatrix WordEmbeddings { get; private init; }
    public DeviceView<float> PositionEmbeddings { get; private init; }
    public DeviceView<float> TokenTypeEmbeddings { get; private init; }
    public DeviceView<float> EmbeddingNormGamma { get; private init; }
    public DeviceView<float> EmbeddingNormBeta { get; private init; }
    public DeviceView<float> FinalNormGamma { get; private init; }
    public DeviceView<float> FinalNormBeta { get; private init; }
    public DeviceLayer[] Layers { get; private init; } = [];

    /// <summary>
    /// Uploads the frozen weights (owned: disposed with this object) one tensor at a time; the projection matrices and the
    /// word-embedding table in bf16 where the backend's <see cref="Backend.FrozenWeights"/> says so, everything else in fp32.
    /// With <paramref name="releaseHost"/> each part of <paramref name="w"/> is dropped once uploaded
    /// (<see cref="EngineParameters.PretrainedTensorsInOrder"/>), so the fp32 model and its bf16 copy never coexist whole.
    /// </summary>
    /// <exception cref="SkTuningException">A weight's size disagrees with the spec.</exception>
    public static DeviceWeights Upload(Backend backend, ModelSpec spec, ModelWeights w, bool releaseHost = false)
    {
        bool bf16 = backend.FrozenWeights == WeightPrecision.Bf16;
        var (matrices, embeddings) = Roles(spec);
        var shapes = EngineParameters.WeightTensors(spec).ToDictionary(x => x.Name, x => x.Shape);
        var fp32 = new Dictionary<string, DeviceArray<float>>();
        var half = new Dictionary<string, DeviceArray<ushort>>();
        var owned = new List<IDisposable>();
        long matrixBytes = 0, embeddingBytes = 0, otherBytes = 0;
        foreach (var (name, data) in EngineParameters.PretrainedTensorsInOrder(w, releaseHost))
        {
            long bytes;
            if (bf16 && (matrices.Contains(name) || name == EngineParameters.WordEmbeddings))
            {
                var a = name == EngineParameters.WordEmbeddings
                    ? backend.UploadBf16Rows(data)
                    : backend.UploadBf16(data, shapes[name][0], shapes[name][1]);
                (half[name], bytes) = (a, a.Length * 2L);
                owned.Add(a);
            }
            else
            {
                var a = matrices.Contains(name) ? backend.UploadMatrix(data, shapes[name][0], shapes[name][1]) : backend.UploadNew(data);
                (fp32[name], bytes) = (a, a.Length * 4L);
                owned.Add(a);
            }
            if (matrices.Contains(name)) matrixBytes += bytes;
            else if (embeddings.Contains(name)) embeddingBytes += bytes;
            else otherBytes += bytes;
        }
        var result = Build(spec, name => fp32[name].All, name => half.TryGetValue(name, out var a) ? a.All : default);
        result._owned.AddRange(owned);
        result.MatrixBytes = matrixBytes;
        result.EmbeddingBytes = embeddingBytes;
        result.Bytes = matrixBytes + embeddingBytes + otherBytes;
        return result;
    }

    /// <summary>
    /// The names of every layer's four projection matrices (stored in bf16 under <see cref="WeightPrecision.Bf16"/>, with the
    /// word table) and of the embedding tables.
    /// </summary>
    private static (HashSet<string> Matrices, HashSet<string> Embeddings) Roles(ModelSpec spec)
    {
        var matrices = new HashSet<string>(StringComparer.Ordinal);
        for (int l = 0; l < spec.Layers; l++)
        {
            var n = EngineParameters.LayerNames(l);
            matrices.UnionWith([n.QkvWeight, n.AttentionOutputWeight, n.FfnUpWeight, n.FfnDownWeight]);
        }
        return (matrices, [EngineParameters.WordEmbeddings, EngineParameters.PositionEmbeddings, EngineParameters.TokenTypeEmbeddings]);
    }

    /// <summary>Bytes of the layers' projection matrices as stored (fp32 or bf16).</summary>
    public long MatrixBytes { get; private set; }

    /// <summary>Bytes of the embedding tables as stored (the word table in bf16 under <see cref="WeightPrecision.Bf16"/>).</summary>
    public long EmbeddingBytes { get; private set; }

    /// <summary>Bytes of the frozen weights this object uploaded and owns (0 for views of trainable parameters).</summary>
    public long Bytes { get; private set; }

    /// <summary>
    /// Views of the engine's named tensors (<see cref="EngineParameters.WeightTensors"/>) in <paramref name="buffer"/>, one of
    /// <paramref name="p"/>'s buffers (values or gradients). Nothing is owned.
    /// </summary>
    /// <exception cref="SkTuningException">A tensor is missing or has another shape.</exception>
    public static DeviceWeights FromParameters(TrainableParameters p, DeviceArray<float> buffer, ModelSpec spec)
    {
        var shapes = EngineParameters.WeightTensors(spec).ToDictionary(x => x.Name, x => x.Shape);
        return Build(spec, name =>
        {
            if (!p.Contains(name))
                throw new SkTuningException($"full fine-tuning: the trainable parameters have no tensor '{name}' (register EngineParameters.WeightTensors)");
            var info = p[name];
            if (!info.Shape.SequenceEqual(shapes[name]))
                throw new SkTuningException($"full fine-tuning: tensor '{name}' is [{string.Join(",", info.Shape)}], expected [{string.Join(",", shapes[name])}]");
            return buffer.Slice(info.Offset, info.Length);
        }, _ => default);
    }

    /// <summary>
    /// Assembles the roles, called once per tensor the spec lists; absent ones stay empty. A projection matrix comes from
    /// <paramref name="bf16"/> when that gives a non-empty view, else from <paramref name="view"/>.
    /// </summary>
    private static DeviceWeights Build(ModelSpec spec, Func<string, DeviceView<float>> view, Func<string, DeviceView<ushort>> bf16)
    {
        var names = EngineParameters.WeightTensors(spec).Select(t => t.Name).ToHashSet(StringComparer.Ordinal);
        DeviceView<float> V(string name) => names.Contains(name) ? view(name) : default;
        WeightMatrix M(string name)
        {
            if (!names.Contains(name)) return default;
            var b = bf16(name);
            return b.IsEmpty ? view(name) : new WeightMatrix(default, b);
        }
        return new DeviceWeights
        {
            WordEmbeddings = M(EngineParameters.WordEmbeddings),
            PositionEmbeddings = V(EngineParameters.PositionEmbeddings),
            TokenTypeEmbeddings = V(EngineParameters.TokenTypeEmbeddings),
            EmbeddingNormGamma = V(EngineParameters.EmbeddingNormGamma),
            EmbeddingNormBeta = V(EngineParameters.EmbeddingNormBeta),
            Layers = Enumerable.Range(0, spec.Layers).Select(l =>
            {
                var n = EngineParameters.LayerNames(l);
                return new DeviceLayer(M(n.QkvWeight), V(n.QkvBias), M(n.AttentionOutputWeight), V(n.AttentionOutputBias),
                    V(n.AttentionNormGamma), V(n.AttentionNormBeta), M(n.FfnUpWeight), V(n.FfnUpBias), M(n.FfnDownWeight), V(n.FfnDownBias),
                    V(n.FfnNormGamma), V(n.FfnNormBeta));
            }).ToArray(),
            FinalNormGamma = V(EngineParameters.FinalNormGamma),
            FinalNormBeta = V(EngineParameters.FinalNormBeta),
        };
    }

    public void Dispose()
    {
        foreach (var a in _owned) a.Dispose();
    }
}

/// <summary>
/// One layer's weights on the device, stored [in, out], by role: the attention branch (fused QKV, output projection, its
/// norm) and the FFN branch (input projection — fused gate | up with SwiGLU —, output projection, its norm). The four
/// projection matrices may be stored in bf16 (frozen, <see cref="WeightPrecision.Bf16"/>); in a gradient layout they are fp32.
/// </summary>
internal sealed record DeviceLayer(
    WeightMatrix Wqkv, DeviceView<float> Bqkv, WeightMatrix Wo, DeviceView<float> Bo,
    DeviceView<float> AttnNormGamma, DeviceView<float> AttnNormBeta, WeightMatrix W1, DeviceView<float> B1,
    WeightMatrix W2, DeviceView<float> B2, DeviceView<float> FfnNormGamma, DeviceView<float> FfnNormBeta);
