using SkTuning.Gpu.Engine;
using SkTuning.Gpu.Import;
using SkTuning.Gpu.Training.Baselines;

namespace SkTuning.Gpu.Training;

/// <summary>Builds the trainable model of a configuration: zero-shot states of the semantic text → adapter → engine → head.</summary>
public static class TunedModelBuilder
{
    /// <summary>
    /// The zero-shot source states the adapter maps: the last layer (token/pooled prefix, SK-Prompt default), the
    /// embedding output (SK-Prompt, embedding source), or what each layer's attention projects from the states entering
    /// it (per-layer prefix; <see cref="ModelProjections.AttentionInputs"/>).
    /// </summary>
    public static IReadOnlyList<float[]> SourceStates(FrozenModel model, AdapterKind kind, AdapterMode mode, PromptSource promptSource,
        string semanticText, Action<string>? log, out int tokens)
    {
        using var encoder = model.CreateEncoder(log);
        bool all = mode == AdapterMode.PerLayer || (kind == AdapterKind.Prompt && promptSource == PromptSource.Embedding);
        var states = encoder.Encode(semanticText, all);
        tokens = states.Tokens;
        if (mode == AdapterMode.PerLayer) return ModelProjections.AttentionInputs(model.Weights, states.Layers.Take(model.Spec.Layers).ToArray());
        if (kind == AdapterKind.Prompt && promptSource == PromptSource.Embedding) return [states.Layers[0]];
        return [states.Last];
    }

    /// <summary>Builds the model of <paramref name="config"/> on <paramref name="backend"/> (parameters uninitialized).</summary>
    /// <param name="model">The frozen model.</param>
    /// <param name="config">The run's configuration.</param>
    /// <param name="backend">Where it runs.</param>
    /// <param name="log">One-line messages.</param>
    /// <param name="sharedWeights">A frozen engine whose uploaded weights the model reuses (see <see cref="SkTuningModel"/>), or null to upload them.</param>
    public static SkTuningModel Build(FrozenModel model, AdapterConfig config, Backend backend, Action<string>? log, TransformerEngine? sharedWeights = null)
    {
        var o = config.Training;
        IReadOnlyList<float[]>? states = null;
        if (config.AdapterKind is { } kind)
        {
            states = SourceStates(model, kind, config.Mode, config.PromptSource, config.SemanticText, log, out int m);
            if (m != config.SemanticTokens)
                throw new SkTuningException($"semantic text encodes to {m} tokens, the run says {config.SemanticTokens}: tokenizer changed?");
        }
        else if (config.Method == "prompt" && o.PromptInit == PromptInit.Text)
            states = SourceStates(model, AdapterKind.Prompt, AdapterMode.Token, PromptSource.Embedding, config.SemanticText, log, out _);
        else if (config.Method == "prompt" && o.PromptInit == PromptInit.Vocabulary)
            states = [VocabularyRows(model, config.Tokens, o.Seed)];
        var adapter = MethodCatalog.CreateAdapter(config.Method, backend, model.Weights, config.Tokens, Options(o), states);
        var head = new TaskHead(backend, config.TaskKind, config.Pooling, model.Spec.Hidden, config.Classes, config.Training.Dropout);
        var tuning = config.Method switch
        {
            "full" => EngineTuning.AllWeights,
            "lora" => EngineTuning.WithLora(new LoraOptions(o.LoraRank, o.LoraAlpha, o.LoraDropout)),
            _ => EngineTuning.Frozen,
        };
        return new SkTuningModel(backend, model.Spec, model.Weights, adapter, head, tuning, sharedWeights);
    }

    /// <summary>The catalog's options from the training options.</summary>
    public static MethodOptions Options(TrainOptions o) => new()
    {
        Dropout = o.Dropout, Mode = o.Mode, Init = o.Init, PromptInit = o.PromptInit, PrefixHidden = o.PrefixHidden, LoraRank = o.LoraRank,
    };

    /// <summary>
    /// Prompt tuning's vocabulary init: the embedding-layer outputs (<see cref="ModelProjections.EmbedTokens"/>) of
    /// <paramref name="count"/> tokens sampled from the vocabulary (seeded; ids past the first 1000, which BERT
    /// vocabularies reserve for special and unused tokens, when the vocabulary is that large).
    /// </summary>
    public static float[] VocabularyRows(FrozenModel model, int count, int seed)
    {
        var spec = model.Spec;
        var rng = new Random(seed);
        int first = spec.VocabSize > 2000 ? 1000 : 0;
        var ids = Enumerable.Range(0, count).Select(_ => rng.Next(first, spec.VocabSize)).ToArray();
        return ModelProjections.EmbedTokens(model.Weights, ids);
    }
}
