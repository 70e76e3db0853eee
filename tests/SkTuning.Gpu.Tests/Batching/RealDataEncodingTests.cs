using SkTuning.Gpu.Data;
using SkTuning.Gpu.Import;
using SkTuning.Gpu.Tests.Data;
using SkTuning.Gpu.Training;
using Xunit.Abstractions;

namespace SkTuning.Gpu.Tests.Batching;

public class RealDataEncodingTests(ITestOutputHelper output)
{
    private static readonly Lazy<FrozenModel> MiniLm = new(() => FrozenModel.Load("minilm"));

    [DataFact]
    public void RtePairsCutTo64TokensKeepBothSepsAndContiguousTypes()
    {
        var tok = MiniLm.Value.Tokenizer;
        var train = TaskCatalog.Get("rte").Load(SharedData.Root!).Train;
        var d = ExampleEncoder.Encode(tok, train, TaskKind.Classification, 64);
        int sep = tok.Encode("a").Ids[^1], cls = tok.Encode("a").Ids[0];
        output.WriteLine($"RTE train: {d.TruncatedCount} of {d.Count} pairs truncated to 64 tokens");
        Assert.InRange(d.TruncatedCount, 1, d.Count - 1);
        for (int i = 0; i < d.Count; i++)
        {
            var e = d.Examples[i];
            int full = tok.Encode(train[i].Text, train[i].TextPair).Length;
            Assert.Equal(full > 64, e.Truncated);
            Assert.Equal(Math.Min(full, 64), e.Length);
            Assert.Equal(cls, e.Ids[0]);
            Assert.Equal(sep, e.Ids[^1]);
            int boundary = Array.IndexOf(e.TypeIds, 1);
            Assert.True(boundary > 2, $"{e.Source}: no second sentence");
            Assert.Equal(sep, e.Ids[boundary - 1]);
            Assert.All(e.TypeIds[..boundary], t => Assert.Equal(0, t));
            Assert.All(e.TypeIds[boundary..], t => Assert.Equal(1, t));
            Assert.Equal(train[i].Label, e.Label);
        }
    }

    [DataFact]
    public void Wnut17WordsEachLabelOneToken()
    {
        var tok = MiniLm.Value.Tokenizer;
        var train = TaskCatalog.Get("wnut17").Load(SharedData.Root!).Train;
        var d = ExampleEncoder.Encode(tok, train, TaskKind.TokenClassification, 32);
        output.WriteLine($"WNUT17 train: {d.TruncatedCount} of {d.Count} sentences truncated to 32 tokens");
        for (int i = 0; i < d.Count; i++)
        {
            var e = d.Examples[i];
            var words = train[i].Words!;
            Assert.InRange(e.Length, 2, 32);
            Assert.Equal(e.Length, e.TokenLabels!.Length);
            Assert.Equal(e.Truncated, e.WordStarts!.Length < words.Length);
            var labelled = Enumerable.Range(0, e.Length).Where(t => e.TokenLabels[t] != EncodedExample.IgnoreLabel).ToArray();
            Assert.Equal(e.WordStarts, labelled);
            Assert.Equal(train[i].WordLabels![..e.WordStarts.Length], labelled.Select(t => e.TokenLabels[t]));
        }
    }
}
