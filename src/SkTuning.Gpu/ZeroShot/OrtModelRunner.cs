using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using SkTuning.Gpu.Engine;
using SkTuning.Gpu.Import;

namespace SkTuning.Gpu.ZeroShot;

/// <summary>
/// Runs an imported model's ONNX graph in ONNX Runtime on a padded batch, whatever inputs its exporter gave it: token
/// ids, attention mask, token types, position ids (causal models: the same numbering as the engine, cumsum(mask) − 1, so
/// left padding reads like no padding) and the empty caches of "with past" exports. Returns the requested values
/// [B·T·d] each.
/// </summary>
public sealed class OrtModelRunner : IDisposable
{
    private readonly ImportedModel _model;
    private readonly InferenceSession _session;
    private readonly IReadOnlyList<string> _outputs;

    /// <summary>Opens a session over the model.</summary>
    /// <param name="model">The imported model (input names, sizes).</param>
    /// <param name="modelBytes">The graph with <paramref name="outputs"/> made outputs, or null to run the file as it is.</param>
    /// <param name="outputs">Value names to return, in order.</param>
    /// <param name="log">One-line messages (execution provider).</param>
    public OrtModelRunner(ImportedModel model, byte[]? modelBytes, IReadOnlyList<string> outputs, Action<string>? log = null)
    {
        _model = model;
        _outputs = outputs;
        _session = OrtSessions.Create(model.SourcePath, modelBytes, log);
    }

    /// <summary>Whether position ids are an input (else the graph numbers positions 0..T−1 itself, as in a right-padded batch).</summary>
    public bool TakesPositions => _model.PositionIdsName is not null;

    /// <summary>Runs the batch; one [B·T·d] array per requested output.</summary>
    /// <exception cref="SkTuningException">The graph has an input this runner cannot feed, or an output of the wrong size.</exception>
    public IReadOnlyList<float[]> Run(TokenBatch batch)
    {
        int B = batch.Batch, T = batch.SeqLen;
        var shape = new[] { B, T };
        var inputs = new List<NamedOnnxValue>();
        var past = _model.PastInputNames.ToHashSet(StringComparer.Ordinal);
        foreach (var (name, meta) in _session.InputMetadata)
        {
            if (past.Contains(name))
            {
                var dims = new[] { B, _model.Spec.KvHeads, 0, _model.Spec.HeadSize };
                inputs.Add(NamedOnnxValue.CreateFromTensor(name, new DenseTensor<float>(dims)));
                continue;
            }
            long[] values;
            if (name == _model.InputIdsName) values = Array.ConvertAll(batch.Ids, v => (long)v);
            else if (name == _model.AttentionMaskName) values = Array.ConvertAll(batch.Mask, v => (long)v);
            else if (name == _model.TokenTypeIdsName) values = Array.ConvertAll(batch.Types, v => (long)v);
            else if (name == _model.PositionIdsName) values = Array.ConvertAll(TransformerEngine.TokenPositions(batch, _model.Spec), v => (long)v);
            else throw new SkTuningException($"{_model.SourcePath}: cannot feed model input '{name}'");
            if (meta.ElementType == typeof(int))
                inputs.Add(NamedOnnxValue.CreateFromTensor(name, new DenseTensor<int>(Array.ConvertAll(values, v => (int)v), shape)));
            else
                inputs.Add(NamedOnnxValue.CreateFromTensor(name, new DenseTensor<long>(values, shape)));
        }
        using var results = _session.Run(inputs, _outputs);
        var arrays = new List<float[]>(_outputs.Count);
        foreach (var result in results)
        {
            var t = result.AsTensor<float>();
            if (t.Length != (long)B * T * _model.Spec.Hidden)
                throw new SkTuningException($"{_model.SourcePath}: value '{result.Name}' has {t.Length} values, expected B·T·d = {B}·{T}·{_model.Spec.Hidden}");
            arrays.Add(t.ToArray());
        }
        return arrays;
    }

    /// <inheritdoc />
    public void Dispose() => _session.Dispose();
}
