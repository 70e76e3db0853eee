using SkTuning.Gpu.Data;

namespace SkTuning.Gpu.Training;

/// <summary>Predictions of a model over a dataset, in the dataset's order, with the mean loss.</summary>
/// <param name="Loss">Mean loss over the batches (weighted by batch size).</param>
/// <param name="Classes">Predicted class per example (classification).</param>
/// <param name="Probabilities">Softmax probabilities per example (classification).</param>
/// <param name="Values">Predicted value per example (regression).</param>
/// <param name="WordLabels">Predicted label per word (token classification; words cut by truncation get label 0).</param>
public sealed record Predictions(double Loss, int[]? Classes, float[][]? Probabilities, double[]? Values, int[][]? WordLabels);

/// <summary>Runs a model over encoded examples in length-sorted batches (no dropout) and scores the predictions.</summary>
public static class Evaluator
{
    /// <summary>Predicts every example; <paramref name="gold"/> supplies the word counts for token classification.</summary>
    public static Predictions Predict(SkTuningModel model, EncodedDataset data, IReadOnlyList<TextExample>? gold, int batchSize, int padId)
    {
        var kind = model.Head.Kind;
        int n = data.Count, C = model.Head.Classes;
        var batches = BatchSampler.EvalBatches(data.Lengths(), batchSize);
        var classes = new int[n]; var probs = new float[n][]; var values = new double[n]; var words = new int[n][];
        double lossSum = 0;
        foreach (var indices in batches)
        {
            var batch = BatchBuilder.Build(data.Examples, indices, padId);
            var targets = new HeadTargets(batch.Labels, batch.Values, batch.TokenLabels);
            bool hasTargets = kind switch
            {
                TaskKind.Regression => batch.Values!.All(float.IsFinite),
                TaskKind.TokenClassification => true,
                _ => batch.Labels!.All(l => l >= 0),
            };
            if (hasTargets) lossSum += model.EvaluateLoss(batch.Tokens, targets) * indices.Length;
            var outputs = model.Predict(batch.Tokens);
            int T = batch.Tokens.SeqLen, S = model.SkipRows + T;
            for (int i = 0; i < indices.Length; i++)
            {
                int e = indices[i];
                switch (kind)
                {
                    case TaskKind.Regression:
                        values[e] = outputs[i];
                        break;
                    case TaskKind.TokenClassification:
                        var starts = data.Examples[e].WordStarts ?? [];
                        int wordCount = gold?[e].Words?.Length ?? starts.Length;
                        var labels = new int[wordCount];
                        for (int w = 0; w < starts.Length && w < wordCount; w++)
                            labels[w] = ArgMax(outputs.AsSpan((i * S + model.SkipRows + starts[w]) * C, C));
                        words[e] = labels;
                        break;
                    default:
                        var row = outputs.AsSpan(i * C, C);
                        classes[e] = ArgMax(row);
                        probs[e] = Softmax(row);
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

    private static float[] Softmax(ReadOnlySpan<float> row)
    {
        var p = new float[row.Length];
        System.Numerics.Tensors.TensorPrimitives.SoftMax(row, p);
        return p;
    }
}
