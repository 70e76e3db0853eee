using System.Security.Cryptography;
using System.Text;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using SkTuning.Gpu.Tokenization;

namespace SkTuning.Gpu.ZeroShot;

/// <summary>
/// The zero-shot pass of SK-Tuning: the frozen model, run by ONNX Runtime, reads a semantic text and returns
/// its hidden states (last layer, or every layer's). Results are cached on disk keyed by model hash, text and
/// layers, since the same prompt text is encoded once per run and reused across runs.
/// </summary>
public sealed class ZeroShotEncoder : IDisposable
{
    private readonly string _onnxPath;
    private readonly Func<byte[]> _modelWithLayerOutputs;
    private readonly IReadOnlyList<string> _layerOutputs;
    private readonly int _maxPositions;
    private readonly string _modelHash;
    private readonly string? _cacheDirectory;
    private readonly Action<string>? _log;
    private readonly Lock _gate = new();
    private InferenceSession? _lastOnly, _allLayers;

    /// <summary>Creates an encoder over a model file.</summary>
    /// <param name="onnxPath">The frozen model.</param>
    /// <param name="tokenizer">Its tokenizer.</param>
    /// <param name="maxPositions">The model's position limit; longer texts are rejected.</param>
    /// <param name="modelHash">Identifies the model in the cache key.</param>
    /// <param name="layerOutputs">Names of the intermediate tensors holding each layer's output (embedding output first, then layers 1..L−1; the last layer is last_hidden_state).</param>
    /// <param name="modelWithLayerOutputs">Produces the model bytes with <paramref name="layerOutputs"/> added as graph outputs (called once, on first use).</param>
    /// <param name="cacheDirectory">Where results are cached; null disables the cache.</param>
    /// <param name="log">Receives one-line progress messages (execution provider, cache hits).</param>
    public ZeroShotEncoder(string onnxPath, TextTokenizer tokenizer, int maxPositions, string modelHash,
        IReadOnlyList<string> layerOutputs, Func<byte[]> modelWithLayerOutputs, string? cacheDirectory, Action<string>? log = null)
    {
        _onnxPath = onnxPath;
        Tokenizer = tokenizer;
        _maxPositions = maxPositions;
        _modelHash = modelHash;
        _layerOutputs = layerOutputs;
        _modelWithLayerOutputs = modelWithLayerOutputs;
        _cacheDirectory = cacheDirectory;
        _log = log;
    }

    /// <summary>The tokenizer texts go through.</summary>
    public TextTokenizer Tokenizer { get; }

    /// <summary>Encodes <paramref name="text"/> and returns its last-layer states, or every layer's.</summary>
    /// <exception cref="SkTuningException">Empty text, or more tokens than the model has positions.</exception>
    public HiddenStates Encode(string text, bool allLayers = false)
    {
        var encoded = Tokenizer.Encode(text);
        if (encoded.Length > _maxPositions)
            throw new SkTuningException($"text of {encoded.Length} tokens is longer than the model's {_maxPositions} positions");
        var cachePath = CachePath(text, allLayers);
        if (cachePath is not null && File.Exists(cachePath))
        {
            using var stream = File.OpenRead(cachePath);
            if (HiddenStates.TryRead(stream) is { } cached)
            {
                _log?.Invoke($"zero-shot: cache hit {Path.GetFileName(cachePath)}");
                return cached;
            }
        }
        var states = Run(encoded, allLayers);
        if (cachePath is not null) AtomicFile.Write(cachePath, states.Write);
        return states;
    }

    /// <summary>Runs ONNX Runtime on one already-tokenized sequence, bypassing the cache.</summary>
    public HiddenStates Run(EncodedText encoded, bool allLayers)
    {
        InferenceSession session;
        lock (_gate)
        {
            session = allLayers
                ? _allLayers ??= OrtSessions.Create(_onnxPath, _modelWithLayerOutputs(), _log)
                : _lastOnly ??= OrtSessions.Create(_onnxPath, null, _log);
        }
        int m = encoded.Length;
        var shape = new[] { 1, m };
        var inputs = new List<NamedOnnxValue>();
        foreach (var name in session.InputMetadata.Keys)
        {
            var tensor = new DenseTensor<long>(shape);
            for (int t = 0; t < m; t++)
                tensor[0, t] = name switch
                {
                    "input_ids" => encoded.Ids[t],
                    "attention_mask" => 1,
                    "token_type_ids" => encoded.TypeIds[t],
                    _ => throw new SkTuningException($"{_onnxPath}: unexpected model input '{name}'"),
                };
            inputs.Add(NamedOnnxValue.CreateFromTensor(name, tensor));
        }
        var outputs = allLayers ? [.. _layerOutputs, "last_hidden_state"] : new[] { "last_hidden_state" };
        using var results = session.Run(inputs, outputs);
        var layers = new List<float[]>(outputs.Length);
        int dim = 0;
        foreach (var result in results)
        {
            var t = result.AsTensor<float>();
            dim = t.Dimensions[^1];
            if (t.Length != (long)m * dim)
                throw new SkTuningException($"{_onnxPath}: output {result.Name} has {t.Length} values, expected {m}×d");
            layers.Add(t.ToArray());
        }
        return new HiddenStates(m, dim, layers);
    }

    private string? CachePath(string text, bool allLayers)
    {
        if (_cacheDirectory is null) return null;
        var key = SHA256.HashData(Encoding.UTF8.GetBytes($"{_modelHash}\n{(allLayers ? "all" : "last")}\n{text}"));
        return Path.Combine(_cacheDirectory, Convert.ToHexStringLower(key)[..32] + ".states");
    }

    /// <inheritdoc />
    public void Dispose()
    {
        _lastOnly?.Dispose();
        _allLayers?.Dispose();
    }
}
