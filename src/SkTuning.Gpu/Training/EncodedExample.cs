using SkTuning.Gpu.Data;

namespace SkTuning.Gpu.Training;

/// <summary>
/// One example after tokenization: token ids and token types (special tokens included, already truncated to
/// the budget) and its target — a class id, a regression value, or one label per token.
/// </summary>
public sealed record EncodedExample
{
    /// <summary>The label of tokens that carry no target (special tokens, non-first sub-tokens, padding).</summary>
    public const int IgnoreLabel = -100;

    /// <summary>Which of the targets is set.</summary>
    public required TaskKind Kind { get; init; }

    /// <summary>Vocabulary ids, special tokens included.</summary>
    public required int[] Ids { get; init; }

    /// <summary>Token type ids (0 for the first sentence, 1 for the second), one per id.</summary>
    public required int[] TypeIds { get; init; }

    /// <summary>Class id for <see cref="TaskKind.Classification"/>; -1 otherwise.</summary>
    public int Label { get; init; } = -1;

    /// <summary>Target for <see cref="TaskKind.Regression"/>; NaN otherwise.</summary>
    public float Value { get; init; } = float.NaN;

    /// <summary>
    /// For <see cref="TaskKind.TokenClassification"/>: one label per token, the word's label on its first
    /// sub-token and <see cref="IgnoreLabel"/> elsewhere; null otherwise.
    /// </summary>
    public int[]? TokenLabels { get; init; }

    /// <summary>
    /// For <see cref="TaskKind.TokenClassification"/>: the token index of each kept word's first sub-token (to read
    /// per-word predictions back); words past its length were truncated. Null otherwise.
    /// </summary>
    public int[]? WordStarts { get; init; }

    /// <summary>Where the example came from ("file:line").</summary>
    public string Source { get; init; } = "";

    /// <summary>Whether tokens (or, for token classification, whole words) were cut to fit the budget.</summary>
    public bool Truncated { get; init; }

    /// <summary>Number of tokens.</summary>
    public int Length => Ids.Length;
}

/// <summary>The result of <see cref="ExampleEncoder.Encode"/>: the encoded examples, in input order, and how many were cut.</summary>
/// <param name="Examples">One encoded example per input example, same order.</param>
/// <param name="TruncatedCount">Number of examples that were truncated.</param>
public sealed record EncodedDataset(IReadOnlyList<EncodedExample> Examples, int TruncatedCount)
{
    /// <summary>Number of examples.</summary>
    public int Count => Examples.Count;

    /// <summary>The token length of each example, for <see cref="BatchSampler"/>.</summary>
    public int[] Lengths() => Examples.Select(e => e.Length).ToArray();
}
