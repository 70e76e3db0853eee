using SkTuning.Gpu.Data;
using SkTuning.Gpu.Training;

namespace SkTuning.Gpu.Tests.Training;

public class MetricsTests
{
    // TP=6, TN=3, FP=1, FN=2 (positive class 1), 12 examples.
    private static (int[] Gold, int[] Pred) Confusion()
    {
        var gold = new List<int>();
        var pred = new List<int>();
        void Add(int g, int p, int n) { for (int i = 0; i < n; i++) { gold.Add(g); pred.Add(p); } }
        Add(1, 1, 6); Add(0, 0, 3); Add(0, 1, 1); Add(1, 0, 2);
        return (gold.ToArray(), pred.ToArray());
    }

    [Fact]
    public void MatthewsOnTwoByTwo()
    {
        var (g, p) = Confusion();
        // (TP·TN − FP·FN) / sqrt((TP+FP)(TP+FN)(TN+FP)(TN+FN)) = (18 − 2) / sqrt(7·8·4·5) = 16 / sqrt(1120) = 0.478091
        Assert.Equal(16 / Math.Sqrt(1120), Metrics.Matthews(g, p), 12);
        Assert.Equal(0.4781, Metrics.Matthews(g, p), 4);
    }

    [Fact]
    public void MatthewsMulticlassGorodkin()
    {
        int[] g = [0, 0, 1, 1, 2, 2], p = [0, 1, 1, 1, 2, 0];
        // c = 4 correct, s = 6; t = (2,2,2), p = (2,3,1); Σ p_k t_k = 4 + 6 + 2 = 12
        // (c·s − 12) / sqrt((36 − (4+9+1)) (36 − 12)) = 12 / sqrt(22·24) = 12 / sqrt(528) = 0.522233
        Assert.Equal(12 / Math.Sqrt(528), Metrics.Matthews(g, p), 12);
    }

    [Fact]
    public void MatthewsIsZeroForConstantPredictionAndOneForPerfect()
    {
        int[] g = [0, 1, 1, 0];
        Assert.Equal(0, Metrics.Matthews(g, [1, 1, 1, 1]));
        Assert.Equal(1, Metrics.Matthews(g, g), 12);
        Assert.Equal(-1, Metrics.Matthews(g, [1, 0, 0, 1]), 12);
    }

    [Fact]
    public void AccuracyAndBinaryF1()
    {
        var (g, p) = Confusion();
        // accuracy = (6 + 3) / 12 = 0.75
        Assert.Equal(0.75, Metrics.Accuracy(g, p), 12);
        // P = 6/7, R = 6/8, F1 = 2·TP / (predicted + gold) = 12 / (7 + 8) = 0.8
        var s = Metrics.F1(g, p, positive: 1);
        Assert.Equal(6.0 / 7, s.Precision, 12);
        Assert.Equal(0.75, s.Recall, 12);
        Assert.Equal(0.8, s.F1, 12);
        // negative class: TP = 3, predicted 0 = 5, gold 0 = 4 → F1 = 6 / 9
        Assert.Equal(6.0 / 9, Metrics.F1(g, p, positive: 0).F1, 12);
    }

    [Fact]
    public void MacroF1()
    {
        int[] g = [0, 0, 1, 1, 2, 2], p = [0, 1, 1, 1, 2, 0];
        // class 0: TP 1, pred 2, gold 2 → 2/4 = 0.5; class 1: TP 2, pred 3, gold 2 → 4/5 = 0.8;
        // class 2: TP 1, pred 1, gold 2 → 2/3; mean = (0.5 + 0.8 + 0.666667) / 3 = 0.655556
        Assert.Equal((0.5 + 0.8 + 2.0 / 3) / 3, Metrics.MacroF1(g, p, 3), 12);
    }

    [Fact]
    public void Pearson()
    {
        double[] x = [1, 2, 3, 4], y = [2, 4, 5, 9];
        // dx = (−1.5, −0.5, 0.5, 1.5), dy = (−3, −1, 0, 4): Σdxdy = 4.5 + 0.5 + 0 + 6 = 11, Σdx² = 5, Σdy² = 26
        // r = 11 / sqrt(5·26) = 11 / sqrt(130) = 0.964764
        Assert.Equal(11 / Math.Sqrt(130), Metrics.Pearson(x, y), 12);
        Assert.Equal(0, Metrics.Pearson(x, [3, 3, 3, 3]));
    }

    [Fact]
    public void SpearmanWithTies()
    {
        double[] x = [1, 2, 2, 3], y = [1, 3, 2, 4];
        // ranks x = (1, 2.5, 2.5, 4), y = (1, 3, 2, 4); both mean 2.5
        // dx = (−1.5, 0, 0, 1.5), dy = (−1.5, 0.5, −0.5, 1.5): Σdxdy = 4.5, Σdx² = 4.5, Σdy² = 5
        // ρ = 4.5 / sqrt(4.5·5) = 4.5 / sqrt(22.5) = 0.948683
        Assert.Equal(new double[] { 1, 2.5, 2.5, 4 }, Metrics.Ranks(x));
        Assert.Equal(4.5 / Math.Sqrt(22.5), Metrics.Spearman(x, y), 12);
        // monotone but nonlinear → 1
        Assert.Equal(1, Metrics.Spearman([1, 2, 3, 4], [1, 8, 27, 64]), 12);
    }

    [Fact]
    public void EntitiesFollowSeqeval()
    {
        // I- without a preceding B- of the same type starts an entity; B- always starts one.
        string[] tags = ["O", "I-PER", "I-PER", "I-LOC", "B-LOC", "I-LOC", "O", "I-MISC"];
        Assert.Equal(
            new[] { new EntitySpan("PER", 1, 3), new EntitySpan("LOC", 3, 4), new EntitySpan("LOC", 4, 6), new EntitySpan("MISC", 7, 8) },
            Metrics.Entities(tags));
        Assert.Equal(new[] { new EntitySpan("ORG", 0, 1), new EntitySpan("ORG", 1, 2) }, Metrics.Entities(["B-ORG", "B-ORG"]));
    }

    [Fact]
    public void EntityF1WithPartialSpans()
    {
        string[][] gold =
        [
            ["B-PER", "I-PER", "O", "B-LOC"], // PER[0,2) LOC[3,4)
            ["B-ORG", "I-ORG"],               // ORG[0,2)
            ["B-PER"],                        // PER[0,1)
        ];
        string[][] pred =
        [
            ["B-PER", "O", "O", "B-LOC"],     // PER[0,1): one token short → FP and FN; LOC correct
            ["I-ORG", "I-ORG"],               // ORG[0,2): I- starts the entity → correct
            ["B-LOC"],                        // wrong type → FP and FN
        ];
        // gold 4, predicted 4, TP 2 → P = R = F1 = 0.5
        var s = Metrics.EntityF1(gold, pred);
        Assert.Equal((2, 4, 4), (s.TruePositives, s.Predicted, s.Gold));
        Assert.Equal(0.5, s.Precision, 12);
        Assert.Equal(0.5, s.Recall, 12);
        Assert.Equal(0.5, s.F1, 12);
        // a perfect prediction
        Assert.Equal(1, Metrics.EntityF1(gold, gold).F1, 12);
    }

    [Fact]
    public void EntityF1OverIds()
    {
        var labels = LabelSet.FromTags(["O", "B-PER", "I-PER"]); // O, B-PER, I-PER
        // gold PER[0,2); predicted PER[0,1) and PER[1,2): 0 of 2 predictions right, 0 of 1 gold found
        var s = Metrics.EntityF1([new[] { 1, 2 }], [new[] { 1, 1 }], labels.Names);
        Assert.Equal((0, 2, 1), (s.TruePositives, s.Predicted, s.Gold));
        Assert.Equal(0, s.F1);
    }

    [Fact]
    public void MajorityBaseline()
    {
        int[] train = [1, 0, 1, 2, 1, 0];
        Assert.Equal(1, Metrics.MajorityClass(train));
        Assert.Equal(0, Metrics.MajorityClass([2, 0, 2, 0])); // tie → smallest id
        var pred = Metrics.MajorityBaseline(train, 4);
        Assert.Equal(new[] { 1, 1, 1, 1 }, pred);
        Assert.Equal(0.5, Metrics.Accuracy([1, 0, 1, 2], pred), 12);
    }

    [Fact]
    public void LengthMismatchThrows()
    {
        Assert.Throws<ArgumentException>(() => Metrics.Accuracy([1, 2], [1]));
    }
}
