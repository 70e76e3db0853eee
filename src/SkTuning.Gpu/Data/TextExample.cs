namespace SkTuning.Gpu.Data;

/// <summary>What a task's head predicts.</summary>
public enum TaskKind
{
    /// <summary>One class per text (or text pair): <see cref="TextExample.Label"/>.</summary>
    Classification,

    /// <summary>One real value per text (or text pair): <see cref="TextExample.Value"/>.</summary>
    Regression,

    /// <summary>One class per word: <see cref="TextExample.Words"/> and <see cref="TextExample.WordLabels"/>.</summary>
    TokenClassification,
}

/// <summary>
/// One labelled example, untokenized: a text (or a text pair) with a class index or a regression value,
/// or a sentence of words with one label index per word (the head labels the first sub-token of each word).
/// </summary>
public sealed record TextExample
{
    /// <summary>The text; for token classification, the words joined by single spaces.</summary>
    public required string Text { get; init; }

    /// <summary>The second text of a sentence pair (NLI, paraphrase, similarity); null for single texts.</summary>
    public string? TextPair { get; init; }

    /// <summary>Class index into the task's <see cref="LabelSet"/>; -1 unless classification.</summary>
    public int Label { get; init; } = -1;

    /// <summary>Regression target; NaN unless regression.</summary>
    public double Value { get; init; } = double.NaN;

    /// <summary>The words of a token-classification example; null otherwise.</summary>
    public string[]? Words { get; init; }

    /// <summary>One label index per word (into the task's <see cref="LabelSet"/>); null unless token classification.</summary>
    public int[]? WordLabels { get; init; }

    /// <summary>Where the example came from, as "file:line" (the line where it starts).</summary>
    public string Source { get; init; } = "";

    /// <summary>A classification example.</summary>
    public static TextExample ForClass(string text, string? pair, int label, string source = "") =>
        new() { Text = text, TextPair = pair, Label = label, Source = source };

    /// <summary>A regression example.</summary>
    public static TextExample ForValue(string text, string? pair, double value, string source = "") =>
        new() { Text = text, TextPair = pair, Value = value, Source = source };

    /// <summary>A token-classification example; <paramref name="words"/> and <paramref name="labels"/> have equal length.</summary>
    public static TextExample ForWords(string[] words, int[] labels, string source = "")
    {
        if (words.Length != labels.Length)
            throw new ArgumentException($"{words.Length} words but {labels.Length} labels");
        return new() { Text = string.Join(' ', words), Words = words, WordLabels = labels, Source = source };
    }
}

/// <summary>A text row as read from a file, before its label is mapped: label is the raw string.</summary>
/// <param name="File">The file it was read from.</param>
/// <param name="Line">The 1-based line where the row starts.</param>
/// <param name="Text">The text.</param>
/// <param name="TextPair">The second text, or null.</param>
/// <param name="Label">The label as written (class name or number).</param>
public sealed record RawExample(string File, int Line, string Text, string? TextPair, string Label)
{
    /// <summary>"file:line".</summary>
    public string Source => $"{File}:{Line}";
}

/// <summary>A sentence as read from a CoNLL file: words and their tags (BIO after conversion).</summary>
/// <param name="File">The file it was read from.</param>
/// <param name="Line">The 1-based line of its first word.</param>
/// <param name="Words">The words.</param>
/// <param name="Tags">One tag per word.</param>
/// <param name="TagLines">The 1-based line of each word, for error messages.</param>
public sealed record RawSentence(string File, int Line, string[] Words, string[] Tags, int[] TagLines)
{
    /// <summary>"file:line".</summary>
    public string Source => $"{File}:{Line}";
}
