using SkTuning.Gpu.Engine;
using SkTuning.Gpu.Import;

namespace SkTuning.Gpu.Training;

/// <summary>Builds the trainable model of a configuration: zero-shot states of the semantic text → adapter → engine → head.</summary>
public static class TunedModelBuilder
{
    /// <summary>
    /// The zero-shot source states the adapter maps: the last layer (token/pooled prefix, SK-Prompt default), the
    /// embedding output (SK-Prompt, embedding source), or the states entering each layer (per-layer prefix).
    /// </summary>
    public static IReadOnlyList<float[]> SourceStates(FrozenModel model, AdapterKind kind, AdapterMode mode, PromptSource promptSource,
        string semanticText, Action<string>? log, out int tokens)
    {
        using var encoder = model.CreateEncoder(log);
        bool all = mode == AdapterMode.PerLayer || (kind == AdapterKind.Prompt && promptSource == PromptSource.Embedding);
        var states = encoder.Encode(semanticText, all);
        tokens = states.Tokens;
        if (mode == AdapterMode.PerLayer) return states.Layers.Take(model.Spec.Layers).ToArray();
        if (kind == AdapterKind.Prompt && promptSource == PromptSource.Embedding) return [states.Layers[0]];
        return [states.Last];
    }

    /// <summary>Trainable values of the method's adapter (the head not included), from its formula.</summary>
    /// <exception cref="SkTuningException">An unknown method.</exception>
    public static long AdapterParameterCount(TrainOptions o, ModelSpec spec, int semanticTokens)
    {
        long d = spec.Hidden;
        switch (o.Method)
        {
            case "linear":
                return 0;
            case "sk-prefix" or "sk-prompt":
                var shape = new AdapterShape(o.Kind, o.Mode, semanticTokens, spec.Hidden, spec.Layers);
                return o.Mode == AdapterMode.Pooled
                    ? d + 1 + (long)semanticTokens * shape.OutputLength + shape.OutputLength
                    : shape.Groups * (d * d + d);
            default:
                throw new SkTuningException($"method '{o.Method}' is not available (methods: sk-prefix, sk-prompt, linear)");
        }
    }

    /// <summary>Builds the model of <paramref name="config"/> on <paramref name="backend"/> (parameters uninitialized).</summary>
    public static SkTuningModel Build(FrozenModel model, AdapterConfig config, Backend backend, Action<string>? log)
    {
        IAdapter? adapter = null;
        if (config.AdapterKind is { } kind)
        {
            var sources = SourceStates(model, kind, config.Mode, config.PromptSource, config.SemanticText, log, out int m);
            if (m != config.SemanticTokens)
                throw new SkTuningException($"semantic text encodes to {m} tokens, the run says {config.SemanticTokens}: tokenizer changed?");
            adapter = new SemanticAdapter(backend, new AdapterShape(kind, config.Mode, m, model.Spec.Hidden, model.Spec.Layers), sources,
                config.Training.Dropout, config.Training.Init, model.Weights);
        }
        else if (config.Method != "linear")
            throw new SkTuningException($"method '{config.Method}' is not available (methods: sk-prefix, sk-prompt, linear)");
        var head = new TaskHead(backend, config.TaskKind, config.Pooling, model.Spec.Hidden, config.Classes, config.Training.Dropout);
        return new SkTuningModel(backend, model.Spec, model.Weights, adapter, head);
    }
}
