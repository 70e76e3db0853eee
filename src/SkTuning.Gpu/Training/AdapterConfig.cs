using SkTuning.Gpu.Data;

namespace SkTuning.Gpu.Training;

/// <summary>
/// <c>adapter_config.json</c>: everything needed to rebuild a trained model from its run folder — method,
/// semantic text, the frozen model's identity, the task and its labels, sizes and hyperparameters.
/// </summary>
public sealed record AdapterConfig
{
    /// <summary>"sk-prefix", "sk-prompt" or "linear" (head only).</summary>
    public required string Method { get; init; }

    /// <summary>Adapter mode (token, pooled, per-layer).</summary>
    public required AdapterMode Mode { get; init; }

    /// <summary>SK-Prompt's source states.</summary>
    public PromptSource PromptSource { get; init; } = PromptSource.Last;

    /// <summary>The semantic text.</summary>
    public required string SemanticText { get; init; }

    /// <summary>m, its length in tokens.</summary>
    public required int SemanticTokens { get; init; }

    /// <summary>The adapter's rows: m for SK methods, the virtual tokens / prefix length of baselines.</summary>
    public required int Tokens { get; init; }

    /// <summary>The --model the run used (catalog name or path).</summary>
    public required string Model { get; init; }

    /// <summary>SHA-256 of the frozen model's ONNX file.</summary>
    public required string ModelHash { get; init; }

    /// <summary>Task name (a catalog task or "custom").</summary>
    public required string Task { get; init; }

    /// <summary>For custom tasks: how to read the data.</summary>
    public CustomTaskOptions? CustomTask { get; init; }

    /// <summary>Classification, regression or token classification.</summary>
    public required TaskKind TaskKind { get; init; }

    /// <summary>The labels as the training data spells them, in id order (null for regression).</summary>
    public string[]? Labels { get; init; }

    /// <summary>
    /// The labels' names in id order, as predictions show them ("negative", "positive" for SST-2, whose files hold 0 and
    /// 1; the data's own spelling where it names its classes). Null for regression and in runs written before names were
    /// kept: those show <see cref="Labels"/>.
    /// </summary>
    public string[]? LabelNames { get; init; }

    /// <summary>Whether the model reads sentence pairs (text and second text); null in runs written before this was kept.</summary>
    public bool? TextPairs { get; init; }

    /// <summary>The name predictions show for class or tag <paramref name="id"/>: its <see cref="LabelNames"/> entry, else its <see cref="Labels"/> entry.</summary>
    public string LabelName(int id) => (LabelNames ?? Labels)![id];

    /// <summary>Sequence pooling.</summary>
    public Pooling Pooling { get; init; } = Pooling.Mean;

    /// <summary>Head outputs (classes, or 1).</summary>
    public required int Classes { get; init; }

    /// <summary>d.</summary>
    public required int Dim { get; init; }

    /// <summary>L.</summary>
    public required int Layers { get; init; }

    /// <summary>Longest input in tokens (longer rows are truncated).</summary>
    public required int MaxTokens { get; init; }

    /// <summary>The primary dev metric.</summary>
    public required string PrimaryMetric { get; init; }

    /// <summary>Trainable values (adapter + head).</summary>
    public required long TrainableParameters { get; init; }

    /// <summary>The frozen model's parameter count.</summary>
    public required long ModelParameters { get; init; }

    /// <summary>The training hyperparameters.</summary>
    public required TrainOptions Training { get; init; }

    /// <summary>
    /// How the frozen weight matrices were stored in training (<c>--weights</c>: fp32 or bf16); eval, predict, export and
    /// <see cref="SkTuner"/> use the same unless told otherwise. Runs written before this field read as fp32.
    /// </summary>
    public string Weights { get; init; } = "fp32";

    /// <summary>The adapter's kind, from the method name.</summary>
    [System.Text.Json.Serialization.JsonIgnore]
    public AdapterKind? AdapterKind => Method switch
    {
        "sk-prefix" => SkTuning.Gpu.Training.AdapterKind.Prefix,
        "sk-prompt" => SkTuning.Gpu.Training.AdapterKind.Prompt,
        _ => null,
    };

    /// <summary>
    /// Refuses an input the model was not trained to read: a second text for a single-text run (it would be silently
    /// ignored), or none for a pair run (half its input). Runs written before <see cref="TextPairs"/> was kept are not
    /// checked. <paramref name="source"/> names the input in the one-line error.
    /// </summary>
    /// <exception cref="SkTuningException">The input does not match the run's task.</exception>
    public void CheckInput(string? pair, string source)
    {
        if (pair is not null && TextPairs == false)
            throw new SkTuningException($"{source}: a second text (pair) was given, but the run's task {Task} reads single texts");
        if (pair is null && TextPairs == true)
            throw new SkTuningException($"{source}: the run's task {Task} reads sentence pairs; give the second text too (--pair, or text<TAB>pair lines in --file)");
    }

    /// <summary>
    /// Checks what a reader relies on beyond the JSON's types: a label name for every class the head outputs, and
    /// positive sizes. <paramref name="path"/> names the file in the one-line error.
    /// </summary>
    /// <exception cref="SkTuningException">The configuration cannot describe a working model.</exception>
    public void Validate(string path)
    {
        if (TaskKind != TaskKind.Regression && Labels?.Length != Classes)
            throw new SkTuningException($"{path}: labels has {Labels?.Length ?? 0} names but the head has {Classes} classes; the file is damaged (retrain the run)");
        if (LabelNames is not null && LabelNames.Length != Classes)
            throw new SkTuningException($"{path}: label_names has {LabelNames.Length} names but the head has {Classes} classes; the file is damaged (retrain the run)");
        if (Classes < 1 || Dim < 1 || Layers < 1 || MaxTokens < 1 || SemanticTokens < 0 || Tokens < 0)
            throw new SkTuningException($"{path}: classes, dim, layers, max_tokens must be positive and tokens, semantic_tokens not negative; the file is damaged (retrain the run)");
    }

}
