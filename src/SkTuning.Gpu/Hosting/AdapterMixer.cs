using SkTuning.Gpu.Data;
using SkTuning.Gpu.Engine;
using SkTuning.Gpu.Training;

namespace SkTuning.Gpu.Hosting;

/// <summary>One request to the mixer: the tuner whose adapter and head answer it, and its input, encoded.</summary>
internal readonly record struct MixedRequest(SkTuner Tuner, TextExample Example, EncodedExample Encoded);

/// <summary>
/// One micro-batcher for every run over a <see cref="SharedModel"/> loaded with <see cref="SkTunerOptions.MixAdapters"/>:
/// concurrent requests of different runs run as one engine batch. A batch's rows are grouped by what their runs inject
/// (same adapter kind, prompt rows or prefix, and length m: the per-example choice in the prepend and in attention needs
/// one m); each group runs one forward of this mixer's own frozen engine with its runs' prompts stacked [A, m, d] or
/// prefixes stacked [L, 2, A, m, kvDim], then each run's head reads its rows.
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

    /// <summary>Rows that may share a forward: the same adapter kind, prompt or prefix, and size.</summary>
    private static (AdapterKind, bool, int) Compatibility(SkTuner tuner)
    {
        var (kind, prompt, values) = tuner.MixableInjection;
        return (kind, prompt, values.Length);
    }

    /// <summary>One forward for the requests at <paramref name="rows"/>, then each run's head on its rows.</summary>
    private void RunGroup(IReadOnlyList<MixedRequest> requests, int[] rows, Prediction[] results)
    {
        var tuners = rows.Select(i => requests[i].Tuner).Distinct().ToList();
        var choice = rows.Select(i => tuners.IndexOf(requests[i].Tuner)).ToArray();
        var encoded = rows.Select(i => requests[i].Encoded).ToList();
        var batch = BatchBuilder.Build(encoded, Enumerable.Range(0, rows.Length).ToArray(), _model.Frozen.Tokenizer.PadId).Tokens;
        // One run: its prompt or prefix as is, shared by the batch (the tuner's own path). Several: stacked, chosen per row.
        bool prompt = tuners[0].MixableInjection.Prompt;
        var (injection, adapters) = tuners.Count == 1 ? (tuners[0].MixableInjection.Values, (AdapterChoice?)null)
            : (Stack(tuners, prompt ? 1 : 2 * _model.Frozen.Spec.Layers), new AdapterChoice(tuners.Count, choice));
        var hidden = prompt ? _engine.Forward(batch, prompt: injection, choice: adapters) : _engine.Forward(batch, prefix: injection, choice: adapters);
        GroupRan?.Invoke(rows.Length, tuners.Count);
        for (int a = 0; a < tuners.Count; a++)
        {
            var mine = Enumerable.Range(0, rows.Length).Where(r => choice[r] == a).ToArray();
            var answers = tuners[a].PredictRows(hidden, batch, mine.Select(r => requests[rows[r]].Example).ToList(), mine.Select(r => encoded[r]).ToList(), mine);
            for (int j = 0; j < mine.Length; j++) results[rows[mine[j]]] = answers[j];
        }
    }

    /// <summary>
    /// The runs' injections of <paramref name="blocks"/> blocks each, stacked block by block as the engine's choice reads
    /// them: prompts [m, d] (one block) into [A, m, d], prefixes [L, 2, m, kvDim] (2L blocks) into [L, 2, A, m, kvDim].
    /// </summary>
    private DeviceView<float> Stack(List<SkTuner> tuners, int blocks)
    {
        int A = tuners.Count, length = tuners[0].MixableInjection.Values.Length, block = length / blocks;
        var backend = _model.Backend;
        if (_stacked is null || _stacked.Length < A * length)
        {
            _stacked?.Dispose();
            _stacked = backend.Allocate(A * length);
        }
        for (int a = 0; a < A; a++)
        {
            var values = tuners[a].MixableInjection.Values;
            for (int s = 0; s < blocks; s++) backend.Copy(values.Slice(s * block, block), _stacked.Slice((s * A + a) * block, block));
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
