using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using SkTuning.Gpu.Data;
using SkTuning.Gpu.Engine;
using SkTuning.Gpu.Training;

namespace SkTuning.Gpu.Hosting;

/// <summary>
/// A run exported by <see cref="Export.OnnxExporter"/>, served by an ONNX Runtime session (CPU provider) instead of the
/// engine: the same head outputs for a token batch (prompt rows are inside the graph, so token outputs start at the
/// first token). Not thread-safe by itself: <see cref="SkTuner"/> runs one batch at a time.
/// </summary>
public sealed class OrtTunedModel : ITunedPredictor
{
    private readonly InferenceSession _session;
    private readonly bool _tokenTypes;
    private readonly string _output;

    private OrtTunedModel(InferenceSession session, TaskKind kind, int classes)
    {
        _session = session;
        Kind = kind;
        Classes = classes;
        _tokenTypes = session.InputMetadata.ContainsKey("token_type_ids");
        _output = kind == TaskKind.Regression ? "value" : "logits";
    }

    /// <summary>Opens <paramref name="path"/> and checks that it has the outputs of <paramref name="config"/>'s head.</summary>
    /// <param name="path">The exported .onnx file.</param>
    /// <param name="config">The run it was exported from.</param>
    /// <param name="threads">ONNX Runtime's intra-op threads (null: its default, one per core).</param>
    /// <exception cref="SkTuningException">A missing or unreadable file, or a graph whose outputs do not fit the run's head.</exception>
    public static OrtTunedModel Load(string path, AdapterConfig config, int? threads = null)
    {
        if (!File.Exists(path)) throw new SkTuningException($"{path}: no such exported model (write one with sktune export --format onnx)");
        using var options = new SessionOptions { GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL };
        if (threads is > 0) options.IntraOpNumThreads = threads.Value;
        InferenceSession session;
        try { session = new InferenceSession(path, options); }
        catch (OnnxRuntimeException e) { throw new SkTuningException($"{path}: ONNX Runtime cannot load it: {e.Message.Split('\n')[0]}"); }
        int classes = config.TaskKind == TaskKind.Regression ? 1 : config.Classes;
        var expected = config.TaskKind == TaskKind.Regression ? "value" : "logits";
        bool fits = session.OutputMetadata.TryGetValue(expected, out var meta)
            && (config.TaskKind == TaskKind.Regression || meta.Dimensions[^1] == classes);
        if (!fits)
        {
            session.Dispose();
            throw new SkTuningException($"{path}: not an export of this run ({config.TaskKind} with {classes} outputs needs output '{expected}')");
        }
        return new OrtTunedModel(session, config.TaskKind, classes);
    }

    /// <inheritdoc />
    public TaskKind Kind { get; }

    /// <inheritdoc />
    public int Classes { get; }

    /// <inheritdoc />
    public int SkipRows => 0;

    /// <inheritdoc />
    public float[] Predict(TokenBatch batch)
    {
        int[] dims = [batch.Batch, batch.SeqLen];
        static DenseTensor<long> Longs<T>(T[] values, int[] dims, Func<T, long> convert)
        {
            var data = new long[values.Length];
            for (int i = 0; i < data.Length; i++) data[i] = convert(values[i]);
            return new DenseTensor<long>(data, dims);
        }
        var inputs = new List<NamedOnnxValue>(3)
        {
            NamedOnnxValue.CreateFromTensor("input_ids", Longs(batch.Ids, dims, i => i)),
            NamedOnnxValue.CreateFromTensor("attention_mask", Longs(batch.Mask, dims, m => m != 0 ? 1 : 0)),
        };
        if (_tokenTypes) inputs.Add(NamedOnnxValue.CreateFromTensor("token_type_ids", Longs(batch.Types, dims, i => i)));
        using var results = _session.Run(inputs, [_output]);
        return results[0].AsTensor<float>() is DenseTensor<float> dense ? dense.Buffer.ToArray() : results[0].AsTensor<float>().ToArray();
    }

    /// <inheritdoc />
    public void Dispose() => _session.Dispose();
}
