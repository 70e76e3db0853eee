using SkTuning.Gpu.Import;
using SkTuning.Gpu.Kernels;
using SkTuning.Gpu.Training;

namespace SkTuning.Gpu.Engine;

/// <summary>
/// A transformer of any supported family (<see cref="ModelSpec"/>: BERT-style post-norm encoders, GPT-2 / LLaMA-style
/// pre-norm and Falcon / Phi-style parallel causal decoders) on a <see cref="Backend"/>: forward with an optional SK-Prompt (m vectors prepended after
/// the embedding layer) and/or SK-Prefix (per-layer keys/values [L × 2 × m × kvDim], one buffer shared by the whole
/// batch, or for inference several runs' chosen per example: <see cref="AdapterChoice"/>), and backward. The family is chosen once: a <see cref="TransformerBlock"/> (post-norm, pre-norm or parallel) over the shared
/// <see cref="Sublayers"/>. In causal models the prefix occupies positions 0..m−1, prompt rows follow, and each example's
/// tokens continue from there (its padding skipped: position = offset + number of real tokens before it), so RoPE
/// angles and absolute positions shift by the prefix/prompt length; prefix keys are given unrotated and rotated by the
/// engine to positions 0..m−1. Three modes:
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
    private readonly LoraOptions? _loraOptions;
    private readonly TransformerBlock _block;
    private readonly Sublayers _sublayers;
    private Activations? _act;
    private DeviceArray<int>? _ids, _types, _tokenPositions, _rowPositions, _choice;
    private DeviceArray<float>? _mask;
    private ForwardShape _shape;
    private readonly bool _ownsWeights = true;

    /// <summary>
    /// Frozen mode: uploads the weights to the backend; no weight gets a gradient. With <paramref name="releaseHostWeights"/>
    /// the host arrays of <paramref name="weights"/> are dropped as they are uploaded (<see cref="ModelWeights.Released"/>),
    /// for callers that need nothing else from them: the fp32 model then never sits whole beside its bf16 copy.
    /// </summary>
    public TransformerEngine(Backend backend, ModelSpec spec, ModelWeights weights, bool releaseHostWeights = false)
    {
        Validate(spec);
        _backend = backend;
        Spec = spec;
        _block = TransformerBlock.For(spec);
        _w = DeviceWeights.Upload(backend, spec, weights, releaseHostWeights);
        _sublayers = new Sublayers(backend, spec, _w, null, null, null);
    }

    /// <summary>
    /// Bytes of the frozen weights this engine uploaded (<see cref="Backend.FrozenWeights"/>: the projection matrices at 2
    /// bytes per value in bf16); 0 for full fine-tuning and for an engine sharing another's weights.
    /// </summary>
    public long FrozenWeightBytes => _ownsWeights ? _w.Bytes : 0;

    /// <summary>Of <see cref="FrozenWeightBytes"/>: the layers' projection matrices (fp32 or bf16).</summary>
    public long FrozenMatrixBytes => _ownsWeights ? _w.MatrixBytes : 0;

    /// <summary>Of <see cref="FrozenWeightBytes"/>: the embedding tables (the word table in bf16 under bf16 weights).</summary>
    public long EmbeddingBytes => _ownsWeights ? _w.EmbeddingBytes : 0;

    /// <summary>
    /// Bytes of the buffers kept from the last forward for the backward, and the backward's scratch (grows with B·T·L,
    /// and with the prefix length through the attention probabilities); 0 before the first forward.
    /// </summary>
    public long ActivationBytes => _act?.Bytes ?? 0;

    /// <summary>
    /// A second frozen engine over <paramref name="frozen"/>'s weights (not copied) with its own activations: runs
    /// causal models' shared SK-Prompt rows (<see cref="PromptKeyValues"/>) beside the engine that runs the batch.
    /// </summary>
    /// <exception cref="ArgumentException"><paramref name="frozen"/> trains weights (full fine-tuning or LoRA).</exception>
    public TransformerEngine(TransformerEngine frozen)
    {
        if (frozen._g is not null || frozen._loraOptions is not null)
            throw new ArgumentException("only a frozen engine's weights can be shared");
        _backend = frozen._backend;
        Spec = frozen.Spec;
        _block = TransformerBlock.For(Spec);
        _w = frozen._w;
        _ownsWeights = false;
        _sublayers = new Sublayers(_backend, Spec, _w, null, null, null);
    }

    /// <summary>
    /// Full fine-tuning: the weights are the tensors <see cref="EngineParameters.WeightTensors"/> registered in
    /// <paramref name="parameters"/> (initialize them with <see cref="EngineParameters.CopyPretrained"/>); the engine reads
    /// their current values at every forward and <see cref="Backward"/> accumulates their gradients.
    /// </summary>
    /// <exception cref="SkTuningException">A weight tensor is not registered or has another shape.</exception>
    public TransformerEngine(Backend backend, ModelSpec spec, TrainableParameters parameters)
    {
        Validate(spec);
        CheckBackend(backend, parameters);
        _backend = backend;
        Spec = spec;
        _block = TransformerBlock.For(spec);
        _w = DeviceWeights.FromParameters(parameters, parameters.Values, spec);
        _g = DeviceWeights.FromParameters(parameters, parameters.Gradients, spec);
        _sublayers = new Sublayers(backend, spec, _w, _g, null, null);
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
        Validate(spec);
        CheckBackend(backend, parameters);
        lora.Validate();
        _backend = backend;
        Spec = spec;
        _block = TransformerBlock.For(spec);
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
        var layers = Enumerable.Range(0, spec.Layers).Select(l =>
        {
            var (qa, qb, va, vb) = EngineParameters.LoraNames(l);
            return new LoraLayer(V(qa), V(qb), V(va), V(vb));
        }).ToArray();
        _w = DeviceWeights.Upload(backend, spec, weights);
        _sublayers = new Sublayers(backend, spec, _w, null, layers, lora);
    }

    /// <summary>
    /// Refuses a spec with a field the engine does not honour, so that no model runs as something else than its graph
    /// computes (norm, placement, activation and positions each map to a kernel; sizes must be consistent).
    /// </summary>
    /// <exception cref="SkTuningException">The unsupported field and its value.</exception>
    public static void Validate(ModelSpec spec)
    {
        string Fail(string what) => $"the engine cannot run this {spec.Family} model: {what}";
        if (spec.Norm is not (NormKind.LayerNorm or NormKind.RmsNorm)) throw new SkTuningException(Fail($"norm {spec.Norm}"));
        if (spec.NormPlacement is not (NormPlacement.Post or NormPlacement.Pre or NormPlacement.Parallel))
            throw new SkTuningException(Fail($"norm placement {spec.NormPlacement}"));
        if (spec.SharedNorm && spec.NormPlacement != NormPlacement.Parallel)
            throw new SkTuningException(Fail($"a shared norm in a {spec.NormPlacement.ToString().ToLowerInvariant()}-norm block"));
        if (spec.Activation is not (ActivationKind.GeluErf or ActivationKind.GeluTanh or ActivationKind.SwiGlu))
            throw new SkTuningException(Fail($"activation {spec.Activation}"));
        if (spec.Positions is not (PositionKind.Absolute or PositionKind.Rope or PositionKind.Alibi)) throw new SkTuningException(Fail($"positions {spec.Positions}"));
        if (spec.Heads <= 0 || spec.KvHeads <= 0 || spec.Heads % spec.KvHeads != 0)
            throw new SkTuningException(Fail($"{spec.Heads} query heads cannot share {spec.KvHeads} key/value heads"));
        if (spec.Heads * spec.HeadSize != spec.Hidden)
            throw new SkTuningException(Fail($"{spec.Heads} heads × {spec.HeadSize} ≠ hidden size {spec.Hidden}"));
        if (spec.Positions == PositionKind.Rope && (spec.RotaryDim <= 0 || spec.RotaryDim % 2 != 0 || spec.RotaryDim > spec.HeadSize))
            throw new SkTuningException(Fail($"rotary dimension {spec.RotaryDim} (must be even and in 2..{spec.HeadSize})"));
        if (spec.Positions == PositionKind.Rope && !(spec.RopeTheta > 1f && float.IsFinite(spec.RopeTheta)))
            throw new SkTuningException(Fail($"RoPE base θ = {spec.RopeTheta}"));
        if (spec.NormPlacement == NormPlacement.Post && spec.Causal && spec.Positions == PositionKind.Rope)
            throw new SkTuningException(Fail("post-norm rotary decoders are not a supported family"));
    }

    private static void CheckBackend(Backend backend, TrainableParameters parameters)
    {
        if (!ReferenceEquals(backend, parameters.Backend))
            throw new ArgumentException($"the trainable parameters live on backend '{parameters.Backend.Name}', not on the engine's '{backend.Name}'");
    }

    /// <summary>
    /// Activation recomputation (<c>--recompute</c>): the forward keeps only each layer's input, every layer's other
    /// saved activations share one set of buffers, and the backward reruns layer l's forward from its input just before
    /// layer l's backward — one more forward per step (less the last layer's, which is still in the buffers) for
    /// activation memory that no longer grows with L. The kernels are deterministic, so gradients are bit-identical to
    /// a step without it. Takes effect at the next <see cref="Forward"/>. Not with <see cref="PromptKeyValues"/>, which
    /// reads every layer's keys.
    /// </summary>
    public bool Recompute { get; set; }

    /// <summary>True under full fine-tuning: the backward accumulates every weight's gradient.</summary>
    public bool TrainsWeights => _g is not null;

    /// <summary>The LoRA options, or null without LoRA.</summary>
    public LoraOptions? Lora => _loraOptions;

    /// <summary>Width of one layer's prefix keys (and values): kvDim = KV heads × head size.</summary>
    public int PrefixWidth => Spec.KvDim;

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
    /// <param name="choice">
    /// Null: the prompt and prefix are shared by the batch. Otherwise they stack A runs' — prompt [A, m_p, d], prefix
    /// [L, 2, A, m, kvDim] — and example b reads adapter Index[b] (inference only: not with <paramref name="training"/>,
    /// and <see cref="Backward"/> is not defined after it).
    /// </param>
    /// <exception cref="ArgumentException">Sizes that do not fit the model (the message names them).</exception>
    public DeviceView<float> Forward(TokenBatch batch, DeviceView<float> prompt = default, DeviceView<float> prefix = default,
        bool training = false, ulong seed = 0, AdapterChoice? choice = null)
    {
        int d = Spec.Hidden, L = Spec.Layers, kv = Spec.KvDim, adapters = choice?.Adapters ?? 1;
        if (choice is not null) CheckChoice(choice, batch.Batch, prompt.Length + prefix.Length, training);
        // Sizes are named as the caller gave them: per adapter (A·) only with a choice.
        string each = choice is null ? "" : "A·", times = choice is null ? "" : $"{adapters}·";
        if (prompt.Length % (d * adapters) != 0)
            throw new ArgumentException($"prompt has {prompt.Length} values, not a multiple of the model width {each}d = {times}{d}");
        if (prefix.Length % (2 * L * kv * adapters) != 0)
            throw new ArgumentException($"prefix has {prefix.Length} values, not a multiple of 2·L·{each}kvDim = 2·{L}·{times}{kv} = {2 * L * adapters * kv}");
        // A stacked prefix needs the choice in attention; a stacked prompt only in the prepend.
        int prefixAdapters = prefix.IsEmpty ? 1 : adapters;
        var shape = new ForwardShape(batch.Batch, batch.SeqLen, prompt.Length / (d * adapters), prefix.Length / (2 * L * kv * adapters), prefixAdapters);
        int longest = Spec.Causal ? shape.PrefixLen + shape.Positions : batch.SeqLen;
        if (longest > Spec.MaxTokens)
            throw new ArgumentException(Spec.Causal
                ? $"prefix {shape.PrefixLen} + prompt {shape.PromptLen} + sequence {batch.SeqLen} = {longest} positions, more than the model's {Spec.MaxTokens}"
                : $"sequence of {batch.SeqLen} tokens is longer than the model's {Spec.MaxTokens} positions");
        Prepare(shape);
        _shape = shape;
        var a = _act!;
        int B = shape.Batch, T = shape.SeqLen, S = shape.Positions, rows = B * S;

        _backend.Upload(batch.Ids, _ids!.Slice(0, B * T));
        _backend.Upload(batch.Types, _types!.Slice(0, B * T));
        UploadMaskAndPositions(batch, shape);
        var index = choice is null ? default : _choice!.Slice(0, B);
        if (choice is not null) _backend.Upload(choice.Index, index);

        // Embeddings (and their norm, where the model has one) apply to the real tokens only; the prompt is prepended after them.
        var tokRows = B * T;
        var x0 = shape.PromptLen > 0 ? a.EmbeddingOut.Slice(0, tokRows * d) : a.Hidden[0].Slice(0, rows * d);
        var embedded = Spec.EmbeddingNorm ? a.EmbeddingSum.Slice(0, tokRows * d) : x0;
        var (ids, types, positions) = (_ids.Slice(0, tokRows), _types.Slice(0, tokRows), _tokenPositions!.Slice(0, tokRows));
        // The fused gather + LayerNorm reads an fp32 table; a bf16 word table (CPU) gathers, then normalises.
        if (Spec.EmbeddingNorm && Spec.Norm == NormKind.LayerNorm && !_w.WordEmbeddings.IsBf16)
            _backend.EmbeddingLayerNormForward(ids, types, positions, _w.WordEmbeddings.Fp32, _w.PositionEmbeddings, _w.TokenTypeEmbeddings, embedded,
                _w.EmbeddingNormGamma, _w.EmbeddingNormBeta, x0, a.EmbeddingMean.Slice(0, tokRows), a.EmbeddingRstd.Slice(0, tokRows), B, T, d, Spec.Epsilon);
        else
        {
            _backend.EmbeddingForward(ids, types, positions, _w.WordEmbeddings, _w.PositionEmbeddings, _w.TokenTypeEmbeddings, embedded, B, T, d);
            if (Spec.EmbeddingNorm)
                _sublayers.Norm.Forward(embedded, _w.EmbeddingNormGamma, _w.EmbeddingNormBeta, x0, a.EmbeddingMean.Slice(0, tokRows),
                    a.EmbeddingRstd.Slice(0, tokRows), tokRows);
        }
        if (shape.PromptLen > 0)
            _backend.Prepend(prompt, x0, a.Hidden[0].Slice(0, rows * d), B, shape.PromptLen, T, d, index);

        _sublayers.Begin(a, AttentionShape(shape), _mask!.Slice(0, B * S), _rowPositions!.Slice(0, rows), prefix,
            prefix.IsEmpty ? default : index, prefixAdapters, training, seed);
        for (int l = 0; l < L; l++)
            _block.Forward(_sublayers, l, rows, a.Layers[l], a.Hidden[l].Slice(0, rows * d), a.Hidden[l + 1].Slice(0, rows * d));
        if (!Spec.HasFinalNorm) return a.Hidden[L].Slice(0, rows * d);
        var final = a.Final!.Slice(0, rows * d);
        _sublayers.Norm.Forward(a.Hidden[L].Slice(0, rows * d), _w.FinalNormGamma, _w.FinalNormBeta, final, a.FinalMean!.Slice(0, rows),
            a.FinalRstd!.Slice(0, rows), rows);
        return final;
    }

    /// <summary>
    /// After a forward of prompt rows alone (example 0's first m_p rows, no prefix), writes each layer's keys and values of
    /// those rows as a prefix [L, 2, m_p, kvDim] — keys unrotated, as <see cref="Forward"/> takes a prefix. In a causal model
    /// the rows see only themselves, so this prefix stands for the prompt in every example (positions 0..m_p−1 included).
    /// </summary>
    public void PromptKeyValues(DeviceView<float> prefix)
    {
        var a = _act ?? throw new InvalidOperationException("PromptKeyValues before Forward");
        int m = _shape.PromptLen, d = Spec.Hidden, kv = Spec.KvDim, qkvw = EngineParameters.QkvWidth(Spec);
        if (!Spec.Causal || m == 0 || _shape.PrefixLen != 0)
            throw new InvalidOperationException("prompt keys/values are shared only in causal models, after a forward with prompt rows and no prefix");
        if (a.Recompute) throw new InvalidOperationException("prompt keys/values need every layer's keys: not with activation recomputation");
        if (prefix.Length != 2 * Spec.Layers * m * kv)
            throw new ArgumentException($"prefix has {prefix.Length} values, expected 2·L·m·kvDim = 2·{Spec.Layers}·{m}·{kv}");
        _backend.Zero(prefix);
        for (int l = 0; l < Spec.Layers; l++)
        {
            var qkv = a.Layers[l].Qkv.Slice(0, m * qkvw);
            var k = prefix.Slice(2 * l * m * kv, m * kv);
            _backend.ColumnBlockBackward(qkv, k, m, kv, qkvw, d, 1f);
            _backend.ColumnBlockBackward(qkv, prefix.Slice((2 * l + 1) * m * kv, m * kv), m, kv, qkvw, d + kv, 1f);
            _sublayers.Unrotate(k, m);
        }
    }

    /// <summary>The input of layer <paramref name="layer"/> (the embedding output for 0) in the last forward, [B·(m_p+T), d].</summary>
    public DeviceView<float> LayerInput(int layer)
    {
        var a = _act ?? throw new InvalidOperationException("LayerInput before Forward");
        if ((uint)layer >= (uint)Spec.Layers) throw new ArgumentOutOfRangeException(nameof(layer), $"layer {layer} of {Spec.Layers}");
        return a.Hidden[layer].Slice(0, _shape.Batch * _shape.Positions * Spec.Hidden);
    }

    /// <summary>
    /// Backward of the last <see cref="Forward"/> from d(loss)/d(final hidden states) [B, m_p + T, d]:
    /// accumulates d(loss)/d(prompt) [m_p, d] and d(loss)/d(prefix) [L, 2, m, kvDim], each summed over the batch; under full
    /// fine-tuning also every weight's gradient, and with LoRA the A/B gradients, into the trainable parameters'
    /// gradient buffer (+=; the caller zeroes it per step).
    /// </summary>
    /// <param name="dHidden">d(loss)/d(final hidden states).</param>
    /// <param name="dPrompt">Where d(loss)/d(prompt) accumulates.</param>
    /// <param name="dPrefix">Where d(loss)/d(prefix) accumulates.</param>
    /// <param name="dPromptKeyValues">
    /// After a forward for <see cref="PromptKeyValues"/>: d(loss)/d(that prefix), taken into the prompt rows' keys and values
    /// of every layer, so that <paramref name="dPrompt"/> receives the shared prompt's gradient.
    /// </param>
    public void Backward(DeviceView<float> dHidden, DeviceView<float> dPrompt = default, DeviceView<float> dPrefix = default,
        DeviceView<float> dPromptKeyValues = default)
    {
        var a = _act ?? throw new InvalidOperationException("Backward before Forward");
        var shape = _shape;
        if (shape.PrefixAdapters != 1) throw new InvalidOperationException("Backward after a forward with a per-example adapter choice (inference only)");
        int d = Spec.Hidden, L = Spec.Layers, B = shape.Batch, T = shape.SeqLen, rows = B * shape.Positions;
        if (dHidden.Length != rows * d)
            throw new ArgumentException($"dHidden has {dHidden.Length} values, expected B·(m+T)·d = {B}·{shape.Positions}·{d} = {rows * d}");
        if (dPrompt.Length != shape.PromptLen * d)
            throw new ArgumentException($"dPrompt has {dPrompt.Length} values, expected m·d = {shape.PromptLen}·{d}");
        if (dPrefix.Length != shape.PrefixLen * 2 * L * Spec.KvDim)
            throw new ArgumentException($"dPrefix has {dPrefix.Length} values, expected L·2·m·kvDim = {L}·2·{shape.PrefixLen}·{Spec.KvDim}");
        var dx = a.DX.Slice(0, rows * d);
        var dr = a.DR.Slice(0, rows * d);
        var dh = a.DH.Slice(0, rows * d);
        _sublayers.SetPrefixGradient(dPrefix);
        _sublayers.SetPromptKeyValueGradient(dPromptKeyValues, shape.PromptLen);
        if (Spec.HasFinalNorm)
        {
            _backend.Zero(dx);
            _sublayers.Norm.Backward(dHidden, a.Hidden[L].Slice(0, rows * d), _w.FinalNormGamma, a.FinalMean!.Slice(0, rows),
                a.FinalRstd!.Slice(0, rows), dx, _g?.FinalNormGamma ?? default, _g?.FinalNormBeta ?? default, rows);
        }
        else _backend.Copy(dHidden, dx);
        for (int l = L - 1; l >= 0; l--)
        {
            // Recomputation: rebuild layer l's saved activations from its kept input (the last layer's are still there);
            // its output goes to dh, scratch that the block's backward overwrites before reading.
            if (a.Recompute && l < L - 1)
                _block.Forward(_sublayers, l, rows, a.Layers[l], a.Hidden[l].Slice(0, rows * d), dh);
            // Below layer 0 only a prompt or the embedding tables (full fine-tuning) need d(loss)/dx: a prefix-only step skips it.
            bool inputGradient = l > 0 || shape.PromptLen > 0 || _g is not null;
            _block.Backward(_sublayers, l, rows, a.Layers[l], a.Hidden[l].Slice(0, rows * d), dx, dr, dh, inputGradient);
        }
        _sublayers.SetPrefixGradient(default);
        _sublayers.SetPromptKeyValueGradient(default, 0);
        if (shape.PromptLen > 0)
            _backend.PrependBackward(dx, dPrompt, default, B, shape.PromptLen, T, d);
        if (_g is not null) EmbeddingBackward(shape, dx, dr, dh);
    }

    /// <summary>
    /// Full fine-tuning, after the layers: from d(loss)/d(layer-0 input) <paramref name="dx"/> back through the embedding
    /// norm, where the model has one (γ/β gradients), to the tables (scatter-add). <paramref name="scratch1"/>/<paramref name="scratch2"/> are free [rows, d] buffers.
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
        var dSum = dOut;
        if (Spec.EmbeddingNorm)
        {
            dSum = scratch1.Slice(0, tokRows * d);
            _backend.Zero(dSum);
            _sublayers.Norm.Backward(dOut, a.EmbeddingSum.Slice(0, tokRows * d), _w.EmbeddingNormGamma, a.EmbeddingMean.Slice(0, tokRows),
                a.EmbeddingRstd.Slice(0, tokRows), dSum, g.EmbeddingNormGamma, g.EmbeddingNormBeta, tokRows);
        }
        _backend.EmbeddingBackward(_ids!.Slice(0, tokRows), _types!.Slice(0, tokRows), _tokenPositions!.Slice(0, tokRows), dSum,
            g.WordEmbeddings.Fp32, g.PositionEmbeddings, g.TokenTypeEmbeddings, B, T, d);
    }

    private AttentionShape AttentionShape(ForwardShape s) => new(s.Batch, s.Positions, Spec.Heads, Spec.HeadSize, s.PrefixLen, Spec.KvHeads);

    /// <summary>
    /// Uploads the key mask over [prompt; tokens] (prompt rows always attended) and the positions: per token for the
    /// embedding table, per row for RoPE, and 0..m−1 for the prefix keys. Encoders number tokens as <see cref="TokenPositions"/> says;
    /// causal models continue after the prefix and prompt and skip padding (cumsum(mask) − 1, as generation does), so a
    /// left-padded example gets the same positions as unpadded.
    /// </summary>
    private void UploadMaskAndPositions(TokenBatch batch, ForwardShape s)
    {
        int B = s.Batch, T = s.SeqLen, S = s.Positions, m = s.PrefixLen, mp = s.PromptLen;
        var mask = new float[B * S];
        var tokenPositions = TokenPositions(batch, Spec, m + mp);
        var rowPositions = new int[B * S];
        for (int b = 0; b < B; b++)
        {
            mask.AsSpan(b * S, mp).Fill(1f);
            batch.Mask.AsSpan(b * T, T).CopyTo(mask.AsSpan(b * S + mp));
            for (int i = 0; i < mp; i++) rowPositions[b * S + i] = m + i;
            tokenPositions.AsSpan(b * T, T).CopyTo(rowPositions.AsSpan(b * S + mp));
        }
        _backend.Upload(mask, _mask!.Slice(0, mask.Length));
        _backend.Upload(tokenPositions, _tokenPositions!.Slice(0, tokenPositions.Length));
        _backend.Upload(rowPositions, _rowPositions!.Slice(0, rowPositions.Length));
    }

    /// <summary>
    /// Each token's position [B·T]: BERT encoders number 0..T−1; RoBERTa encoders (<see cref="ModelSpec.PositionPaddingId"/>
    /// p) count the real tokens from p + 1 and give padding p — p + cumsum(mask)·mask, the graph's rule on input_ids ≠ p,
    /// which is the same thing because our tokenizers and batches put the padding id exactly where the mask is 0; causal
    /// models start at <paramref name="offset"/> (the prefix and prompt before the input) and skip padding — offset +
    /// cumsum(mask) − 1, clipped at the offset — so a left-padded example reads as unpadded (the numbering Hugging Face
    /// generation feeds as position_ids). Encoders' token positions do not move with a prompt or prefix, which has none.
    /// </summary>
    public static int[] TokenPositions(TokenBatch batch, ModelSpec spec, int offset = 0)
    {
        int B = batch.Batch, T = batch.SeqLen;
        var p = new int[B * T];
        for (int b = 0; b < B; b++)
        {
            int seen = 0;
            for (int t = 0; t < T; t++)
            {
                bool real = batch.Mask[b * T + t] != 0;
                if (real) seen++;
                p[b * T + t] = spec.Causal ? offset + Math.Max(seen - 1, 0)
                    : spec.PositionPaddingId is { } pad ? (real ? pad + seen : pad)
                    : t;
            }
        }
        return p;
    }

    private static void CheckChoice(AdapterChoice choice, int batch, int injected, bool training)
    {
        if (training) throw new ArgumentException("a per-example adapter choice is for inference only; training runs one adapter per batch");
        if (choice.Adapters < 1 || injected == 0)
            throw new ArgumentException($"an adapter choice needs A ≥ 1 stacked prompts or prefixes (A = {choice.Adapters}, {injected} values given)");
        if (choice.Index.Length != batch)
            throw new ArgumentException($"adapter choice has {choice.Index.Length} entries for a batch of {batch}");
        for (int b = 0; b < batch; b++)
            if ((uint)choice.Index[b] >= (uint)choice.Adapters)
                throw new ArgumentException($"adapter choice of example {b} is {choice.Index[b]}, outside the {choice.Adapters} stacked adapters");
    }

    private void Prepare(ForwardShape shape)
    {
        if (_act is not null && _act.Fits(shape, Recompute)) return;
        _act?.Dispose();
        DisposeInputs();
        var cap = _act is null ? shape : ForwardShape.Max(_act.Capacity, shape);
        _act = new Activations(_backend, Spec, cap, _loraOptions?.Rank ?? 0, Recompute);
        _ids = _backend.AllocateInts(cap.Batch * cap.SeqLen);
        _types = _backend.AllocateInts(cap.Batch * cap.SeqLen);
        _tokenPositions = _backend.AllocateInts(cap.Batch * cap.SeqLen);
        _rowPositions = _backend.AllocateInts(cap.Batch * cap.Positions);
        _mask = _backend.Allocate(cap.Batch * cap.Positions);
        _choice = _backend.AllocateInts(cap.Batch);
    }

    /// <inheritdoc />
    public void Dispose()
    {
        _act?.Dispose();
        DisposeInputs();
        _sublayers.Dispose();
        if (_ownsWeights) _w.Dispose();
    }

    private void DisposeInputs()
    {
        _ids?.Dispose(); _types?.Dispose(); _mask?.Dispose();
        _tokenPositions?.Dispose(); _rowPositions?.Dispose(); _choice?.Dispose();
    }
}

/// <summary>One layer's LoRA tensors: value and gradient views of A [d, r] and B [r, d] for query and value.</summary>
internal sealed record LoraLayer(
    (DeviceView<float> Value, DeviceView<float> Gradient) QueryA, (DeviceView<float> Value, DeviceView<float> Gradient) QueryB,
    (DeviceView<float> Value, DeviceView<float> Gradient) ValueA, (DeviceView<float> Value, DeviceView<float> Gradient) ValueB);

/// <summary>The sizes of one forward: B, T real-token positions, m_p prompt rows, m prefix keys of each of A stacked prefixes.</summary>
internal readonly record struct ForwardShape(int Batch, int SeqLen, int PromptLen, int PrefixLen, int PrefixAdapters = 1)
{
    /// <summary>Prefix keys of all stacked prefixes: A·m.</summary>
    public int PrefixKeys => PrefixAdapters * PrefixLen;

    /// <summary>Query positions per example: prompt rows + tokens.</summary>
    public int Positions => PromptLen + SeqLen;

    public bool Fits(ForwardShape need) =>
        need.Batch <= Batch && need.SeqLen <= SeqLen && need.PromptLen <= PromptLen && need.PrefixLen <= PrefixLen &&
        need.PrefixKeys <= PrefixKeys;

    public static ForwardShape Max(ForwardShape a, ForwardShape b) =>
        new(Math.Max(a.Batch, b.Batch), Math.Max(a.SeqLen, b.SeqLen), Math.Max(a.PromptLen, b.PromptLen), Math.Max(a.PrefixLen, b.PrefixLen),
            Math.Max(a.PrefixAdapters, b.PrefixAdapters));
}
