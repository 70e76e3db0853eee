using SkTuning.Gpu.Data;
using SkTuning.Gpu.Engine;
using SkTuning.Gpu.Import;

namespace SkTuning.Gpu.Training;

/// <summary>
/// The trainable SK-Tuning model: semantic adapter (prompt or prefix) → frozen transformer → head. Only the
/// adapter and head have parameters; the transformer's weights are read-only and get no gradient.
/// </summary>
public sealed class SkTuningModel : ITunedPredictor
{
    private readonly TransformerEngine _engine;
    private readonly ModelWeights _weights;
    private DeviceArray<float>? _dHidden, _dInjection;
    // Causal models with prompt rows: the rows see only themselves, so they run once per step in their own engine and
    // the batch attends to their keys/values as a shared prefix (null otherwise).
    private readonly TransformerEngine? _promptEngine;
    private readonly DeviceArray<float>? _sharedPrefix, _dSharedPrefix, _promptZero;
    // Set by FixInjection: the adapter's inference output (prompt rows or prefix K/V), computed once and reused by every Predict.
    private DeviceView<float>? _fixedInjection;
    private static readonly TokenBatch PromptOnly = new(1, 1, [0], [0], [0f]);
    // Loss, gradient norm and clip scale of the last StepLogCapacity steps, written by the device and read by the host
    // only when it logs them: a step never waits for the device.
    private const int StepLogWidth = 3;
    private readonly DeviceArray<float> _stepLog;
    private long _steps;

    /// <summary>Builds the model; the caller initializes or loads <see cref="Parameters"/>.</summary>
    /// <param name="backend">Where everything runs.</param>
    /// <param name="spec">The frozen model's architecture.</param>
    /// <param name="weights">Its weights.</param>
    /// <param name="adapter">The semantic adapter, or null for a head-only linear probe.</param>
    /// <param name="head">The task head.</param>
    /// <param name="tuning">Whether the transformer itself trains: frozen (default), every weight, or LoRA on query/value.</param>
    /// <param name="sharedWeights">
    /// A frozen engine on the same backend whose uploaded weights this model reuses instead of uploading its own (frozen tuning
    /// only; ignored for full fine-tuning and LoRA, whose engines read trainable weights): several models over one frozen model.
    /// </param>
    public SkTuningModel(Backend backend, ModelSpec spec, ModelWeights weights, IAdapter? adapter, TaskHead head, EngineTuning? tuning = null,
        TransformerEngine? sharedWeights = null)
    {
        Backend = backend;
        Adapter = adapter;
        Head = head;
        _weights = weights;
        Tuning = tuning ?? EngineTuning.Frozen;
        var engineTensors = Tuning.Full ? EngineParameters.WeightTensors(spec)
            : Tuning.Lora is { } lora ? EngineParameters.LoraTensors(spec, lora.Rank) : [];
        var tensors = (adapter?.Tensors() ?? []).Concat(head.Tensors()).Concat(engineTensors);
        Parameters = new TrainableParameters(backend, tensors);
        _engine = Tuning.Full ? new TransformerEngine(backend, spec, Parameters)
            : Tuning.Lora is { } options ? new TransformerEngine(backend, spec, weights, Parameters, options)
            : sharedWeights is not null ? new TransformerEngine(sharedWeights)
            : new TransformerEngine(backend, spec, weights);
        _dInjection = adapter is null ? null : backend.Allocate(adapter.OutputLength);
        _stepLog = backend.Allocate(StepLogCapacity * StepLogWidth);
        if (spec.Causal && adapter?.Kind == AdapterKind.Prompt && !Tuning.Full && Tuning.Lora is null)
        {
            _promptEngine = new TransformerEngine(_engine);
            _sharedPrefix = backend.Allocate(2 * spec.Layers * adapter.Tokens * spec.KvDim);
            _dSharedPrefix = backend.Allocate(_sharedPrefix.Length);
            _promptZero = backend.Allocate((adapter.Tokens + 1) * spec.Hidden);
        }
    }

    /// <summary>How many steps' loss and gradient norm the device keeps (<see cref="ReadSteps"/>) before overwriting the oldest.</summary>
    public const int StepLogCapacity = 64;

    /// <summary>
    /// Activation recomputation in the batch's engine (<see cref="TransformerEngine.Recompute"/>; the shared-prompt engine
    /// runs m rows and keeps its activations).
    /// </summary>
    public bool Recompute
    {
        get => _engine.Recompute;
        set => _engine.Recompute = value;
    }

    /// <summary>Whether the prompt rows run once per step as a prefix shared by the batch (causal models).</summary>
    public bool SharesPrompt => _promptEngine is not null;

    /// <summary>The backend.</summary>
    public Backend Backend { get; }

    /// <summary>The adapter (null for a linear probe).</summary>
    public IAdapter? Adapter { get; }

    /// <summary>The head.</summary>
    public TaskHead Head { get; }

    /// <summary>Whether and how the transformer's own weights train.</summary>
    public EngineTuning Tuning { get; }

    /// <summary>All trainable tensors.</summary>
    public TrainableParameters Parameters { get; }

    /// <summary>Initializes adapter and head (deterministic in the seed).</summary>
    public void Initialize(int seed)
    {
        var rng = new Random(seed);
        Adapter?.Initialize(Parameters, rng);
        Head.Initialize(Parameters, rng);
        if (Tuning.Full) EngineParameters.CopyPretrained(_weights, Parameters);
        if (Tuning.Lora is { } lora) EngineParameters.InitializeLora(_engine.Spec, lora.Rank, Parameters, rng);
    }

    private int PromptRows => Adapter?.Kind == AdapterKind.Prompt && !SharesPrompt ? Adapter.Tokens : 0;

    /// <summary>
    /// Computes the adapter's inference output (SK-Prefix K/V, SK-Prompt rows; for causal models the prompt rows' K/V) once, for
    /// every later <see cref="Predict"/> to reuse: after training it is a constant. The model is then for inference only.
    /// </summary>
    public void FixInjection()
    {
        if (_fixedInjection is not null || Adapter is null) return;
        var injection = Adapter.Forward(Parameters, training: false, 0);
        if (_promptEngine is not null)
        {
            _promptEngine.Forward(PromptOnly, prompt: injection, training: false, seed: 0);
            _promptEngine.PromptKeyValues(_sharedPrefix!.All);
            injection = _sharedPrefix.All;
        }
        _fixedInjection = injection;
    }

    /// <summary>
    /// The adapter's inference output on the host (after <see cref="FixInjection"/>), as the engine consumes it: prompt rows
    /// [m_p, d] prepended after the embedding layer, or a prefix [L, 2, m, kvDim] with unrotated keys (for causal models'
    /// shared prompt: the prompt rows' keys and values). Both empty without an adapter.
    /// </summary>
    public (float[] Prompt, float[] Prefix) InferenceInjection()
    {
        FixInjection();
        if (_fixedInjection is not { } injection) return ([], []);
        var host = Backend.ToHost(injection);
        return PromptRows > 0 ? (host, []) : ([], host);
    }

    /// <summary>
    /// For serving several runs in one batch (<see cref="TransformerEngine.Forward"/> with an <see cref="AdapterChoice"/>):
    /// what this model feeds a frozen engine after <see cref="FixInjection"/> — prompt rows [m_p, d] (SK-Prompt on encoders)
    /// or a prefix [L, 2, m, kvDim] (SK-Prefix; SK-Prompt on causal models, whose prompt rows' keys/values run as a
    /// prefix) — with the adapter's kind. Null when its rows cannot share a batch with other runs': no fixed injection yet,
    /// a linear probe, or LoRA / full fine-tuning, whose engines read their own weights.
    /// </summary>
    internal (AdapterKind Kind, bool Prompt, DeviceView<float> Values)? MixableInjection =>
        _fixedInjection is { } injection && Adapter is not null && Tuning == EngineTuning.Frozen
            ? (Adapter.Kind, PromptRows > 0, injection) : null;

    /// <summary>Head outputs on the host for hidden states a frozen engine computed for <paramref name="batch"/> with this model's injection.</summary>
    internal float[] PredictHead(DeviceView<float> hidden, TokenBatch batch) => Head.Predict(Parameters, hidden, batch, PromptRows);

    private DeviceView<float> Run(TokenBatch batch, bool training, ulong seed)
    {
        if (_fixedInjection is { } fixedInjection)
        {
            if (training) throw new InvalidOperationException("the adapter's output was fixed for inference; the model no longer trains");
            return Adapter!.Kind == AdapterKind.Prompt && _promptEngine is null
                ? _engine.Forward(batch, prompt: fixedInjection, training: false, seed: seed)
                : _engine.Forward(batch, prefix: fixedInjection, training: false, seed: seed);
        }
        var injection = Adapter?.Forward(Parameters, training, seed) ?? default;
        if (_promptEngine is not null)
        {
            // The prompt alone (behind a fully padded dummy token, which no prompt row sees), then its keys/values as the prefix.
            _promptEngine.Forward(PromptOnly, prompt: injection, training: training, seed: seed);
            _promptEngine.PromptKeyValues(_sharedPrefix!.All);
            return _engine.Forward(batch, prefix: _sharedPrefix.All, training: training, seed: seed);
        }
        return Adapter?.Kind == AdapterKind.Prompt
            ? _engine.Forward(batch, prompt: injection, training: training, seed: seed)
            : _engine.Forward(batch, prefix: injection, training: training, seed: seed);
    }

    /// <summary>
    /// One forward and backward: zeroes the gradients, then accumulates d(loss)/d(every trainable tensor). Returns the loss,
    /// still on the device (a non-finite loss gives a non-finite gradient norm: <see cref="OptimizerStep"/> then skips the update).
    /// </summary>
    public DeviceScalar ForwardBackward(TokenBatch batch, HeadTargets targets, ulong seed)
    {
        Backend.BeginStep();
        try
        {
            return StepForwardBackward(batch, targets, seed);
        }
        finally
        {
            Backend.EndStep();
        }
    }

    private DeviceScalar StepForwardBackward(TokenBatch batch, HeadTargets targets, ulong seed)
    {
        var loss = StepSlot(_steps++, 0);
        Parameters.ZeroGradients();
        var hidden = Run(batch, training: true, seed);
        if (_dHidden is null || _dHidden.Length < hidden.Length)
        {
            _dHidden?.Dispose();
            _dHidden = Backend.Allocate(hidden.Length);
        }
        var dHidden = _dHidden.Slice(0, hidden.Length);
        Backend.Zero(dHidden);
        Head.Loss(Parameters, hidden, batch, PromptRows, targets, training: true, seed ^ 0x5DEECE66DUL, dHidden, loss);
        var result = new DeviceScalar(Backend, loss);
        if (Adapter is null)
        {
            // Linear probe: nothing below the head trains. Full fine-tuning and LoRA: the engine's backward fills their gradients.
            if (_engine.TrainsWeights || Tuning.Lora is not null) _engine.Backward(dHidden);
            return result;
        }
        var dInjection = _dInjection!.All;
        Backend.Zero(dInjection);
        if (_promptEngine is not null)
        {
            Backend.Zero(_dSharedPrefix!.All);
            _engine.Backward(dHidden, dPrefix: _dSharedPrefix.All);
            _promptEngine.Backward(_promptZero!.All, dPrompt: dInjection, dPromptKeyValues: _dSharedPrefix.All);
        }
        else if (Adapter.Kind == AdapterKind.Prompt) _engine.Backward(dHidden, dPrompt: dInjection);
        else _engine.Backward(dHidden, dPrefix: dInjection);
        Adapter.Backward(Parameters, dInjection);
        return result;
    }

    /// <summary>
    /// One fused AdamW update of every trainable tensor from the gradients of the last <see cref="ForwardBackward"/>,
    /// after scaling them to a global L2 norm of at most <paramref name="maxGradNorm"/>; a non-finite norm skips the update.
    /// The norm and clip factor are computed and used on the device; returns the norm before clipping, still on the device.
    /// </summary>
    public DeviceScalar OptimizerStep(float learningRate, float weightDecay, float maxGradNorm, int step)
    {
        var p = Parameters;
        long last = Math.Max(0, _steps - 1);
        DeviceView<float> norm = StepSlot(last, 1), clipScale = StepSlot(last, 2);
        Backend.GradientClip(p.Gradients.All, maxGradNorm, norm, clipScale);
        Backend.AdamW(p.Values.All, p.Gradients.All, p.AdamM.All, p.AdamV.All,
            new Kernels.AdamWStep(learningRate, 0.9f, 0.999f, 1e-8f, weightDecay, step), clipScale);
        return new DeviceScalar(Backend, norm);
    }

    private DeviceView<float> StepSlot(long step, int field) => _stepLog.Slice((int)(step % StepLogCapacity) * StepLogWidth + field, 1);

    /// <summary>
    /// The loss and gradient norm of the last <paramref name="count"/> steps (oldest first), with one wait for the device.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">More steps than were run or than <see cref="StepLogCapacity"/> keeps.</exception>
    public (float Loss, float GradientNorm)[] ReadSteps(int count)
    {
        ArgumentOutOfRangeException.ThrowIfGreaterThan(count, (int)Math.Min(_steps, StepLogCapacity));
        var log = Backend.ToHost(_stepLog.All);
        var steps = new (float, float)[count];
        for (int i = 0; i < count; i++)
        {
            int o = (int)((_steps - count + i) % StepLogCapacity) * StepLogWidth;
            steps[i] = (log[o], log[o + 1]);
        }
        return steps;
    }

    /// <summary>Head outputs on the host: logits [B, C], values [B, 1], or token logits [B·(m_p+T), C].</summary>
    public float[] Predict(TokenBatch batch) => Head.Predict(Parameters, Run(batch, training: false, 0), batch, PromptRows);

    /// <summary>Prompt rows before the tokens in token-level outputs.</summary>
    public int SkipRows => PromptRows;

    /// <inheritdoc />
    TaskKind ITunedPredictor.Kind => Head.Kind;

    /// <inheritdoc />
    int ITunedPredictor.Classes => Head.Classes;

    /// <inheritdoc />
    public void Dispose()
    {
        _dHidden?.Dispose();
        _dInjection?.Dispose();
        _stepLog.Dispose();
        _sharedPrefix?.Dispose(); _dSharedPrefix?.Dispose(); _promptZero?.Dispose();
        _promptEngine?.Dispose();
        Parameters.Dispose();
        Head.Dispose();
        Adapter?.Dispose();
        _engine.Dispose();
    }
}

/// <summary>Whether the transformer's own weights train alongside the adapter and head.</summary>
/// <param name="Full">Every weight trains (full fine-tuning).</param>
/// <param name="Lora">LoRA on the query and value maps, or null.</param>
public sealed record EngineTuning(bool Full, LoraOptions? Lora)
{
    /// <summary>The frozen model (SK-Tuning and the prompt/prefix baselines).</summary>
    public static EngineTuning Frozen { get; } = new(false, null);

    /// <summary>Full fine-tuning.</summary>
    public static EngineTuning AllWeights { get; } = new(true, null);

    /// <summary>LoRA with the given options.</summary>
    public static EngineTuning WithLora(LoraOptions options) => new(false, options);
}
