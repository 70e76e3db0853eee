namespace SkTuning.Gpu.Training;

/// <summary>
/// Each method's customary settings for comparisons: the SK methods as the defaults chosen on SST-2; baselines with the
/// learning rates their papers and PEFT use for frozen encoders (prompt tuning needs far larger rates than full
/// fine-tuning). Everything else — data, head, seed, steps, batch — is shared.
/// </summary>
public static class MethodDefaults
{
    /// <summary>Every method name, in table order.</summary>
    public static readonly IReadOnlyList<string> Methods = ["sk-prefix", "sk-prompt", "prefix", "prompt", "ptuning-v2", "lora", "linear", "full"];

    /// <summary>The options of <paramref name="method"/> on top of <paramref name="shared"/> (learning rate unless <paramref name="learningRate"/>).</summary>
    public static TrainOptions For(string method, TrainOptions shared, float? learningRate = null)
    {
        var o = method switch
        {
            "sk-prefix" => shared with { Method = method, Mode = AdapterMode.PerLayer, Init = AdapterInit.Model, LearningRate = 2e-3f },
            "sk-prompt" => shared with { Method = method, Mode = AdapterMode.Token, Init = AdapterInit.Model, LearningRate = 2e-3f },
            "prompt" => shared with { Method = method, LearningRate = 3e-2f },
            "prefix" => shared with { Method = method, LearningRate = 1e-3f },
            "ptuning-v2" => shared with { Method = method, LearningRate = 5e-3f },
            "lora" => shared with { Method = method, LearningRate = 5e-4f },
            "linear" => shared with { Method = method, LearningRate = 5e-3f },
            "full" => shared with { Method = method, LearningRate = 3e-5f },
            _ => throw new SkTuningException($"unknown method '{method}' (methods: {string.Join(", ", Methods)})"),
        };
        return learningRate is { } lr ? o with { LearningRate = lr } : o;
    }
}
