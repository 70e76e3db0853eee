using SkTuning.Gpu.Import;
using SkTuning.Gpu.Kernels;
using SkTuning.Gpu.Training;

namespace SkTuning.Gpu.Engine;

/// <summary>
/// The BERT-family transformer on a <see cref="Backend"/>: forward with an optional SK-Prompt (m vectors prepended after
/// the embedding layer) and/or SK-Prefix (per-layer keys/values [L × 2 × m × d], one buffer shared by the whole batch),
/// and backward. Three modes:
/// <list type="bullet">
/// <item><description>frozen (the default): the weights are read-only and the backward computes activation gradients
/// only — the gradient reaches the prompt or prefix;</description></item>
/// <item><description>full fine-tuning (<see cref="TransformerEngine(Backend, ModelSpec, TrainableParameters)"/>): the
/// weights are named slices of a <see cref="TrainableParameters"/> (<see cref="EngineParameters.WeightTensors"/>) and the
/// backward also accumulates every weight's gradient into its gradient slice;</description></item>
/// <item><description>LoRA (<see cref="TransformerEngine(Backend, ModelSpec, ModelWeights, TrainableParameters, LoraOptions)"/>):
/// frozen weights plus trainable low-rank updates of the query and value projections
/// (<see cref="EngineParameters.LoraTensors"/>), whose gradients the backward accumulates.</description></item>
/// </list>
/// Activations are kept from the last forward for the backward and reused across calls of the same or smaller shape.
/// </summary>
public sealed class TransformerEngine : IDisposable
{
    private readonly Backend _backend;
    private readonly DeviceWeights _w;
    private readonly DeviceWeights? _g;   // full fine-tuning: gradient views (same layout as _w); null when frozen
    private readonly LoraLayer[]? _lora;  // LoRA: per-layer A/B values and gradients; null without LoRA
    private readonly LoraOptions? _loraOptions;
    private Activations? _act;
    private DeviceArray<int>? _ids, _types;
    private DeviceArray<float>? _mask;
    private ForwardShape _shape;
    private DeviceView<float> _prefix;
    private bool _training;
    private ulong _seed;

    /// <summary>Frozen mode: uploads the weights to the backend; no weight gets a gradient.</summary>
    public TransformerEngine(Backend backend, ModelSpec spec, ModelWeights weights)
    {
        CheckFamily(spec);
        _backend = backend;
        Spec = spec;
        _w = DeviceWeights.Upload(backend, spec, weights);
    }

    /// <summary>
    /// Full fine-tuning: the weights are the tensors <see cref="EngineParameters.WeightTensors"/> registered in
    /// <paramref name="parameters"/> (initialize them with <see cref="EngineParameters.CopyPretrained"/>); the engine reads
    /// their current values at every forward and <see cref="Backward"/> accumulates their gradients.
    /// </summary>
    /// <exception cref="SkTuningException">A weight tensor is not registered or has another shape.</exception>
    public TransformerEngine(Backend backend, ModelSpec spec, TrainableParameters parameters)
    {
        CheckFamily(spec);
        CheckBackend(backend, parameters);
        _backend = backend;
        Spec = spec;
        _w = DeviceWeights.FromParameters(parameters, parameters.Values, spec);
        _g = DeviceWeights.FromParameters(parameters, parameters.Gradients, spec);
    }

    /// <summary>
    /// LoRA: the frozen <paramref name="weights"/> plus trainable A/B on the query and value projections, registered in
    /// <paramref name="parameters"/> as <see cref="EngineParameters.LoraTensors"/> (initialize with
    /// <see cref="EngineParameters.InitializeLora"/>); <see cref="Backward"/> accumulates their gradients.
    /// </summary>
    /// <exception cref="SkTuningException">A LoRA tensor is not registered or has another shape.</exception>
    /// <exception cref="ArgumentException">Options out of range.</exception>
    public TransformerEngine(Backend backend, ModelSpec spec, ModelWeights weights, TrainableParameters parameters, LoraOptions lora)
    {
        CheckFamily(spec);
        CheckBackend(backend, parameters);
        lora.Validate();
        _backend = backend;
        Spec = spec;
        _loraOptions = lora;
        var expected = EngineParameters.LoraTensors(spec, lora.Rank).ToDictionary(t => t.Name, t => t.Shape);
        (DeviceView<float> Value, DeviceView<float> Gradient) V(string name)
        {
            if (!parameters.Contains(name))
                throw new SkTuningException($"LoRA: the trainable parameters have no tensor '{name}' (register EngineParameters.LoraTensors)");
            var info = parameters[name];
            if (!info.Shape.SequenceEqual(expected[name]))
                throw new SkTuningException($"LoRA: tensor '{name}' is [{string.Join(",", info.Shape)}], expected [{string.Join(",", expected[name])}]");
            return (parameters.Value(info), parameters.Gradient(info));
        }
        _lora = Enumerable.Range(0, spec.Layers).Select(l =>
        {
            var (qa, qb, va, vb) = EngineParameters.LoraNames(l);
            return new LoraLayer(V(qa), V(qb), V(va), V(vb));
        }).ToArray();
        _w = DeviceWeights.Upload(backend, spec, weights);
    }

    private static void CheckFamily(ModelSpec spec)
    {
        if (spec.Family != ModelFamily.Bert)
            throw new SkTuningException($"the engine runs BERT-family models; this one is {spec.Family}");
    }

    private static void CheckBackend(Backend backend, TrainableParameters parameters)
    {
        if (!ReferenceEquals(backend, parameters.Backend))
            throw new ArgumentException($"the trainable parameters live on backend '{parameters.Backend.Name}', not on the engine's '{backend.Name}'");
    }

    /// <summary>True under full fine-tuning: the backward accumulates every weight's gradient.</summary>
    public bool TrainsWeights => _g is not null;

    /// <summary>The LoRA options, or null without LoRA.</summary>
    public LoraOptions? Lora => _loraOptions;

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
    /// <param name="training">Training mode: LoRA dropout is applied (nothing else in the engine depends on it).</param>
    /// <param name="seed">Seed of the training-mode dropout masks (the backward reuses them).</param>
    /// <exception cref="ArgumentException">Sizes that do not fit the model (the message names them).</exception>
    public DeviceView<float> Forward(TokenBatch batch, DeviceView<float> prompt = default, DeviceView<float> prefix = default,
        bool training = false, ulong seed = 0)
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
        _training = training;
        _seed = seed;
        var a = _act!;
        int B = shape.Batch, T = shape.SeqLen, S = shape.Positions, rows = B * S, F = Spec.FfnSize;

        _backend.Upload(batch.Ids, _ids!.Slice(0, B * T));
        _backend.Upload(batch.Types, _types!.Slice(0, B * T));
        UploadMask(batch, shape);

        // Embeddings and their LayerNorm apply to the real tokens only; the prompt is prepended after them.
        var tokRows = B * T;
        var x0 = shape.PromptLen > 0 ? a.EmbeddingOut.Slice(0, tokRows * d) : a.Hidden[0].Slice(0, rows * d);
        _backend.EmbeddingForward(_ids.Slice(0, tokRows), _types.Slice(0, tokRows), _w.WordEmbeddings, _w.PositionEmbeddings,
            _w.TokenTypeEmbeddings, a.EmbeddingSum.Slice(0, tokRows * d), B, T, d);
        _backend.LayerNormForward(a.EmbeddingSum.Slice(0, tokRows * d), _w.EmbeddingLnGamma, _w.EmbeddingLnBeta, x0,
            a.EmbeddingMean.Slice(0, tokRows), a.EmbeddingRstd.Slice(0, tokRows), tokRows, d, Spec.Epsilon);
        if (shape.PromptLen > 0)
            _backend.Prepend(prompt, x0, a.Hidden[0].Slice(0, rows * d), B, shape.PromptLen, T, d);

        var att = AttentionShape(shape);
        for (int l = 0; l < L; l++)
        {
            var w = _w.Layers[l];
            var la = a.Layers[l];
            var x = a.Hidden[l].Slice(0, rows * d);
            _backend.Gemm(GemmOp.NN, rows, 3 * d, d, x, w.Wqkv, la.Qkv.Slice(0, rows * 3 * d), w.Bqkv);
            if (_lora is not null) LoraForward(l, rows, x, la.Qkv.Slice(0, rows * 3 * d));
            var (pk, pv) = PrefixViews(prefix, l, shape.PrefixLen);
            _backend.AttentionForward(att, Spec.MaskValue, Spec.Causal, la.Qkv.Slice(0, rows * 3 * d), pk, pv, _mask!.Slice(0, B * S),
                la.Context.Slice(0, rows * d), la.Probabilities.Slice(0, att.ProbsLength));
            _backend.Gemm(GemmOp.NN, rows, d, d, la.Context.Slice(0, rows * d), w.Wo, la.AttnSum.Slice(0, rows * d), w.Bo);
            _backend.Accumulate(x, la.AttnSum.Slice(0, rows * d));
            _backend.LayerNormForward(la.AttnSum.Slice(0, rows * d), w.AttnLnGamma, w.AttnLnBeta, la.AttnOut.Slice(0, rows * d),
                la.AttnMean.Slice(0, rows), la.AttnRstd.Slice(0, rows), rows, d, Spec.Epsilon);
            _backend.Gemm(GemmOp.NN, rows, F, d, la.AttnOut.Slice(0, rows * d), w.W1, la.FfnIn.Slice(0, rows * F), w.B1);
            _backend.GeluForward(la.FfnIn.Slice(0, rows * F), la.FfnAct.Slice(0, rows * F));
            _backend.Gemm(GemmOp.NN, rows, d, F, la.FfnAct.Slice(0, rows * F), w.W2, la.FfnSum.Slice(0, rows * d), w.B2);
            _backend.Accumulate(la.AttnOut.Slice(0, rows * d), la.FfnSum.Slice(0, rows * d));
            _backend.LayerNormForward(la.FfnSum.Slice(0, rows * d), w.OutLnGamma, w.OutLnBeta, a.Hidden[l + 1].Slice(0, rows * d),
                la.OutMean.Slice(0, rows), la.OutRstd.Slice(0, rows), rows, d, Spec.Epsilon);
        }
        return a.Hidden[L].Slice(0, rows * d);
    }

    /// <summary>
    /// Backward of the last <see cref="Forward"/> from d(loss)/d(final hidden states) [B, m_p + T, d]:
    /// accumulates d(loss)/d(prompt) [m_p, d] and d(loss)/d(prefix) [L, 2, m, d], each summed over the batch; under full
    /// fine-tuning also every weight's gradient, and with LoRA the A/B gradients, into the trainable parameters'
    /// gradient buffer (+=; the caller zeroes it per step).
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
            var g = _g?.Layers[l];
            var la = a.Layers[l];
            // x_{l+1} = LN2(ffnSum), ffnSum = W2·gelu(W1·h + b1) + b2 + h
            _backend.Zero(dr);
            _backend.LayerNormBackward(dx, la.FfnSum.Slice(0, rows * d), w.OutLnGamma, la.OutMean.Slice(0, rows), la.OutRstd.Slice(0, rows),
                dr, g?.OutLnGamma ?? default, g?.OutLnBeta ?? default, rows, d);
            _backend.Copy(dr, dh);
            _backend.Gemm(GemmOp.NT, rows, F, d, dr, w.W2, dact);
            if (g is not null)
            {
                _backend.Gemm(GemmOp.TN, F, d, rows, la.FfnAct.Slice(0, rows * F), dr, g.W2, accumulate: true);
                _backend.BiasBackward(dr, g.B2, rows, d);
            }
            _backend.Zero(dffn);
            _backend.GeluBackward(dact, la.FfnIn.Slice(0, rows * F), dffn);
            _backend.Gemm(GemmOp.NT, rows, d, F, dffn, w.W1, dh, accumulate: true);
            if (g is not null)
            {
                _backend.Gemm(GemmOp.TN, d, F, rows, la.AttnOut.Slice(0, rows * d), dffn, g.W1, accumulate: true);
                _backend.BiasBackward(dffn, g.B1, rows, F);
            }
            // h = LN1(attnSum), attnSum = Wo·context + bo + x_l
            _backend.Zero(dr);
            _backend.LayerNormBackward(dh, la.AttnSum.Slice(0, rows * d), w.AttnLnGamma, la.AttnMean.Slice(0, rows), la.AttnRstd.Slice(0, rows),
                dr, g?.AttnLnGamma ?? default, g?.AttnLnBeta ?? default, rows, d);
            _backend.Gemm(GemmOp.NT, rows, d, d, dr, w.Wo, dh);
            if (g is not null)
            {
                _backend.Gemm(GemmOp.TN, d, d, rows, la.Context.Slice(0, rows * d), dr, g.Wo, accumulate: true);
                _backend.BiasBackward(dr, g.Bo, rows, d);
            }
            _backend.Zero(dqkv);
            var (pk, pv) = PrefixViews(_prefix, l, shape.PrefixLen);
            var (dpk, dpv) = PrefixViews(dPrefix, l, shape.PrefixLen);
            _backend.AttentionBackward(att, dh, la.Qkv.Slice(0, rows * 3 * d), pk, pv, la.Probabilities.Slice(0, att.ProbsLength),
                dqkv, dpk, dpv);
            var x = a.Hidden[l].Slice(0, rows * d);
            if (g is not null)
            {
                _backend.Gemm(GemmOp.TN, d, 3 * d, rows, x, dqkv, g.Wqkv, accumulate: true);
                _backend.BiasBackward(dqkv, g.Bqkv, rows, 3 * d);
            }
            // Below layer 0 only a prompt or the embedding tables (full fine-tuning) need d(loss)/dx: a prefix-only step skips it.
            if (l > 0 || shape.PromptLen > 0 || _g is not null)
            {
                _backend.Copy(dr, dx);
                _backend.Gemm(GemmOp.NT, rows, d, 3 * d, dqkv, w.Wqkv, dx, accumulate: true);
            }
            if (_lora is not null) LoraBackward(l, rows, x, dqkv, dx);
        }
        if (shape.PromptLen > 0)
            _backend.PrependBackward(dx, dPrompt, default, B, shape.PromptLen, T, d);
        if (_g is not null) EmbeddingBackward(shape, dx, dr, dh);
    }

    /// <summary>
    /// Full fine-tuning, after the layers: from d(loss)/d(layer-0 input) <paramref name="dx"/> back through the embedding
    /// LayerNorm (γ/β gradients) to the three tables (scatter-add). <paramref name="scratch1"/>/<paramref name="scratch2"/> are free [rows, d] buffers.
    /// </summary>
    private void EmbeddingBackward(ForwardShape shape, DeviceView<float> dx, DeviceView<float> scratch1, DeviceView<float> scratch2)
    {
        var a = _act!;
        var g = _g!;
        int d = Spec.Hidden, B = shape.Batch, T = shape.SeqLen, tokRows = B * T;
        var dOut = dx;
        if (shape.PromptLen > 0)
        {
            // Only the token rows went through the embedding layer.
            dOut = scratch2.Slice(0, tokRows * d);
            _backend.Zero(dOut);
            _backend.PrependBackward(dx, default, dOut, B, shape.PromptLen, T, d);
        }
        var dSum = scratch1.Slice(0, tokRows * d);
        _backend.Zero(dSum);
        _backend.LayerNormBackward(dOut, a.EmbeddingSum.Slice(0, tokRows * d), _w.EmbeddingLnGamma, a.EmbeddingMean.Slice(0, tokRows),
            a.EmbeddingRstd.Slice(0, tokRows), dSum, g.EmbeddingLnGamma, g.EmbeddingLnBeta, tokRows, d);
        _backend.EmbeddingBackward(_ids!.Slice(0, tokRows), _types!.Slice(0, tokRows), dSum, g.WordEmbeddings, g.PositionEmbeddings,
            g.TokenTypeEmbeddings, B, T, d);
    }

    /// <summary>
    /// The counter-RNG stream of LoRA's dropout for one layer and target (0 query, 1 value): its own seed and offset, so
    /// no mask repeats another (nor the head's or an adapter's, which use the caller's seed directly).
    /// </summary>
    internal static (ulong Seed, long Offset) LoraDropoutStream(ulong seed, int layer, int target, int rows, int dim) =>
        (seed ^ 0x4C6F52414C6F5241UL, (long)(2 * layer + target) * rows * dim);

    private bool LoraDropoutActive => _training && _loraOptions!.Dropout > 0f;

    /// <summary>qkv[:, q or v columns] += (α/r)·(dropout(x)·A)·B for layer <paramref name="l"/>; saves t = dropout(x)·A.</summary>
    private void LoraForward(int l, int rows, DeviceView<float> x, DeviceView<float> qkv)
    {
        var a = _act!;
        var o = _loraOptions!;
        int d = Spec.Hidden, r = o.Rank;
        for (int j = 0; j < 2; j++)
        {
            var (A, Bm) = j == 0 ? (_lora![l].QueryA.Value, _lora[l].QueryB.Value) : (_lora![l].ValueA.Value, _lora[l].ValueB.Value);
            var input = x;
            if (LoraDropoutActive)
            {
                input = a.LoraX!.Slice(0, rows * d);
                var (s, off) = LoraDropoutStream(_seed, l, j, rows, d);
                _backend.DropoutForward(x, input, o.Dropout, s, off);
            }
            var t = a.LoraT[2 * l + j].Slice(0, rows * r);
            var u = a.LoraU!.Slice(0, rows * d);
            _backend.Gemm(GemmOp.NN, rows, r, d, input, A, t);
            _backend.Gemm(GemmOp.NN, rows, d, r, t, Bm, u);
            _backend.AddColumnBlock(u, qkv, rows, d, 3 * d, j == 0 ? 0 : 2 * d, o.Scale);
        }
    }

    /// <summary>From dqkv: accumulates dA, dB of layer <paramref name="l"/> and adds LoRA's share of d(loss)/d(x) into <paramref name="dx"/>.</summary>
    private void LoraBackward(int l, int rows, DeviceView<float> x, DeviceView<float> dqkv, DeviceView<float> dx)
    {
        var a = _act!;
        var o = _loraOptions!;
        int d = Spec.Hidden, r = o.Rank;
        for (int j = 0; j < 2; j++)
        {
            var (A, Bm) = j == 0 ? (_lora![l].QueryA, _lora[l].QueryB) : (_lora![l].ValueA, _lora[l].ValueB);
            var t = a.LoraT[2 * l + j].Slice(0, rows * r);
            var du = a.LoraU!.Slice(0, rows * d);
            var dt = a.LoraDT!.Slice(0, rows * r);
            _backend.Zero(du);
            _backend.ColumnBlockBackward(dqkv, du, rows, d, 3 * d, j == 0 ? 0 : 2 * d, o.Scale);
            _backend.Gemm(GemmOp.TN, r, d, rows, t, du, Bm.Gradient, accumulate: true);   // dB += tᵀ·du
            _backend.Gemm(GemmOp.NT, rows, r, d, du, Bm.Value, dt);                      // dt = du·Bᵀ
            if (LoraDropoutActive)
            {
                var xd = a.LoraX!.Slice(0, rows * d);
                var (s, off) = LoraDropoutStream(_seed, l, j, rows, d);
                _backend.DropoutForward(x, xd, o.Dropout, s, off);                      // recompute dropout(x)
                _backend.Gemm(GemmOp.TN, d, r, rows, xd, dt, A.Gradient, accumulate: true);
                _backend.Gemm(GemmOp.NT, rows, d, r, dt, A.Value, xd);                  // d(dropout(x)), reusing the buffer
                _backend.DropoutBackward(xd, dx, o.Dropout, s, off);
            }
            else
            {
                _backend.Gemm(GemmOp.TN, d, r, rows, x, dt, A.Gradient, accumulate: true); // dA += xᵀ·dt
                _backend.Gemm(GemmOp.NT, rows, d, r, dt, A.Value, dx, accumulate: true);    // dx += dt·Aᵀ
            }
        }
    }

    private AttentionShape AttentionShape(ForwardShape s) => new(s.Batch, s.Positions, Spec.Heads, Spec.HeadSize, s.PrefixLen, Spec.KvHeads);

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
        _act = new Activations(_backend, Spec, cap, _loraOptions?.Rank ?? 0);
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

/// <summary>One layer's LoRA tensors: value and gradient views of A [d, r] and B [r, d] for query and value.</summary>
internal sealed record LoraLayer(
    (DeviceView<float> Value, DeviceView<float> Gradient) QueryA, (DeviceView<float> Value, DeviceView<float> Gradient) QueryB,
    (DeviceView<float> Value, DeviceView<float> Gradient) ValueA, (DeviceView<float> Value, DeviceView<float> Gradient) ValueB);

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
