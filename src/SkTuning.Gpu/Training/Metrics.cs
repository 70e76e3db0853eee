namespace SkTuning.Gpu.Training;

/// <summary>Precision, recall and F1 of one class or of entity spans, with the counts behind them.</summary>
/// <param name="TruePositives">Predictions that match the gold.</param>
/// <param name="Predicted">Number of predictions (true + false positives).</param>
/// <param name="Gold">Number of gold items (true positives + false negatives).</param>
public readonly record struct PrecisionRecallF1(int TruePositives, int Predicted, int Gold)
{
    /// <summary>TP / predicted; 0 when nothing was predicted.</summary>
    public double Precision => Predicted == 0 ? 0 : (double)TruePositives / Predicted;

    /// <summary>TP / gold; 0 when there is no gold item.</summary>
    public double Recall => Gold == 0 ? 0 : (double)TruePositives / Gold;

    /// <summary>2PR / (P + R) = 2TP / (predicted + gold); 0 when both are empty.</summary>
    public double F1 => Predicted + Gold == 0 ? 0 : 2.0 * TruePositives / (Predicted + Gold);
}

/// <summary>An entity span in a BIO sequence: its type and the word range [Start, End).</summary>
/// <param name="Type">The entity type (the tag without "B-"/"I-").</param>
/// <param name="Start">First word.</param>
/// <param name="End">One past the last word.</param>
public readonly record struct EntitySpan(string Type, int Start, int End);

/// <summary>The metric names tasks report (keys of the evaluation results).</summary>
public static class MetricNames
{
    /// <summary>Metric name: accuracy.</summary>
    public const string Accuracy = "accuracy";

    /// <summary>Metric name: F1 of the task's positive class.</summary>
    public const string F1 = "f1";

    /// <summary>Metric name: unweighted mean of the per-class F1.</summary>
    public const string MacroF1 = "macro_f1";

    /// <summary>Metric name: Matthews correlation coefficient.</summary>
    public const string Matthews = "mcc";

    /// <summary>Metric name: Pearson correlation.</summary>
    public const string Pearson = "pearson";

    /// <summary>Metric name: Spearman rank correlation.</summary>
    public const string Spearman = "spearman";

    /// <summary>Metric name: entity-level micro F1 over BIO spans.</summary>
    public const string EntityF1 = "entity_f1";
}

/// <summary>Evaluation metrics of the tasks: classification, regression and entity-level sequence labelling.</summary>
public static class Metrics
{
    /// <summary>Fraction of positions where <paramref name="pred"/> equals <paramref name="gold"/>.</summary>
    public static double Accuracy(ReadOnlySpan<int> gold, ReadOnlySpan<int> pred)
    {
        CheckLengths(gold.Length, pred.Length);
        if (gold.Length == 0) return 0;
        int ok = 0;
        for (int i = 0; i < gold.Length; i++) if (gold[i] == pred[i]) ok++;
        return (double)ok / gold.Length;
    }

    /// <summary>Precision, recall and F1 of class <paramref name="positive"/> (binary F1).</summary>
    public static PrecisionRecallF1 F1(ReadOnlySpan<int> gold, ReadOnlySpan<int> pred, int positive)
    {
        CheckLengths(gold.Length, pred.Length);
        int tp = 0, p = 0, g = 0;
        for (int i = 0; i < gold.Length; i++)
        {
            bool gp = gold[i] == positive, pp = pred[i] == positive;
            if (gp) g++;
            if (pp) p++;
            if (gp && pp) tp++;
        }
        return new PrecisionRecallF1(tp, p, g);
    }

    /// <summary>Unweighted mean over classes 0..<paramref name="classes"/>-1 of each class's F1 (a class absent from both gold and predictions scores 0, as in scikit-learn).</summary>
    public static double MacroF1(ReadOnlySpan<int> gold, ReadOnlySpan<int> pred, int classes)
    {
        CheckLengths(gold.Length, pred.Length);
        if (classes <= 0) return 0;
        double sum = 0;
        for (int c = 0; c < classes; c++) sum += F1(gold, pred, c).F1;
        return sum / classes;
    }

    /// <summary>
    /// Matthews correlation coefficient; for more than two classes the Gorodkin (R_K) form
    /// (c·s − Σ p_k t_k) / sqrt((s² − Σ p_k²)(s² − Σ t_k²)), with c correct, s total, p_k and t_k the
    /// predicted and true counts of class k. For two classes this equals (TP·TN − FP·FN) /
    /// sqrt((TP+FP)(TP+FN)(TN+FP)(TN+FN)). A zero denominator gives 0 (as scikit-learn).
    /// </summary>
    public static double Matthews(ReadOnlySpan<int> gold, ReadOnlySpan<int> pred)
    {
        CheckLengths(gold.Length, pred.Length);
        var t = new Dictionary<int, long>();
        var p = new Dictionary<int, long>();
        long c = 0, s = gold.Length;
        for (int i = 0; i < gold.Length; i++)
        {
            t[gold[i]] = t.GetValueOrDefault(gold[i]) + 1;
            p[pred[i]] = p.GetValueOrDefault(pred[i]) + 1;
            if (gold[i] == pred[i]) c++;
        }
        double pt = 0, pp = 0, tt = 0;
        foreach (var (k, n) in p) { pp += (double)n * n; pt += (double)n * t.GetValueOrDefault(k); }
        foreach (var n in t.Values) tt += (double)n * n;
        double s2 = (double)s * s;
        double den = Math.Sqrt(s2 - pp) * Math.Sqrt(s2 - tt);
        return den == 0 ? 0 : (c * (double)s - pt) / den;
    }

    /// <summary>Pearson correlation; 0 when either side is constant.</summary>
    public static double Pearson(ReadOnlySpan<double> x, ReadOnlySpan<double> y)
    {
        CheckLengths(x.Length, y.Length);
        int n = x.Length;
        if (n == 0) return 0;
        double mx = 0, my = 0;
        for (int i = 0; i < n; i++) { mx += x[i]; my += y[i]; }
        mx /= n; my /= n;
        double sxy = 0, sxx = 0, syy = 0;
        for (int i = 0; i < n; i++)
        {
            double dx = x[i] - mx, dy = y[i] - my;
            sxy += dx * dy; sxx += dx * dx; syy += dy * dy;
        }
        double den = Math.Sqrt(sxx * syy);
        return den == 0 ? 0 : sxy / den;
    }

    /// <summary>Spearman rank correlation: Pearson of the ranks, tied values sharing their average rank.</summary>
    public static double Spearman(ReadOnlySpan<double> x, ReadOnlySpan<double> y)
    {
        CheckLengths(x.Length, y.Length);
        return Pearson(Ranks(x), Ranks(y));
    }

    /// <summary>1-based ranks; tied values get the mean of the ranks they span (e.g. [1,2,2,3] → [1,2.5,2.5,4]).</summary>
    public static double[] Ranks(ReadOnlySpan<double> v)
    {
        int n = v.Length;
        var idx = new int[n];
        for (int i = 0; i < n; i++) idx[i] = i;
        var keys = v.ToArray();
        Array.Sort(keys, idx);
        var r = new double[n];
        for (int i = 0; i < n;)
        {
            int j = i + 1;
            while (j < n && keys[j] == keys[i]) j++;
            double avg = (i + 1 + j) / 2.0; // mean of ranks i+1 .. j
            for (int k = i; k < j; k++) r[idx[k]] = avg;
            i = j;
        }
        return r;
    }

    /// <summary>
    /// The entity spans of a BIO sequence, as seqeval (default mode) and conlleval extract them: a span
    /// starts at B-X, or at I-X that does not continue a span of type X (after O, at the start, or after
    /// another type); it ends before O, B-, or a tag of another type. Tags other than O/B-/I- count as O.
    /// </summary>
    public static List<EntitySpan> Entities(IReadOnlyList<string> tags)
    {
        var spans = new List<EntitySpan>();
        string? type = null;
        int start = 0;
        for (int i = 0; i < tags.Count; i++)
        {
            string t = tags[i];
            bool isB = t.Length > 2 && t[0] == 'B' && t[1] == '-';
            bool isI = t.Length > 2 && t[0] == 'I' && t[1] == '-';
            string? ty = isB || isI ? t[2..] : null;
            bool continues = isI && type != null && ty == type;
            if (continues) continue;
            if (type != null) spans.Add(new EntitySpan(type, start, i));
            type = ty;
            start = i;
        }
        if (type != null) spans.Add(new EntitySpan(type, start, tags.Count));
        return spans;
    }

    /// <summary>
    /// Entity-level micro precision/recall/F1 over sentences: a predicted span counts only if a gold span
    /// has exactly the same type, start and end (a span one word short is a false positive and a false negative).
    /// </summary>
    public static PrecisionRecallF1 EntityF1(IReadOnlyList<IReadOnlyList<string>> gold, IReadOnlyList<IReadOnlyList<string>> pred)
    {
        CheckLengths(gold.Count, pred.Count);
        int tp = 0, np = 0, ng = 0;
        for (int s = 0; s < gold.Count; s++)
        {
            if (gold[s].Count != pred[s].Count)
                throw new ArgumentException($"sentence {s}: {gold[s].Count} gold tags but {pred[s].Count} predicted");
            var g = new HashSet<EntitySpan>(Entities(gold[s]));
            var p = Entities(pred[s]);
            ng += g.Count;
            np += p.Count;
            foreach (var e in p) if (g.Contains(e)) tp++;
        }
        return new PrecisionRecallF1(tp, np, ng);
    }

    /// <summary>Entity scores over label ids, names from <paramref name="tagNames"/> (a task's <c>LabelSet.Names</c>).</summary>
    public static PrecisionRecallF1 EntityF1(IReadOnlyList<int[]> gold, IReadOnlyList<int[]> pred, IReadOnlyList<string> tagNames)
    {
        string[] Names(int[] ids) => Array.ConvertAll(ids, i => tagNames[i]);
        return EntityF1(gold.Select(Names).ToArray(), pred.Select(Names).ToArray());
    }

    /// <summary>The most frequent label (ties: the smallest id); -1 when empty.</summary>
    public static int MajorityClass(ReadOnlySpan<int> labels)
    {
        var counts = new SortedDictionary<int, int>();
        foreach (var l in labels) counts[l] = counts.GetValueOrDefault(l) + 1;
        int best = -1, bestN = 0;
        foreach (var (l, n) in counts) if (n > bestN) { best = l; bestN = n; }
        return best;
    }

    /// <summary>
    /// The majority-class baseline: predict the most frequent label of <paramref name="train"/> for every
    /// of <paramref name="evalCount"/> examples; returns those predictions.
    /// </summary>
    public static int[] MajorityBaseline(ReadOnlySpan<int> train, int evalCount)
    {
        var r = new int[evalCount];
        Array.Fill(r, MajorityClass(train));
        return r;
    }

    private static void CheckLengths(int a, int b)
    {
        if (a != b) throw new ArgumentException($"{a} gold values but {b} predictions");
    }
}
