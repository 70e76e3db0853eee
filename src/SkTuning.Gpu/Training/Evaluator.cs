using SkTuning.Gpu.Data;

namespace SkTuning.Gpu.Training;

/// <summary>Predictions of a model over a dataset, in the dataset's order, with the mean loss.</summary>
/// <param name="Loss">Mean loss per example (token classification: the mean over each example's labelled tokens, averaged), from the same outputs.</param>
/// <param name="Classes">Predicted class per example (classification).</param>
/// <param name="Probabilities">Softmax probabilities per example (classification).</param>
/// <param name="Values">Predicted value per example (regression).</param>
/// <param name="WordLabels">Predicted label per word (token classification; words cut by truncation get label 0).</param>
public sealed record Predictions(double Loss, int[]? Classes, float[][]? Probabilities, double[]? Values, int[][]? WordLabels);

/// <summary>Runs a model over encoded examples in length-sorted batches (no dropout) and scores the predictions.</summary>
public static class Evaluator
{
    /// <summary>Predicts every example; <paramref name="gold"/> supplies the word counts for token classification.</summary>
    public static Predictions Predict(ITunedPredictor model, EncodedDataset data, IReadOnlyList<TextExample>? gold, int batchSize, int padId) =>
        Collect(model.Kind, model.Classes, model.SkipRows, data, gold, BatchSampler.EvalBatches(data.Lengths(), batchSize).Select(indices =>
        {
            var batch = BatchBuilder.Build(data.Examples, indices, padId);
            return (indices, batch.Tokens.SeqLen, model.Predict(batch.Tokens));
        }));

    /// <summary>
    /// Predictions from head outputs: per batch, the examples it ran (indices into <paramref name="data"/>, in row order),
    /// its token length T and the head's outputs for its rows (as <see cref="ITunedPredictor.Predict"/> returns them).
    /// </summary>
    internal static Predictions Collect(TaskKind kind, int C, int skipRows, EncodedDataset data, IReadOnlyList<TextExample>? gold,
        IEnumerable<(int[] Indices, int SeqLen, float[] Outputs)> batches)
    {
        int n = data.Count;
        var classes = new int[n]; var probs = new float[n][]; var values = new double[n]; var words = new int[n][];
        double lossSum = 0;
        foreach (var (indices, T, outputs) in batches)
        {
            int S = skipRows + T;
            for (int i = 0; i < indices.Length; i++)
            {
                int e = indices[i];
                switch (kind)
                {
                    case TaskKind.Regression:
                        values[e] = outputs[i];
                        double err = outputs[i] - data.Examples[e].Value;
                        lossSum += err * err;
                        break;
                    case TaskKind.TokenClassification:
                        var starts = data.Examples[e].WordStarts ?? [];
                        int wordCount = gold?[e].Words?.Length ?? starts.Length;
                        var labels = new int[wordCount];
                        for (int w = 0; w < starts.Length && w < wordCount; w++)
                            labels[w] = ArgMax(outputs.AsSpan((i * S + skipRows + starts[w]) * C, C));
                        words[e] = labels;
                        var tokenLabels = data.Examples[e].TokenLabels;
                        if (tokenLabels is not null)
                        {
                            double sum = 0; int count = 0;
                            for (int t = 0; t < tokenLabels.Length; t++)
                                if (tokenLabels[t] >= 0) { sum += CrossEntropy(outputs.AsSpan((i * S + skipRows + t) * C, C), tokenLabels[t]); count++; }
                            lossSum += count == 0 ? 0 : sum / count;
                        }
                        break;
                    default:
                        var row = outputs.AsSpan(i * C, C);
                        classes[e] = ArgMax(row);
                        probs[e] = Softmax(row);
                        int label = data.Examples[e].Label;
                        if (label >= 0 && label < C) lossSum += CrossEntropy(row, label);
                        break;
                }
            }
        }
        double loss = lossSum / Math.Max(1, n);
        return kind switch
        {
            TaskKind.Regression => new Predictions(loss, null, null, values, null),
            TaskKind.TokenClassification => new Predictions(loss, null, null, null, words),
            _ => new Predictions(loss, classes, probs, null, null),
        };
    }

    /// <summary>The task's metrics of <paramref name="predictions"/> against <paramref name="gold"/>.</summary>
    public static Dictionary<string, double> Score(TaskSpec task, TaskData data, IReadOnlyList<TextExample> gold, Predictions predictions) =>
        task.Kind switch
        {
            TaskKind.Regression => task.Evaluate(gold, predictions.Values!),
            TaskKind.TokenClassification => task.Evaluate(data, gold, predictions.WordLabels!),
            _ => task.Evaluate(data, gold, predictions.Classes!),
        };

    private static int ArgMax(ReadOnlySpan<float> row)
    {
        int best = 0;
        for (int c = 1; c < row.Length; c++) if (row[c] > row[best]) best = c;
        return best;
    }

    private static double CrossEntropy(ReadOnlySpan<float> logits, int label)
    {
        double max = double.NegativeInfinity, sum = 0;
        foreach (var z in logits) max = Math.Max(max, z);
        foreach (var z in logits) sum += Math.Exp(z - max);
        return Math.Log(sum) + max - logits[label];
    }

    private static float[] Softmax(ReadOnlySpan<float> row)
    {
        var p = new float[row.Length];
        System.Numerics.Tensors.TensorPrimitives.SoftMax(row, p);
        return p;
    }
}
