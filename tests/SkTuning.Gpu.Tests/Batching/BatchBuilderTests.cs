using SkTuning.Gpu.Data;
using SkTuning.Gpu.Training;

namespace SkTuning.Gpu.Tests.Batching;

public class BatchBuilderTests
{
    private const int Pad = 99;

    private static EncodedExample Text(int length, int label, int type1From = int.MaxValue) => new()
    {
        Kind = TaskKind.Classification,
        Ids = Enumerable.Range(1, length).ToArray(),
        TypeIds = Enumerable.Range(0, length).Select(i => i >= type1From ? 1 : 0).ToArray(),
        Label = label,
    };

    [Fact]
    public void RowsArePaddedToTheLongestWithAZeroMask()
    {
        var examples = new[] { Text(3, 0), Text(5, 1, type1From: 3), Text(2, 1) };
        var b = BatchBuilder.Build(examples, [2, 1], Pad);
        Assert.Equal(2, b.Size);
        Assert.Equal(5, b.Tokens.SeqLen);
        Assert.Equal(new[] { 1, 2, Pad, Pad, Pad, 1, 2, 3, 4, 5 }, b.Tokens.Ids);
        Assert.Equal(new[] { 0, 0, 0, 0, 0, 0, 0, 0, 1, 1 }, b.Tokens.Types);
        Assert.Equal(new[] { 1f, 1, 0, 0, 0, 1, 1, 1, 1, 1 }, b.Tokens.Mask);
        Assert.Equal(new[] { 1, 1 }, b.Labels);
        Assert.Equal(new[] { 2, 1 }, b.Indices);
        Assert.Null(b.Values);
        Assert.Null(b.TokenLabels);
        Assert.Equal(7, b.RealTokens);
        Assert.Equal(0.3, b.PaddingFraction, 9);
    }

    [Fact]
    public void RegressionBatchesCarryValues()
    {
        var e = new[] { Text(2, -1) with { Kind = TaskKind.Regression, Value = 1.5f }, Text(4, -1) with { Kind = TaskKind.Regression, Value = 4f } };
        var b = BatchBuilder.Build(e, [1, 0], 0);
        Assert.Equal(new[] { 4f, 1.5f }, b.Values);
        Assert.Null(b.Labels);
    }

    [Fact]
    public void TokenLabelsArePaddedWithIgnore()
    {
        const int I = EncodedExample.IgnoreLabel;
        EncodedExample Tagged(int[] labels) => new()
        {
            Kind = TaskKind.TokenClassification,
            Ids = new int[labels.Length],
            TypeIds = new int[labels.Length],
            TokenLabels = labels,
        };
        var b = BatchBuilder.Build([Tagged([I, 3, I, 1, I]), Tagged([I, 2, I])], [0, 1], 0);
        Assert.Equal(new[] { I, 3, I, 1, I, I, 2, I, I, I }, b.TokenLabels);
        Assert.Equal(new[] { 1f, 1, 1, 1, 1, 1, 1, 1, 0, 0 }, b.Tokens.Mask);
    }

    [Fact]
    public void BadIndicesAndMixedKindsAreRejected()
    {
        var e = new[] { Text(2, 0), Text(2, 0) with { Kind = TaskKind.Regression, Value = 1 } };
        Assert.Throws<ArgumentException>(() => BatchBuilder.Build(e, [], 0));
        Assert.Throws<ArgumentException>(() => BatchBuilder.Build(e, [2], 0));
        Assert.Throws<ArgumentException>(() => BatchBuilder.Build(e, [0, 1], 0));
    }
}
