using SkTuning.Gpu.Data;
using SkTuning.Gpu.Engine;

namespace SkTuning.Gpu.Training;

/// <summary>A padded batch with its targets, ready for the engine and the loss.</summary>
public sealed class TrainingBatch
{
    internal TrainingBatch(TaskKind kind, TokenBatch tokens, int[] indices, int[]? labels, float[]? values, int[]? tokenLabels)
    {
        Kind = kind; Tokens = tokens; Indices = indices; Labels = labels; Values = values; TokenLabels = tokenLabels;
    }

    /// <summary>Which target is set.</summary>
    public TaskKind Kind { get; }

    /// <summary>Ids, token types and mask [B, T], right-padded to the longest example of the batch.</summary>
    public TokenBatch Tokens { get; }

    /// <summary>The example indices of the rows, in row order.</summary>
    public int[] Indices { get; }

    /// <summary>Class ids [B] for classification; null otherwise.</summary>
    public int[]? Labels { get; }

    /// <summary>Regression targets [B]; null otherwise.</summary>
    public float[]? Values { get; }

    /// <summary>Token labels [B·T] for token classification, <see cref="EncodedExample.IgnoreLabel"/> on ignored tokens and padding; null otherwise.</summary>
    public int[]? TokenLabels { get; }

    /// <summary>B.</summary>
    public int Size => Tokens.Batch;

    /// <summary>Number of real (unpadded) tokens.</summary>
    public int RealTokens => (int)Tokens.Mask.Sum();

    /// <summary>Fraction of the B·T positions that are padding.</summary>
    public double PaddingFraction => 1.0 - (double)RealTokens / Tokens.Mask.Length;
}

/// <summary>Pads encoded examples into a <see cref="TrainingBatch"/>.</summary>
public static class BatchBuilder
{
    /// <summary>The batch of <paramref name="examples"/>[<paramref name="indices"/>], rows in index order, padded with <paramref name="padId"/>.</summary>
    /// <exception cref="ArgumentException">No index, an index out of range, or examples of different kinds.</exception>
    public static TrainingBatch Build(IReadOnlyList<EncodedExample> examples, IReadOnlyList<int> indices, int padId)
    {
        if (indices.Count == 0) throw new ArgumentException("a batch needs at least one example", nameof(indices));
        var rows = new EncodedExample[indices.Count];
        for (int r = 0; r < rows.Length; r++)
        {
            int i = indices[r];
            if ((uint)i >= (uint)examples.Count) throw new ArgumentException($"example index {i} is out of range (0..{examples.Count - 1})", nameof(indices));
            rows[r] = examples[i];
        }
        var kind = rows[0].Kind;
        if (rows.Any(e => e.Kind != kind)) throw new ArgumentException("a batch mixes examples of different task kinds", nameof(indices));
        var tokens = TokenBatch.FromSequences(rows.Select(e => (e.Ids, e.TypeIds)).ToArray(), padId);
        int[]? labels = null, tokenLabels = null;
        float[]? values = null;
        switch (kind)
        {
            case TaskKind.Classification:
                labels = rows.Select(e => e.Label).ToArray();
                break;
            case TaskKind.Regression:
                values = rows.Select(e => e.Value).ToArray();
                break;
            case TaskKind.TokenClassification:
                int t = tokens.SeqLen;
                tokenLabels = new int[rows.Length * t];
                Array.Fill(tokenLabels, EncodedExample.IgnoreLabel);
                for (int r = 0; r < rows.Length; r++)
                {
                    var l = rows[r].TokenLabels ?? throw new ArgumentException($"{rows[r].Source}: token-classification example without token labels");
                    l.CopyTo(tokenLabels, r * t);
                }
                break;
        }
        return new TrainingBatch(kind, tokens, [.. indices], labels, values, tokenLabels);
    }
}
