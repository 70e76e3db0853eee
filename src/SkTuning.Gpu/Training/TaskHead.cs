using SkTuning.Gpu.Data;
using SkTuning.Gpu.Engine;

namespace SkTuning.Gpu.Training;

/// <summary>How a sequence is reduced to one vector for sequence-level heads.</summary>
public enum Pooling
{
    /// <summary>Mean of the final states of the real tokens (prompt rows and padding excluded).</summary>
    Mean,
    /// <summary>The first real token's final state ([CLS]).</summary>
    Cls,
    /// <summary>
    /// The last real token's final state (causal decoders, as transformers' <c>*ForSequenceClassification</c>: under a
    /// causal mask only the last token has read the whole input); right or left padding alike.
    /// </summary>
    Last,
}

/// <summary>The targets of one batch for the head: class ids [B], values [B], or token labels [B·T] (−100 = ignore).</summary>
public sealed record HeadTargets(int[]? Classes = null, float[]? Values = null, int[]? TokenLabels = null);

/// <summary>
/// The trainable head: dropout then Linear(d → C) on the pooled sequence (classification, cross-entropy),
/// Linear(d → 1) on it (regression, MSE), or Linear(d → C) on every real token (token classification,
/// prompt rows excluded). Its forward and backward are fused into one call per step.
/// </summary>
public sealed class TaskHead : IDisposable
{
    private readonly Backend _backend;
    private readonly List<IDisposable> _buffers = [];
    private DeviceArray<float> _dropped = null!, _dDropped = null!, _logits = null!, _dLogits = null!, _targets = null!;
    private DeviceArray<int> _labels = null!, _mask = null!;
    private int _capacityRows = -1, _capacityTokens = -1;

    /// <summary>Creates a head.</summary>
    public TaskHead(Backend backend, TaskKind kind, Pooling pooling, int dim, int classes, float dropout = 0.1f)
    {
        if (kind != TaskKind.Regression && classes < 2) throw new ArgumentException($"a classification head needs at least 2 classes, got {classes}");
        _backend = backend;
        Kind = kind;
        Pooling = pooling;
        Dim = dim;
        Classes = kind == TaskKind.Regression ? 1 : classes;
        Dropout = dropout;
    }

    /// <summary>The task kind.</summary>
    public TaskKind Kind { get; }

    /// <summary>Sequence pooling for sequence-level tasks.</summary>
    public Pooling Pooling { get; }

    /// <summary>d.</summary>
    public int Dim { get; }

    /// <summary>Outputs per row: classes, or 1 for regression.</summary>
    public int Classes { get; }

    /// <summary>Dropout before the linear layer in training.</summary>
    public float Dropout { get; }

    /// <summary>The trainable tensors.</summary>
    public IEnumerable<(string Name, int[] Shape)> Tensors()
    {
        yield return ("head.weight", [Dim, Classes]);
        yield return ("head.bias", [Classes]);
    }

    /// <summary>torch Linear default init; bias zero.</summary>
    public void Initialize(TrainableParameters p, Random rng) =>
        p.Set(p["head.weight"], Init.Uniform(rng, Dim * Classes, 1 / MathF.Sqrt(Dim)));

    /// <summary>
    /// Loss of the batch, written to <paramref name="loss"/>[0] on the device, and, when <paramref name="dHidden"/> is given, the
    /// backward: head gradients accumulate into <paramref name="p"/>, d(loss)/d(hidden) [B, S, d] accumulates into <paramref name="dHidden"/>.
    /// The host does not wait for the loss: whoever logs it reads it later (and checks that it is finite).
    /// </summary>
    /// <param name="p">Trainable parameters.</param>
    /// <param name="hidden">Final hidden states [B, S, d], S = skip + T.</param>
    /// <param name="batch">The tokens (for the mask).</param>
    /// <param name="skip">Prompt rows at the start of each sequence.</param>
    /// <param name="targets">Labels.</param>
    /// <param name="training">Apply dropout.</param>
    /// <param name="seed">Dropout seed.</param>
    /// <param name="dHidden">Gradient output, or empty for loss only.</param>
    /// <param name="loss">One device value the mean loss is written to.</param>
    public void Loss(TrainableParameters p, DeviceView<float> hidden, TokenBatch batch, int skip, HeadTargets targets, bool training, ulong seed,
        DeviceView<float> dHidden, DeviceView<float> loss)
    {
        int rows = Forward(p, hidden, batch, skip, training, seed);
        bool backward = !dHidden.IsEmpty;
        var logits = _logits.Slice(0, rows * Classes);
        var dLogits = backward ? _dLogits.Slice(0, rows * Classes) : default;
        if (backward) _backend.Zero(dLogits);
        if (Kind == TaskKind.Regression)
        {
            var values = targets.Values ?? throw new ArgumentException("regression targets missing");
            _backend.Upload(values, _targets.Slice(0, rows));
            _backend.MeanSquaredError(logits, _targets.Slice(0, rows), dLogits, loss);
        }
        else
        {
            var labels = Kind == TaskKind.TokenClassification ? TokenLabels(batch, skip, targets) : targets.Classes ?? throw new ArgumentException("class targets missing");
            _backend.Upload(labels, _labels.Slice(0, rows));
            int valid = labels.Count(l => l != -100);
            _backend.SoftmaxCrossEntropy(logits, _labels.Slice(0, rows), valid, dLogits, rows, Classes, loss);
        }
        if (backward) Backward(p, batch, skip, rows, dLogits, dHidden);
    }

    /// <summary>Logits [rows, C] (rows = B, or B·S for token classification) on the host, without dropout.</summary>
    public float[] Predict(TrainableParameters p, DeviceView<float> hidden, TokenBatch batch, int skip)
    {
        int rows = Forward(p, hidden, batch, skip, training: false, seed: 0);
        return _backend.ToHost(_logits.Slice(0, rows * Classes));
    }

    private int Forward(TrainableParameters p, DeviceView<float> hidden, TokenBatch batch, int skip, bool training, ulong seed)
    {
        int B = batch.Batch, T = batch.SeqLen, S = skip + T, d = Dim;
        if (hidden.Length != B * S * d) throw new ArgumentException($"hidden has {hidden.Length} values, expected B·S·d = {B}·{S}·{d}");
        Ensure(B, B * S);
        _training = training && Dropout > 0;
        _seed = seed;
        int rows;
        DeviceView<float> dropped;
        if (Kind == TaskKind.TokenClassification)
        {
            rows = B * S;
            dropped = _dropped.Slice(0, rows * d);
            if (_training) _backend.DropoutForward(hidden, dropped, Dropout, seed, 0);
            else _backend.Copy(hidden, dropped);
        }
        else
        {
            rows = B;
            dropped = _dropped.Slice(0, rows * d);
            _backend.Upload(PoolMask(batch), _mask.Slice(0, B * T));
            _backend.MeanPoolDropoutForward(hidden, _mask.Slice(0, B * T), dropped, B, S, skip, d, _training ? Dropout : 0f, seed);
        }
        _backend.Gemm(GemmOp.NN, rows, Classes, d, dropped, p.Value(p["head.weight"]), _logits.Slice(0, rows * Classes), p.Value(p["head.bias"]));
        return rows;
    }

    private bool _training;
    private ulong _seed;

    private void Backward(TrainableParameters p, TokenBatch batch, int skip, int rows, DeviceView<float> dLogits, DeviceView<float> dHidden)
    {
        int d = Dim, B = batch.Batch, S = skip + batch.SeqLen;
        var dropped = _dropped.Slice(0, rows * d);
        // head.weight [d, C] and head.bias [C] lie packed: their gradients in one launch.
        _backend.GroupedLinearBackward(dropped, dLogits, p.Gradients.Slice(p["head.weight"].Offset, (d + 1) * Classes), 1, rows, d, Classes, 0f, 0, 0);
        var dDropped = _dDropped.Slice(0, rows * d);
        _backend.Gemm(GemmOp.NT, rows, d, Classes, dLogits, p.Value(p["head.weight"]), dDropped);
        // Token classification writes straight into dHidden; sequence heads go back through the dropout and the pooling in one op.
        if (Kind != TaskKind.TokenClassification)
            _backend.MeanPoolDropoutBackward(dDropped, _mask.Slice(0, B * batch.SeqLen), dHidden, B, S, skip, d, _training ? Dropout : 0f, _seed);
        else if (_training) _backend.DropoutBackward(dDropped, dHidden, Dropout, _seed, 0);
        else _backend.Accumulate(dDropped, dHidden);
    }

    /// <summary>The rows the mean pool averages: every real token (mean), or one of them (cls: the first, last: the last real one).</summary>
    private int[] PoolMask(TokenBatch batch)
    {
        int T = batch.SeqLen;
        var mask = new int[batch.Batch * T];
        for (int b = 0; b < batch.Batch; b++)
        {
            var real = batch.Mask.AsSpan(b * T, T);
            switch (Pooling)
            {
                case Pooling.Cls: mask[b * T] = 1; break;
                case Pooling.Last:
                    int last = real.LastIndexOfAnyExcept(0f);
                    if (last < 0) throw new ArgumentException($"example {b} of the batch has no real token to pool");
                    mask[b * T + last] = 1;
                    break;
                default:
                    for (int t = 0; t < T; t++) mask[b * T + t] = real[t] != 0 ? 1 : 0;
                    break;
            }
        }
        return mask;
    }

    private static int[] TokenLabels(TokenBatch batch, int skip, HeadTargets targets)
    {
        var tokens = targets.TokenLabels ?? throw new ArgumentException("token labels missing");
        int B = batch.Batch, T = batch.SeqLen, S = skip + T;
        if (tokens.Length != B * T) throw new ArgumentException($"token labels have {tokens.Length} values, expected B·T = {B}·{T}");
        var labels = new int[B * S];
        Array.Fill(labels, -100);
        for (int b = 0; b < B; b++) tokens.AsSpan(b * T, T).CopyTo(labels.AsSpan(b * S + skip));
        return labels;
    }

    private void Ensure(int batchRows, int tokenRows)
    {
        if (batchRows <= _capacityRows && tokenRows <= _capacityTokens) return;
        foreach (var b in _buffers) b.Dispose();
        _buffers.Clear();
        _capacityRows = Math.Max(batchRows, _capacityRows);
        _capacityTokens = Math.Max(tokenRows, _capacityTokens);
        int rows = Kind == TaskKind.TokenClassification ? _capacityTokens : _capacityRows;
        DeviceArray<float> F(int n) { var a = _backend.Allocate(n); _buffers.Add(a); return a; }
        _dropped = F(rows * Dim);
        _dDropped = F(rows * Dim);
        _logits = F(rows * Classes);
        _dLogits = F(rows * Classes);
        _targets = F(rows);
        _labels = _backend.AllocateInts(rows); _buffers.Add(_labels);
        _mask = _backend.AllocateInts(_capacityTokens); _buffers.Add(_mask);
    }

    /// <inheritdoc />
    public void Dispose()
    {
        foreach (var b in _buffers) b.Dispose();
    }
}
