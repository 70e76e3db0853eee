using System.Security.Cryptography;
using System.Text;
using SkTuning.Gpu.Engine;
using SkTuning.Gpu.Import;
using SkTuning.Gpu.Tokenization;

namespace SkTuning.Gpu.ZeroShot;

/// <summary>
/// The zero-shot pass of SK-Tuning: the frozen model, run by ONNX Runtime, reads a semantic text and returns
/// its hidden states (last layer, or every layer's). Results are cached on disk keyed by model hash, text and
/// layers, since the same prompt text is encoded once per run and reused across runs.
/// </summary>
public sealed class ZeroShotEncoder : IDisposable
{
    private readonly ImportedModel _model;
    private readonly IReadOnlySet<string> _graphOutputs;
    private readonly Func<byte[]> _modelWithLayerOutputs;
    private readonly string _modelHash;
    private readonly string? _cacheDirectory;
    private readonly Action<string>? _log;
    private readonly Lock _gate = new();
    private OrtModelRunner? _lastOnly, _allLayers;

    /// <summary>Creates an encoder over an imported model.</summary>
    /// <param name="model">The imported model: file, input names, and <see cref="ImportedModel.HiddenStateNames"/>.</param>
    /// <param name="tokenizer">Its tokenizer.</param>
    /// <param name="graphOutputs">The graph's own output names.</param>
    /// <param name="modelHash">Identifies the model in the cache key.</param>
    /// <param name="modelWithLayerOutputs">Produces the model bytes with every hidden state added as a graph output (called once, on first use).</param>
    /// <param name="cacheDirectory">Where results are cached; null disables the cache.</param>
    /// <param name="log">Receives one-line progress messages (execution provider, cache hits).</param>
    public ZeroShotEncoder(ImportedModel model, TextTokenizer tokenizer, IEnumerable<string> graphOutputs, string modelHash,
        Func<byte[]> modelWithLayerOutputs, string? cacheDirectory, Action<string>? log = null)
    {
        _model = model;
        _graphOutputs = graphOutputs.ToHashSet(StringComparer.Ordinal);
        Tokenizer = tokenizer;
        _modelHash = modelHash;
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
        if (encoded.Length > _model.Spec.MaxTokens)
            throw new SkTuningException($"text of {encoded.Length} tokens is longer than the model's {_model.Spec.MaxTokens} positions");
        var cachePath = CachePath(text, allLayers);
        if (cachePath is not null && File.Exists(cachePath))
        {
            if (HiddenStates.TryRead(InputFile.ReadAllBytes(cachePath)) is { } cached)
            {
                _log?.Invoke($"zero-shot: cache hit {Path.GetFileName(cachePath)}");
                return cached;
            }
            // The cache is derived data: a damaged or tampered entry is recomputed (and rewritten), never trusted.
            _log?.Invoke($"zero-shot: cache entry {Path.GetFileName(cachePath)} failed its checksum; recomputing it");
        }
        var states = Run(encoded, allLayers);
        if (cachePath is not null) Store(cachePath, states);
        return states;
    }

    /// <summary>Writes a cache entry; a cache that cannot be written (read-only, full) only costs the reuse, so it is logged and skipped.</summary>
    private void Store(string cachePath, HiddenStates states)
    {
        try
        {
            AtomicFile.Write(cachePath, states.Write);
        }
        catch (SkTuningEnvironmentException e)
        {
            _log?.Invoke($"zero-shot: not cached: cannot write {Path.GetDirectoryName(cachePath)} ({e.InnerException?.Message.ReplaceLineEndings(" ")}); set SKTUNE_CACHE to a writable folder to keep results across runs");
        }
    }

    /// <summary>Runs ONNX Runtime on one already-tokenized sequence, bypassing the cache.</summary>
    public HiddenStates Run(EncodedText encoded, bool allLayers)
    {
        OrtModelRunner runner;
        lock (_gate)
        {
            // The final state is the graph's own output in most exports; a CausalLM export has it only as an intermediate value.
            var final = _model.HiddenStateNames[^1];
            runner = allLayers
                ? _allLayers ??= new OrtModelRunner(_model, _modelWithLayerOutputs(), _model.HiddenStateNames, _log)
                : _lastOnly ??= new OrtModelRunner(_model, IsGraphOutput(final) ? null : _modelWithLayerOutputs(), [final], _log);
        }
        int m = encoded.Length;
        var batch = new TokenBatch(1, m, encoded.Ids, encoded.TypeIds, Enumerable.Repeat(1f, m).ToArray());
        var layers = runner.Run(batch);
        return new HiddenStates(m, _model.Spec.Hidden, layers);
    }

    private bool IsGraphOutput(string name) => _graphOutputs.Contains(name);

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
