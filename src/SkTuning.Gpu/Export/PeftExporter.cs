using System.Text.Json;
using SkTuning.Gpu.Data;
using SkTuning.Gpu.Engine;
using SkTuning.Gpu.Import;
using SkTuning.Gpu.Kernels;
using SkTuning.Gpu.Runs;
using SkTuning.Gpu.Training;

namespace SkTuning.Gpu.Export;

/// <summary>What an export wrote.</summary>
/// <param name="PeftType">PREFIX_TUNING, PROMPT_TUNING or LORA.</param>
/// <param name="Directory">The export folder.</param>
/// <param name="Adapter">The tensors of <c>adapter_model.safetensors</c>.</param>
/// <param name="Config">The entries of <c>adapter_config.json</c>.</param>
public sealed record PeftExport(string PeftType, string Directory, IReadOnlyDictionary<string, NamedTensor> Adapter,
    IReadOnlyDictionary<string, object?> Config);

/// <summary>
/// <c>sktune export --format peft</c>: writes a trained run as a Hugging Face PEFT adapter folder for the bare backbone
/// (<c>AutoModel</c>, task type FEATURE_EXTRACTION) — <c>adapter_config.json</c>, <c>adapter_model.safetensors</c> — plus
/// the task head (<c>head.safetensors</c>) and a <c>README.md</c> saying how to apply it. Prefix methods (SK-Prefix,
/// prefix tuning, P-tuning v2) become PREFIX_TUNING with the computed prefix (constant after training; keys rotated to
/// positions 0..m−1 for RoPE models, as Hugging Face's cache holds them); prompt methods PROMPT_TUNING where PEFT's
/// semantics can reproduce ours; LoRA becomes LORA.
/// </summary>
public static class PeftExporter
{
    /// <summary>The adapter's file name in the export folder.</summary>
    public const string AdapterFileName = "adapter_model.safetensors";

    /// <summary>The PEFT configuration's file name.</summary>
    public const string ConfigFileName = "adapter_config.json";

    /// <summary>The head's file name.</summary>
    public const string HeadFileName = "head.safetensors";

    /// <summary>Exports the run in <paramref name="runDirectory"/> to <paramref name="outDirectory"/> (created or reused).</summary>
    /// <param name="runDirectory">A run folder written by training.</param>
    /// <param name="outDirectory">The export folder.</param>
    /// <param name="model">The frozen model (default: the one the run names); its hash must match the adapter's.</param>
    /// <param name="baseModel">base_model_name_or_path (default: the Hugging Face id of a catalog model, else the run's --model).</param>
    /// <param name="log">One-line messages.</param>
    /// <exception cref="SkTuningException">Not a run folder, a model whose hash differs, or a method PEFT cannot express.</exception>
    public static PeftExport Export(string runDirectory, string outDirectory, string? model = null, string? baseModel = null, Action<string>? log = null)
    {
        var run = RunFolder.Open(runDirectory);
        var config = run.ReadConfig<AdapterConfig>();
        config.Validate(run.ConfigPath);
        var frozen = FrozenModel.Load(model ?? config.Model);
        var weights = run.ReadAdapter(expectedModelHash: frozen.Hash);
        var spec = frozen.Spec;
        var kind = Training.Baselines.MethodCatalog.Get(config.Method).Kind;
        string peftType = config.Method == "lora" ? "LORA"
            : kind == AdapterKind.Prefix ? "PREFIX_TUNING"
            : kind == AdapterKind.Prompt ? "PROMPT_TUNING"
            : throw new SkTuningException($"{run.ConfigPath}: method '{config.Method}' has no PEFT adapter form (PEFT covers prefix, prompt and LoRA methods); export it with --format onnx");
        if (peftType == "PROMPT_TUNING" && PromptMismatch(spec) is { } why)
            throw new SkTuningException($"{run.ConfigPath}: a {spec.Family} prompt cannot be written as PEFT PROMPT_TUNING: {why}");
        if (peftType == "LORA" && PeftLayout.LoraModules(spec.Family, 0) is null)
            throw new SkTuningException($"{run.ConfigPath}: LoRA on {spec.Family} sits on a fused q|k|v projection, which PEFT's LoRA on query/value cannot express");

        var common = new Dictionary<string, object?>
        {
            ["base_model_name_or_path"] = baseModel ?? PeftLayout.HubId(config.Model) ?? config.Model,
            ["revision"] = null,
            ["task_type"] = "FEATURE_EXTRACTION",
            ["inference_mode"] = true,
        };
        var (adapter, peftConfig) = peftType switch
        {
            "LORA" => Lora(config, spec, weights.Tensors),
            _ => PromptLearning(peftType, config, frozen, weights),
        };
        foreach (var (k, v) in common) peftConfig[k] = v;
        peftConfig["peft_type"] = peftType;

        Directory.CreateDirectory(outDirectory);
        SafeTensors.Write(Path.Combine(outDirectory, AdapterFileName), adapter, new Dictionary<string, string> { ["format"] = "pt" });
        AtomicFile.WriteAllText(Path.Combine(outDirectory, ConfigFileName),
            JsonSerializer.Serialize(peftConfig.OrderBy(e => e.Key, StringComparer.Ordinal).ToDictionary(), new JsonSerializerOptions { WriteIndented = true }) + "\n");
        SafeTensors.Write(Path.Combine(outDirectory, HeadFileName), Head(config, weights.Tensors), HeadMetadata(config));
        AtomicFile.WriteAllText(Path.Combine(outDirectory, "README.md"), PeftReadme.Write(peftType, config, spec, (string)common["base_model_name_or_path"]!));
        log?.Invoke($"wrote {peftType} adapter ({adapter.Values.Sum(t => t.ElementCount):N0} values) and head to {outDirectory}");
        return new PeftExport(peftType, outDirectory, adapter, peftConfig);
    }

    /// <summary>
    /// Why PEFT's prompt tuning (rows concatenated to the word embeddings, before position embeddings and the embedding
    /// norm) cannot reproduce our prompt rows (prepended after the whole embedding layer) — or null where it can: models
    /// without an embedding norm; GPT-2's learned positions are undone by exporting P − wpe[0..m−1].
    /// </summary>
    public static string? PromptMismatch(ModelSpec spec) =>
        spec.EmbeddingNorm
            ? "PEFT adds prompt rows before the embedding LayerNorm (and position embeddings), ours enter after it, and a LayerNorm has no inverse"
            : !spec.Causal ? "PEFT's prompt rows take positions 0..m−1 and push the tokens to m.., ours keep the tokens at 0..T−1"
            : null;

    private static (Dictionary<string, NamedTensor>, Dictionary<string, object?>) PromptLearning(string peftType, AdapterConfig config,
        FrozenModel frozen, AdapterWeights weights)
    {
        var spec = frozen.Spec;
        float[] output;
        int m;
        using (var backend = new CpuBackend(BackendFactory.ParsePrecision(config.Weights)))
        using (var tuned = TunedModelBuilder.Build(frozen, config, backend, log: null))
        {
            tuned.Parameters.Import(tuned.Parameters.Values, weights.Tensors, weights.Source);
            var adapter = tuned.Adapter!;
            m = adapter.Tokens;
            output = backend.ToHost(adapter.Forward(tuned.Parameters, training: false, seed: 0));
        }
        var cfg = new Dictionary<string, object?>
        {
            ["num_virtual_tokens"] = m,
            ["num_layers"] = spec.Layers,
            ["num_transformer_submodules"] = 1,
            ["modules_to_save"] = null,
        };
        if (peftType == "PREFIX_TUNING")
        {
            if (spec.Positions == PositionKind.Rope) RotatePrefixKeys(output, spec, m);
            cfg["token_dim"] = spec.KvDim;
            cfg["num_attention_heads"] = spec.KvHeads;
            cfg["encoder_hidden_size"] = spec.KvDim;
            cfg["prefix_projection"] = false;
            var embeddings = PeftLayout.PrefixEmbeddings(output, spec.Layers, m, spec.KvDim);
            return (new() { ["prompt_embeddings"] = new NamedTensor([m, 2 * spec.Layers * spec.KvDim], embeddings) }, cfg);
        }
        if (spec.Positions == PositionKind.Absolute) SubtractPositions(output, frozen.Weights.Embeddings.Position, spec.Hidden, m);
        cfg["token_dim"] = spec.Hidden;
        cfg["num_attention_heads"] = spec.Heads;
        cfg["prompt_tuning_init"] = "RANDOM";
        cfg["prompt_tuning_init_text"] = null;
        cfg["tokenizer_name_or_path"] = null;
        cfg["tokenizer_kwargs"] = null;
        return (new() { ["prompt_embeddings"] = new NamedTensor([m, spec.Hidden], output) }, cfg);
    }

    /// <summary>
    /// Turns the prefix's keys [L, 2, m, kvDim] (IN PLACE) from the unrotated form the engine takes to the rotated form
    /// Hugging Face's cache holds: each layer's m keys turned to positions 0..m−1, as the engine does before attention.
    /// </summary>
    public static void RotatePrefixKeys(Span<float> prefix, ModelSpec spec, int tokens)
    {
        var (cos, sin) = Rope.Tables(tokens, spec.RotaryDim, spec.RopeTheta);
        var positions = Enumerable.Range(0, tokens).ToArray();
        int block = tokens * spec.KvDim;
        for (int l = 0; l < spec.Layers; l++)
            Rope.Forward(prefix.Slice(2 * l * block, block), positions, cos, sin, tokens, spec.KvDim, spec.KvHeads, spec.HeadSize, spec.RotaryDim);
    }

    /// <summary>rows[i] −= position[i] for i &lt; m (IN PLACE): GPT-2 adds wpe[i] to PEFT's prompt row i, which ours never had.</summary>
    private static void SubtractPositions(Span<float> rows, ReadOnlySpan<float> positionTable, int dim, int tokens)
    {
        for (int i = 0; i < tokens * dim; i++) rows[i] -= positionTable[i];
    }

    private static (Dictionary<string, NamedTensor>, Dictionary<string, object?>) Lora(AdapterConfig config, ModelSpec spec,
        IReadOnlyDictionary<string, NamedTensor> tensors)
    {
        var o = config.Training;
        int r = o.LoraRank, d = spec.Hidden;
        var adapter = new Dictionary<string, NamedTensor>();
        string[] targets = [];
        for (int l = 0; l < spec.Layers; l++)
        {
            var (query, value, t) = PeftLayout.LoraModules(spec.Family, l)!.Value;
            targets = t;
            var (qa, qb, va, vb) = EngineParameters.LoraNames(l);
            foreach (var (module, a, b, width) in new[] { (query, qa, qb, d), (value, va, vb, spec.KvDim) })
            {
                adapter[PeftLayout.LoraKey(module, 'A')] = new NamedTensor([r, d], PeftLayout.Transpose(Tensor(tensors, a, d * r), d, r));
                adapter[PeftLayout.LoraKey(module, 'B')] = new NamedTensor([width, r], PeftLayout.Transpose(Tensor(tensors, b, r * width), r, width));
            }
        }
        var cfg = new Dictionary<string, object?>
        {
            ["r"] = r,
            ["lora_alpha"] = o.LoraAlpha,
            ["lora_dropout"] = o.LoraDropout,
            ["target_modules"] = targets,
            ["bias"] = "none",
            ["fan_in_fan_out"] = false,
            ["init_lora_weights"] = true,
            ["use_rslora"] = false,
            ["use_dora"] = false,
            ["modules_to_save"] = null,
            ["layers_to_transform"] = null,
            ["layers_pattern"] = null,
            ["rank_pattern"] = new Dictionary<string, int>(),
            ["alpha_pattern"] = new Dictionary<string, float>(),
        };
        return (adapter, cfg);
    }

    private static float[] Tensor(IReadOnlyDictionary<string, NamedTensor> tensors, string name, int length) =>
        tensors.TryGetValue(name, out var t) && t.DType == TensorDType.F32 && t.ElementCount == length
            ? t.Data
            : throw new SkTuningException($"adapter.safetensors: tensor {name} is missing or not {length} F32 values");

    /// <summary>The head as torch's Linear stores it: <c>weight</c> [C, d] and <c>bias</c> [C].</summary>
    private static Dictionary<string, NamedTensor> Head(AdapterConfig config, IReadOnlyDictionary<string, NamedTensor> tensors)
    {
        int d = config.Dim, c = config.Classes;
        return new()
        {
            ["weight"] = new NamedTensor([c, d], PeftLayout.Transpose(Tensor(tensors, "head.weight", d * c), d, c)),
            ["bias"] = new NamedTensor([c], Tensor(tensors, "head.bias", c)),
        };
    }

    private static Dictionary<string, string> HeadMetadata(AdapterConfig config) => new()
    {
        ["format"] = "pt",
        ["task_kind"] = config.TaskKind.ToString(),
        ["pooling"] = config.TaskKind == TaskKind.TokenClassification ? "none" : config.Pooling.ToString().ToLowerInvariant(),
        ["labels"] = JsonSerializer.Serialize(config.Labels ?? []),
    };
}
