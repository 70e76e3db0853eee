namespace SkTuning.Gpu.Training;

/// <summary>Default semantic texts per task (the paper's examples where it gives one), used when --text is not given.</summary>
public static class SemanticTexts
{
    /// <summary>The default semantic text of a task.</summary>
    public static string For(string task) => task switch
    {
        "sst2" => "Classify the sentiment of the text as positive or negative.",
        "cola" => "Classify whether the sentence is grammatically acceptable.",
        "mrpc" => "Classify the textual equivalence from the text:",
        "rte" => "Recognize the textual entailment from the text:",
        "stsb" => "Rate how similar in meaning the two sentences are.",
        "wnut17" or "wikigold" => "Classify the token of the text as a person, location, organization or other named entity:",
        "sms-spam" => "Classify whether the text message is spam or not.",
        _ => "Classify the text:",
    };
}
