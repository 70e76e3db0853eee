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
        var head = new TaskHead(backend, config.TaskKind, config.Pooling, model.Spec.Hidden, config.Classes, config.Training.Dropout);
        return new SkTuningModel(backend, model.Spec, model.Weights, adapter, head);
    }
}
