using SkTuning.Gpu.Data;

namespace SkTuning.Gpu.Training;

/// <summary>
/// Everything that defines a training run. Defaults are the ones chosen on SST-2 with MiniLM (README,
/// "Defaults"): SK-Prefix in per-layer mode started from the frozen model's own key/value maps, 2000 steps of 32,
/// AdamW lr 2e-3, weight decay 0.01, warmup 50 steps then linear decay to 0, dropout 0.1, gradient-norm clip 1.
/// </summary>
public sealed record TrainOptions
{
    /// <summary>The method: sk-prefix, sk-prompt, or a baseline (linear, prompt, prefix, ptuning-v2, lora, full).</summary>
    public string Method { get; init; } = "sk-prefix";

    /// <summary>For SK methods: prompt (sk-prompt) or prefix (sk-prefix).</summary>
    [System.Text.Json.Serialization.JsonIgnore]
    public AdapterKind Kind => Method == "sk-prompt" ? AdapterKind.Prompt : AdapterKind.Prefix;

    /// <summary>Baselines' virtual tokens / prefix length (0 = the semantic text's length, so methods compare at the same m).</summary>
    public int Tokens { get; init; }

    /// <summary>Prompt tuning's init: the semantic text's embedding outputs (PEFT's TEXT init), sampled vocabulary, or random.</summary>
    public Baselines.PromptInit PromptInit { get; init; } = Baselines.PromptInit.Text;

    /// <summary>LoRA rank r (query and value maps).</summary>
    public int LoraRank { get; init; } = 8;

    /// <summary>LoRA scale numerator α (updates scaled by α/r).</summary>
    public float LoraAlpha { get; init; } = 16f;

    /// <summary>LoRA dropout on the layer input.</summary>
    public float LoraDropout { get; init; } = 0.1f;

    /// <summary>Prefix tuning's reparameterization width h.</summary>
    public int PrefixHidden { get; init; } = Baselines.PrefixTuningAdapter.DefaultHidden;

    /// <summary>Adapter mode.</summary>
    public AdapterMode Mode { get; init; } = AdapterMode.PerLayer;

    /// <summary>SK-Prompt source states: the last layer (default) or the embedding output.</summary>
    public PromptSource PromptSource { get; init; } = PromptSource.Last;

    /// <summary>How the adapter starts: random, or from the frozen model's own maps.</summary>
    public AdapterInit Init { get; init; } = AdapterInit.Model;

    /// <summary>The semantic text the frozen model reads zero-shot.</summary>
    public string SemanticText { get; init; } = "Classify the sentiment of the text as positive or negative.";

    /// <summary>Sequence pooling for sequence-level heads; null: the family's default (<see cref="DefaultPooling"/>).</summary>
    public Pooling? Pooling { get; init; }

    /// <summary>The pooling a model family reads a sequence with by default: the last real token for causal decoders, the mean otherwise.</summary>
    public static Pooling DefaultPooling(Import.ModelSpec spec) => spec.Causal ? Training.Pooling.Last : Training.Pooling.Mean;

    /// <summary>Training steps (optimizer updates).</summary>
    public int Steps { get; init; } = 2000;

    /// <summary>Examples per step.</summary>
    public int BatchSize { get; init; } = 32;

    /// <summary>Peak learning rate.</summary>
    public float LearningRate { get; init; } = 2e-3f;

    /// <summary>Linear warmup steps from 0 to the peak.</summary>
    public int WarmupSteps { get; init; } = 50;

    /// <summary>Decoupled weight decay.</summary>
    public float WeightDecay { get; init; } = 0.01f;

    /// <summary>Global gradient-norm clip.</summary>
    public float MaxGradNorm { get; init; } = 1f;

    /// <summary>Dropout on the prompt/prefix and before the head, in training.</summary>
    public float Dropout { get; init; } = 0.1f;

    /// <summary>Seed of initialization, data order and dropout.</summary>
    public int Seed { get; init; } = 42;

    /// <summary>Evaluate on dev every this many steps (and at the end).</summary>
    public int EvalEvery { get; init; } = 250;

    /// <summary>Stop after this many evaluations without improvement (0 = never).</summary>
    public int Patience { get; init; } = 0;

    /// <summary>Write a resumable checkpoint every this many steps (0 = only at evaluations and the end).</summary>
    public int CheckpointEvery { get; init; } = 0;

    /// <summary>
    /// Whether a finished run keeps its resume state (parameters and AdamW moments, three times the trainable
    /// parameters' size) in <c>checkpoint/</c>. The best adapter and metrics stay either way; without the state,
    /// <c>--resume</c> says the run finished and has nothing to resume.
    /// </summary>
    public bool KeepCheckpoint { get; init; } = true;

    /// <summary>
    /// Activation recomputation (<c>--recompute</c>, <see cref="Engine.TransformerEngine.Recompute"/>): keep only each
    /// layer's input and rerun the layer's forward in the backward — about one more forward per step for activation
    /// memory that no longer grows with the layer count; the gradients are the same bits.
    /// </summary>
    public bool Recompute { get; init; }

    /// <summary>The largest <see cref="BatchSize"/>: well past any useful batch, and far from the int overflow of B·T·d buffers.</summary>
    public const int MaxBatchSize = 4096;

    /// <summary>
    /// Refuses values no run can use (NaN, negative counts, an unbounded batch) with a one-line error naming the
    /// command-line option and its valid range, before any model is loaded.
    /// </summary>
    /// <exception cref="SkTuningException">The first invalid option.</exception>
    public void Validate()
    {
        static string V(double v) => v.ToString(System.Globalization.CultureInfo.InvariantCulture);
        static void Require(bool ok, string option, double value, string rule)
        {
            if (!ok) throw new SkTuningException($"{option} {V(value)}: {rule}");
        }
        Require(Steps > 0, "--steps", Steps, "must be positive");
        Require(BatchSize > 0, "--batch", BatchSize, "must be positive");
        Require(BatchSize <= MaxBatchSize, "--batch", BatchSize, $"at most {MaxBatchSize} examples per step");
        Require(EvalEvery > 0, "--eval-every", EvalEvery, "must be positive");
        Require(LearningRate >= 0 && float.IsFinite(LearningRate), "--lr", LearningRate, "must be a finite number, 0 or more (0 leaves the weights as initialized)");
        Require(WeightDecay >= 0 && float.IsFinite(WeightDecay), "--weight-decay", WeightDecay, "must be a finite number, 0 or more");
        Require(MaxGradNorm > 0 && float.IsFinite(MaxGradNorm), "--clip", MaxGradNorm, "must be a positive finite number (the largest global gradient norm)");
        Require(Dropout is >= 0 and < 1, "--dropout", Dropout, "must be in [0, 1)");
        Require(WarmupSteps >= 0, "--warmup", WarmupSteps, "must be 0 or more");
        Require(Patience >= 0, "--patience", Patience, "must be 0 or more (0 = no early stop)");
        Require(CheckpointEvery >= 0, "--checkpoint-every", CheckpointEvery, "must be 0 or more (0 = at evaluations)");
    }
}

/// <summary>Which zero-shot states SK-Prompt maps: the last layer's or the embedding output (paper Figure 1b).</summary>
public enum PromptSource
{
    /// <summary>Last layer.</summary>
    Last,
    /// <summary>Embedding output (after the embedding LayerNorm).</summary>
    Embedding,
}

/// <summary>The learning rate at a step: linear warmup to the peak, then linear decay to 0 at the last step.</summary>
public static class LearningRateSchedule
{
    /// <summary>lr at 1-based <paramref name="step"/>.</summary>
    public static float At(int step, int totalSteps, int warmupSteps, float peak)
    {
        if (step <= warmupSteps && warmupSteps > 0) return peak * step / warmupSteps;
        int decaySteps = Math.Max(1, totalSteps - warmupSteps);
        return peak * Math.Max(0f, (float)(totalSteps - step) / decaySteps);
    }
}
