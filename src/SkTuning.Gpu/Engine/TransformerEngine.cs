using SkTuning.Gpu.Import;
using SkTuning.Gpu.Kernels;

namespace SkTuning.Gpu.Engine;

/// <summary>
/// The frozen BERT-family transformer on a <see cref="Backend"/>: forward with an optional SK-Prompt
/// (m vectors prepended after the embedding layer) and/or SK-Prefix (per-layer keys/values [L × 2 × m × d],
/// one buffer shared by the whole batch), and backward with respect to activations only — the weights are
/// frozen, so no weight gradient is ever computed; the gradient reaches the prompt or prefix.
/// Activations are kept from the last forward for the backward and reused across calls of the same or
/// smaller shape.
/// </summary>
public sealed class TransformerEngine : IDisposable
{
    private readonly Backend _backend;
    private readonly DeviceWeights _w;
    private Activations? _act;
    private DeviceArray<int>? _ids, _types;
    private DeviceArray<float>? _mask;
    private ForwardShape _shape;
    private DeviceView<float> _prefix;

    /// <summary>Uploads the frozen weights to the backend.</summary>
    public TransformerEngine(Backend backend, ModelSpec spec, ModelWeights weights)
    {
        if (spec.Family != ModelFamily.Bert)
            throw new SkTuningException($"the engine runs BERT-family models; this one is {spec.Family}");
        _backend = backend;
        Spec = spec;
        _w = DeviceWeights.Upload(backend, spec, weights);
    }

    /// <summary>The model's architecture.</summary>
    public ModelSpec Spec { get; }

    /// <summary>The backend the engine runs on.</summary>
    public Backend Backend => _backend;

    /// <summary>
    /// Runs the model. Returns the final hidden states [B, m_p + T, d] (prompt rows first), valid until the next call.
    /// </summary>
    /// <param name="batch">Token ids, types and mask [B, T].</param>
    /// <param name="prompt">SK-Prompt vectors [m_p, d], or empty.</param>
    /// <param name="prefix">SK-Prefix keys/values [L, 2, m, d] (layer l: K at 2l, V at 2l+1), or empty.</param>
    /// <exception cref="ArgumentException">Sizes that do not fit the model (the message names them).</exception>
    public DeviceView<float> Forward(TokenBatch batch, DeviceView<float> prompt = default, DeviceView<float> prefix = default)
    {
        int d = Spec.Hidden, L = Spec.Layers;
        if (batch.SeqLen > Spec.MaxPositions)
            throw new ArgumentException($"sequence of {batch.SeqLen} tokens is longer than the model's {Spec.MaxPositions} positions");
        if (prompt.Length % d != 0)
            throw new ArgumentException($"prompt has {prompt.Length} values, not a multiple of the model width d = {d}");
        if (prefix.Length % (2 * L * d) != 0)
            throw new ArgumentException($"prefix has {prefix.Length} values, not a multiple of 2·L·d = 2·{L}·{d} = {2 * L * d}");
        var shape = new ForwardShape(batch.Batch, batch.SeqLen, prompt.Length / d, prefix.Length / (2 * L * d));
        Prepare(shape);
        _shape = shape;
        _prefix = prefix;
        var a = _act!;
        int B = shape.Batch, T = shape.SeqLen, S = shape.Positions, rows = B * S, F = Spec.FfnSize;

        _backend.Upload(batch.Ids, _ids!.Slice(0, B * T));
        _backend.Upload(batch.Types, _types!.Slice(0, B * T));
        UploadMask(batch, shape);

        // Embeddings and their LayerNorm apply to the real tokens only; the prompt is prepended after them.
        var tokRows = B * T;
        var x0 = shape.PromptLen > 0 ? a.EmbeddingOut.Slice(0, tokRows * d) : a.Hidden[0].Slice(0, rows * d);
        _backend.EmbeddingForward(_ids.Slice(0, tokRows), _types.Slice(0, tokRows), _w.WordEmbeddings.All, _w.PositionEmbeddings.All,
            _w.TokenTypeEmbeddings.All, a.EmbeddingSum.Slice(0, tokRows * d), B, T, d);
        _backend.LayerNormForward(a.EmbeddingSum.Slice(0, tokRows * d), _w.EmbeddingLnGamma.All, _w.EmbeddingLnBeta.All, x0,
            a.EmbeddingMean.Slice(0, tokRows), a.EmbeddingRstd.Slice(0, tokRows), tokRows, d, Spec.Epsilon);
        if (shape.PromptLen > 0)
            _backend.Prepend(prompt, x0, a.Hidden[0].Slice(0, rows * d), B, shape.PromptLen, T, d);

        var att = AttentionShape(shape);
        for (int l = 0; l < L; l++)
        {
            var w = _w.Layers[l];
            var la = a.Layers[l];
            var x = a.Hidden[l].Slice(0, rows * d);
            _backend.Gemm(GemmOp.NN, rows, 3 * d, d, x, w.Wqkv.All, la.Qkv.Slice(0, rows * 3 * d), w.Bqkv.All);
            var (pk, pv) = PrefixViews(prefix, l, shape.PrefixLen);
            _backend.AttentionForward(att, Spec.MaskValue, Spec.Causal, la.Qkv.Slice(0, rows * 3 * d), pk, pv, _mask!.Slice(0, B * S),
                la.Context.Slice(0, rows * d), la.Probabilities.Slice(0, att.ProbsLength));
            _backend.Gemm(GemmOp.NN, rows, d, d, la.Context.Slice(0, rows * d), w.Wo.All, la.AttnSum.Slice(0, rows * d), w.Bo.All);
            _backend.Accumulate(x, la.AttnSum.Slice(0, rows * d));
            _backend.LayerNormForward(la.AttnSum.Slice(0, rows * d), w.AttnLnGamma.All, w.AttnLnBeta.All, la.AttnOut.Slice(0, rows * d),
                la.AttnMean.Slice(0, rows), la.AttnRstd.Slice(0, rows), rows, d, Spec.Epsilon);
            _backend.Gemm(GemmOp.NN, rows, F, d, la.AttnOut.Slice(0, rows * d), w.W1.All, la.FfnIn.Slice(0, rows * F), w.B1.All);
            _backend.GeluForward(la.FfnIn.Slice(0, rows * F), la.FfnAct.Slice(0, rows * F));
            _backend.Gemm(GemmOp.NN, rows, d, F, la.FfnAct.Slice(0, rows * F), w.W2.All, la.FfnSum.Slice(0, rows * d), w.B2.All);
            _backend.Accumulate(la.AttnOut.Slice(0, rows * d), la.FfnSum.Slice(0, rows * d));
            _backend.LayerNormForward(la.FfnSum.Slice(0, rows * d), w.OutLnGamma.All, w.OutLnBeta.All, a.Hidden[l + 1].Slice(0, rows * d),
                la.OutMean.Slice(0, rows), la.OutRstd.Slice(0, rows), rows, d, Spec.Epsilon);
        }
        return a.Hidden[L].Slice(0, rows * d);
    }

    /// <summary>
    /// Backward of the last <see cref="Forward"/> from d(loss)/d(final hidden states) [B, m_p + T, d]:
    /// accumulates d(loss)/d(prompt) [m_p, d] and d(loss)/d(prefix) [L, 2, m, d], each summed over the batch.
    /// </summary>
    public void Backward(DeviceView<float> dHidden, DeviceView<float> dPrompt = default, DeviceView<float> dPrefix = default)
    {
        var a = _act ?? throw new InvalidOperationException("Backward before Forward");
        var shape = _shape;
        int d = Spec.Hidden, L = Spec.Layers, F = Spec.FfnSize, B = shape.Batch, T = shape.SeqLen, rows = B * shape.Positions;
        if (dHidden.Length != rows * d)
            throw new ArgumentException($"dHidden has {dHidden.Length} values, expected B·(m+T)·d = {B}·{shape.Positions}·{d} = {rows * d}");
        if (dPrompt.Length != shape.PromptLen * d)
            throw new ArgumentException($"dPrompt has {dPrompt.Length} values, expected m·d = {shape.PromptLen}·{d}");
        if (dPrefix.Length != shape.PrefixLen * 2 * L * d)
            throw new ArgumentException($"dPrefix has {dPrefix.Length} values, expected L·2·m·d = {L}·2·{shape.PrefixLen}·{d}");
        var att = AttentionShape(shape);
        var dx = a.DX.Slice(0, rows * d);
        var dr = a.DR.Slice(0, rows * d);
        var dh = a.DH.Slice(0, rows * d);
        var dffn = a.DFfn.Slice(0, rows * F);
        var dact = a.DFfnAct.Slice(0, rows * F);
        var dqkv = a.DQkv.Slice(0, rows * 3 * d);
        _backend.Copy(dHidden, dx);
        for (int l = L - 1; l >= 0; l--)
        {
            var w = _w.Layers[l];
            var la = a.Layers[l];
            // x_{l+1} = LN2(ffnSum), ffnSum = W2·gelu(W1·h + b1) + b2 + h
            _backend.Zero(dr);
            _backend.LayerNormBackward(dx, la.FfnSum.Slice(0, rows * d), w.OutLnGamma.All, la.OutMean.Slice(0, rows), la.OutRstd.Slice(0, rows),
                dr, default, default, rows, d);
            _backend.Copy(dr, dh);
            _backend.Gemm(GemmOp.NT, rows, F, d, dr, w.W2.All, dact);
            _backend.Zero(dffn);
            _backend.GeluBackward(dact, la.FfnIn.Slice(0, rows * F), dffn);
            _backend.Gemm(GemmOp.NT, rows, d, F, dffn, w.W1.All, dh, accumulate: true);
            // h = LN1(attnSum), attnSum = Wo·context + bo + x_l
            _backend.Zero(dr);
            _backend.LayerNormBackward(dh, la.AttnSum.Slice(0, rows * d), w.AttnLnGamma.All, la.AttnMean.Slice(0, rows), la.AttnRstd.Slice(0, rows),
                dr, default, default, rows, d);
            _backend.Gemm(GemmOp.NT, rows, d, d, dr, w.Wo.All, dh);
            _backend.Zero(dqkv);
            var (pk, pv) = PrefixViews(_prefix, l, shape.PrefixLen);
            var (dpk, dpv) = PrefixViews(dPrefix, l, shape.PrefixLen);
            _backend.AttentionBackward(att, dh, la.Qkv.Slice(0, rows * 3 * d), pk, pv, la.Probabilities.Slice(0, att.ProbsLength),
                dqkv, dpk, dpv);
            _backend.Copy(dr, dx);
            _backend.Gemm(GemmOp.NT, rows, d, 3 * d, dqkv, w.Wqkv.All, dx, accumulate: true);
        }
        if (shape.PromptLen > 0)
            _backend.PrependBackward(dx, dPrompt, default, B, shape.PromptLen, T, d);
    }

    private AttentionShape AttentionShape(ForwardShape s) => new(s.Batch, s.Positions, Spec.Heads, Spec.HeadSize, s.PrefixLen);

    private (DeviceView<float> K, DeviceView<float> V) PrefixViews(DeviceView<float> prefix, int layer, int m)
    {
        if (m == 0) return (default, default);
        int block = m * Spec.Hidden;
        return (prefix.Slice(2 * layer * block, block), prefix.Slice((2 * layer + 1) * block, block));
    }

    private void UploadMask(TokenBatch batch, ForwardShape s)
    {
        // Prompt positions are always attended: the mask over [prompt; tokens] is ones then the batch's mask.
        var mask = new float[s.Batch * s.Positions];
        for (int b = 0; b < s.Batch; b++)
        {
            mask.AsSpan(b * s.Positions, s.PromptLen).Fill(1f);
            batch.Mask.AsSpan(b * s.SeqLen, s.SeqLen).CopyTo(mask.AsSpan(b * s.Positions + s.PromptLen));
        }
        _backend.Upload(mask, _mask!.Slice(0, mask.Length));
    }

    private void Prepare(ForwardShape shape)
    {
        if (_act is not null && _act.Fits(shape)) return;
        _act?.Dispose();
        _ids?.Dispose(); _types?.Dispose(); _mask?.Dispose();
        var cap = _act is null ? shape : ForwardShape.Max(_act.Capacity, shape);
        _act = new Activations(_backend, Spec, cap);
        _ids = _backend.AllocateInts(cap.Batch * cap.SeqLen);
        _types = _backend.AllocateInts(cap.Batch * cap.SeqLen);
        _mask = _backend.Allocate(cap.Batch * cap.Positions);
    }

    /// <inheritdoc />
    public void Dispose()
    {
        _act?.Dispose();
        _ids?.Dispose(); _types?.Dispose(); _mask?.Dispose();
        _w.Dispose();
    }
}

/// <summary>The sizes of one forward: B, T real-token positions, m_p prompt rows, m prefix keys.</summary>
internal readonly record struct ForwardShape(int Batch, int SeqLen, int PromptLen, int PrefixLen)
{
    /// <summary>Query positions per example: prompt rows + tokens.</summary>
    public int Positions => PromptLen + SeqLen;

    public bool Fits(ForwardShape need) =>
        need.Batch <= Batch && need.SeqLen <= SeqLen && need.PromptLen <= PromptLen && need.PrefixLen <= PrefixLen;

    public static ForwardShape Max(ForwardShape a, ForwardShape b) =>
        new(Math.Max(a.Batch, b.Batch), Math.Max(a.SeqLen, b.SeqLen), Math.Max(a.PromptLen, b.PromptLen), Math.Max(a.PrefixLen, b.PrefixLen));
}
