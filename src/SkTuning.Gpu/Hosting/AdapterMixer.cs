using SkTuning.Gpu.Data;
using SkTuning.Gpu.Engine;
using SkTuning.Gpu.Training;

namespace SkTuning.Gpu.Hosting;

/// <summary>One request to the mixer: the tuner whose adapter and head answer it, and its input, encoded.</summary>
internal readonly record struct MixedRequest(SkTuner Tuner, TextExample Example, EncodedExample Encoded);

/// <summary>
/// One micro-batcher for every run over a <see cref="SharedModel"/> loaded with <see cref="SkTunerOptions.MixAdapters"/>:
/// concurrent requests of different runs run as one engine batch. A batch's rows are grouped by their prefix (same adapter
/// kind and length m: the attention kernel's per-example prefix choice needs one m); each group runs one forward of this
/// mixer's own frozen engine with its runs' prefixes stacked [L, 2, A, m, kvDim], then each run's head reads its rows.
/// A row's answer is the one its tuner gives alone, bit for bit: no row's arithmetic depends on the others in its batch.
/// </summary>
internal sealed class AdapterMixer : IDisposable
{
    private readonly SharedModel _model;
    private readonly TransformerEngine _engine;
    private readonly MicroBatcher<MixedRequest, Prediction> _batcher;
    private DeviceArray<float>? _stacked;

    /// <summary>Starts the mixer's worker over <paramref name="model"/>'s weights.</summary>
    public AdapterMixer(SharedModel model, int maxBatchSize, TimeSpan window)
    {
        _model = model;
        _engine = new TransformerEngine(model.Weights);
        _batcher = new MicroBatcher<MixedRequest, Prediction>(RunBatch, maxBatchSize, window);
    }

    /// <summary>Test and benchmark hook: called after each group's forward with its rows and its distinct runs.</summary>
    internal Action<int, int>? GroupRan { get; set; }

    /// <summary>Runs the request alone on the calling thread when the mixer is idle, else batched with the others.</summary>
    public Prediction Predict(MixedRequest request) =>
        _batcher.TryRunAlone(request, out var prediction) ? prediction : _batcher.Submit(request, CancellationToken.None).GetAwaiter().GetResult();

    /// <summary>Queues the request for the next batch.</summary>
    public Task<Prediction> PredictAsync(MixedRequest request, CancellationToken cancel) => _batcher.Submit(request, cancel);

    /// <summary>Runs one batch (the batcher's worker; tests call it directly to fix a batch's make-up).</summary>
    internal IReadOnlyList<Prediction> RunBatch(IReadOnlyList<MixedRequest> requests)
    {
        var results = new Prediction[requests.Count];
        foreach (var group in Enumerable.Range(0, requests.Count).GroupBy(i => Compatibility(requests[i].Tuner)))
            RunGroup(requests, group.ToArray(), results);
        return results;
    }

    /// <summary>Rows that may share a forward: the same adapter kind and prefix size.</summary>
    private static (AdapterKind, int) Compatibility(SkTuner tuner)
    {
        var (kind, prefix) = tuner.MixablePrefix;
        return (kind, prefix.Length);
    }

    /// <summary>One forward for the requests at <paramref name="rows"/>, then each run's head on its rows.</summary>
    private void RunGroup(IReadOnlyList<MixedRequest> requests, int[] rows, Prediction[] results)
    {
        var tuners = rows.Select(i => requests[i].Tuner).Distinct().ToList();
        var choice = rows.Select(i => tuners.IndexOf(requests[i].Tuner)).ToArray();
        var encoded = rows.Select(i => requests[i].Encoded).ToList();
        var batch = BatchBuilder.Build(encoded, Enumerable.Range(0, rows.Length).ToArray(), _model.Frozen.Tokenizer.PadId).Tokens;
        // One run: its prefix as is, shared by the batch (the tuner's own path). Several: stacked, chosen per row.
        var hidden = tuners.Count == 1
            ? _engine.Forward(batch, prefix: tuners[0].MixablePrefix.Prefix)
            : _engine.Forward(batch, prefix: Stack(tuners), prefixChoice: new PrefixChoice(tuners.Count, choice));
        GroupRan?.Invoke(rows.Length, tuners.Count);
        for (int a = 0; a < tuners.Count; a++)
        {
            var mine = Enumerable.Range(0, rows.Length).Where(r => choice[r] == a).ToArray();
            var answers = tuners[a].PredictRows(hidden, batch, mine.Select(r => requests[rows[r]].Example).ToList(), mine.Select(r => encoded[r]).ToList(), mine);
            for (int j = 0; j < mine.Length; j++) results[rows[mine[j]]] = answers[j];
        }
    }

    /// <summary>The runs' prefixes [L, 2, m, kvDim] each, stacked [L, 2, A, m, kvDim] as the engine's prefix choice reads them.</summary>
    private DeviceView<float> Stack(List<SkTuner> tuners)
    {
        int A = tuners.Count, length = tuners[0].MixablePrefix.Prefix.Length, blocks = 2 * _model.Frozen.Spec.Layers, block = length / blocks;
        var backend = _model.Backend;
        if (_stacked is null || _stacked.Length < A * length)
        {
            _stacked?.Dispose();
            _stacked = backend.Allocate(A * length);
        }
        for (int a = 0; a < A; a++)
        {
            var prefix = tuners[a].MixablePrefix.Prefix;
            for (int s = 0; s < blocks; s++) backend.Copy(prefix.Slice(s * block, block), _stacked.Slice((s * A + a) * block, block));
        }
        return _stacked.Slice(0, A * length);
    }

    /// <summary>Finishes the queued requests, then frees the engine.</summary>
    public void Dispose()
    {
        _batcher.Dispose();
        _stacked?.Dispose();
        _engine.Dispose();
    }
}
