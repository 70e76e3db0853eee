using SkTuning.Gpu.Engine;
using SkTuning.Gpu.Import;

namespace SkTuning.Gpu.Training.Baselines;

/// <summary>One tuning method of the catalog.</summary>
/// <param name="Name">Its name, as on the command line ("sk-prefix", "prompt", …).</param>
/// <param name="Kind">What its adapter produces; null when it has none (linear probe, LoRA, full fine-tuning).</param>
/// <param name="Supported">False for names reserved for methods the engine cannot train yet.</param>
/// <param name="Description">One line.</param>
public sealed record TuningMethod(string Name, AdapterKind? Kind, bool Supported, string Description);

/// <summary>Options of the catalog's adapters; each method reads the ones that concern it.</summary>
public sealed record MethodOptions
{
    /// <summary>Dropout on the adapter's output in training (every adapter).</summary>
    public float Dropout { get; init; } = 0.1f;

    /// <summary>sk-prefix / sk-prompt: how the zero-shot states are mapped.</summary>
    public AdapterMode Mode { get; init; } = AdapterMode.Token;

    /// <summary>sk-prefix / sk-prompt: how the adapter's weights start.</summary>
    public AdapterInit Init { get; init; } = AdapterInit.Random;

    /// <summary>prompt: how the virtual tokens start (Vocabulary and Text need the caller's rows).</summary>
    public PromptInit PromptInit { get; init; } = PromptInit.Random;

    /// <summary>prefix: h, the reparameterization MLP's hidden size.</summary>
    public int PrefixHidden { get; init; } = PrefixTuningAdapter.DefaultHidden;

    /// <summary>LoRA rank r.</summary>
    public int LoraRank { get; init; } = 8;
}

/// <summary>
/// Every tuning method SK-Tuning is compared with, by name: the adapter each builds (all share the engine, head, data
/// and seeds) and its trainable parameter count from the formula, adapter plus head (d·C + C).
/// n is the method's token count: the semantic text's m for sk-*, the virtual tokens / prefix length otherwise.
/// </summary>
public static class MethodCatalog
{
    /// <summary>The methods, in report order.</summary>
    public static IReadOnlyList<TuningMethod> All { get; } =
    [
        new("sk-prefix", AdapterKind.Prefix, true, "SK-Prefix: per-layer attention prefixes mapped from the semantic text's zero-shot states"),
        new("sk-prompt", AdapterKind.Prompt, true, "SK-Prompt: prompt vectors mapped from the semantic text's zero-shot states"),
        new("prompt", AdapterKind.Prompt, true, "prompt tuning: n trainable virtual tokens after the embedding layer"),
        new("prefix", AdapterKind.Prefix, true, "prefix tuning (Li & Liang): Embedding(n, d) → Linear(d, h) → Tanh → Linear(h, 2·L·d)"),
        new("ptuning-v2", AdapterKind.Prefix, true, "P-tuning v2: the per-layer prefix [L, 2, n, d] itself is trained"),
        new("linear", null, true, "linear probe: the head only"),
        new("lora", null, true, "LoRA: rank-r updates of the query and value maps"),
        new("full", null, true, "full fine-tuning: every weight"),
    ];

    /// <summary>The method names, in report order.</summary>
    public static IEnumerable<string> Names => All.Select(m => m.Name);

    /// <summary>A method by name.</summary>
    /// <exception cref="SkTuningException">Unknown name (the message lists the known ones).</exception>
    public static TuningMethod Get(string name) =>
        All.FirstOrDefault(m => m.Name == name)
        ?? throw new SkTuningException($"unknown method '{name}'; known: {string.Join(", ", Names)}");

    /// <summary>
    /// Builds the method's adapter (parameters are initialized later, through <see cref="SkTuningModel.Initialize"/>),
    /// or returns null for the linear probe.
    /// </summary>
    /// <param name="method">The method name.</param>
    /// <param name="backend">Where it runs.</param>
    /// <param name="model">The frozen weights (sizes; SK adapters' model init).</param>
    /// <param name="tokens">n: the semantic text's tokens (sk-*), virtual tokens (prompt) or prefix length (prefix, ptuning-v2).</param>
    /// <param name="options">Method options.</param>
    /// <param name="states">
    /// sk-*: the zero-shot source states (one [m, d] matrix; per-layer mode: L, one entering each layer).
    /// prompt with <see cref="PromptInit.Vocabulary"/> or <see cref="PromptInit.Text"/>: one matrix of init rows [r, d]
    /// (the embedding-layer outputs), cycled or truncated to n. Ignored otherwise.
    /// </param>
    /// <exception cref="SkTuningException">Unknown method, a reserved one not supported yet, or missing states.</exception>
    public static IAdapter? CreateAdapter(string method, Backend backend, ModelWeights model, int tokens, MethodOptions options,
        IReadOnlyList<float[]>? states = null)
    {
        var spec = model.Spec;
        int d = spec.Hidden, L = spec.Layers, kv = spec.KvDim;
        switch (RequireSupported(method).Name)
        {
            case "sk-prefix":
            case "sk-prompt":
                var kind = method == "sk-prefix" ? AdapterKind.Prefix : AdapterKind.Prompt;
                if (states is null || states.Count == 0) throw new SkTuningException($"{method} needs the semantic text's zero-shot states");
                return new SemanticAdapter(backend, new AdapterShape(kind, options.Mode, tokens, d, L, kv), states, options.Dropout, options.Init, model);
            case "prompt":
                float[]? rows = null;
                if (options.PromptInit != PromptInit.Random)
                {
                    if (states is not { Count: 1 }) throw new SkTuningException($"prompt tuning's {options.PromptInit} init needs one matrix of init rows");
                    rows = states[0];
                }
                return new PromptTuningAdapter(backend, tokens, d, rows, options.Dropout);
            case "prefix":
                return new PrefixTuningAdapter(backend, tokens, d, L, options.PrefixHidden, options.Dropout, kv);
            case "ptuning-v2":
                return new DeepPrefixAdapter(backend, tokens, kv, L, options.Dropout);
            default:
                return null;
        }
    }

    /// <summary>
    /// Trainable values of the method from its formula (not from tensors): adapter + head (d·C + C).
    /// prompt n·d; prefix n·d + d·h + h + 2L·(h·k + k); ptuning-v2 2L·n·k; linear 0;
    /// sk-prefix token / per-layer 2L·(d·k + k), pooled d + 1 + n·2Lnk + 2Lnk; sk-prompt token d² + d, pooled d + 1 + n·nd + nd —
    /// with k = kvDim, the width of a layer's keys and values (d without grouped KV heads).
    /// </summary>
    /// <param name="method">The method name.</param>
    /// <param name="spec">The frozen model's sizes (L, d).</param>
    /// <param name="tokens">n (see <see cref="CreateAdapter"/>).</param>
    /// <param name="classes">C, the head's outputs (1 for regression).</param>
    /// <param name="options">Mode (sk-*) and prefix hidden size h (prefix); defaults when null.</param>
    /// <exception cref="SkTuningException">Unknown method, or a reserved one not supported yet.</exception>
    public static long TrainableParameterCount(string method, ModelSpec spec, int tokens, int classes, MethodOptions? options = null)
    {
        options ??= new MethodOptions();
        long d = spec.Hidden, k = spec.KvDim, L = spec.Layers, n = tokens, h = options.PrefixHidden;
        long adapter = RequireSupported(method).Name switch
        {
            "sk-prefix" => SemanticCount(2 * L, options.Mode, n, d, k),
            "sk-prompt" => SemanticCount(1, options.Mode, n, d, d),
            "prompt" => n * d,
            "prefix" => n * d + d * h + h + 2 * L * (h * k + k),
            "ptuning-v2" => 2 * L * n * k,
            "lora" => EngineParameters.LoraParameterCount(spec, options.LoraRank),
            "full" => EngineParameters.FullParameterCount(spec),
            _ => 0,
        };
        return adapter + HeadParameterCount(spec.Hidden, classes);
    }

    /// <summary>The head's trainable values: d·C + C.</summary>
    public static long HeadParameterCount(int dim, int classes) => (long)dim * classes + classes;

    private static long SemanticCount(long groups, AdapterMode mode, long m, long d, long width)
    {
        if (mode == AdapterMode.Pooled)
        {
            long output = groups * m * width;
            return d + 1 + m * output + output;
        }
        if (mode == AdapterMode.PerLayer && groups == 1) throw new SkTuningException("per-layer mode is an SK-Prefix mode; SK-Prompt takes token or pooled");
        return groups * (d * width + width);
    }

    private static TuningMethod RequireSupported(string name)
    {
        var method = Get(name);
        if (!method.Supported)
            throw new SkTuningException($"method '{name}' is not supported yet ({method.Description}); supported: " +
                string.Join(", ", All.Where(m => m.Supported).Select(m => m.Name)));
        return method;
    }
}
