using System.Numerics.Tensors;
using SkTuning.Gpu.Import;
using SkTuning.Gpu.Tests.Data;
using SkTuning.Gpu.Tests.Support;

namespace SkTuning.Gpu.Tests.ZeroShot;

public class ZeroShotEncoderTests
{
    private static readonly Lazy<FrozenModel> MiniLm = new(() => FrozenModel.Load("minilm"));

    [Fact]
    public void LastLayerEqualsOnnxRuntimesLastHiddenStateAndAllLayersEndWithIt()
    {
        var model = MiniLm.Value;
        using var encoder = model.CreateEncoder(cache: false);
        const string text = "Classify the sentiment of the text as positive or negative.";
        var last = encoder.Encode(text);
        var all = encoder.Encode(text, allLayers: true);

        var enc = model.Tokenizer.Encode(text);
        long[,] Row(Func<int, long> f) { var a = new long[1, enc.Length]; for (int t = 0; t < enc.Length; t++) a[0, t] = f(t); return a; }
        var ort = OrtRunner.LastHiddenState(File.ReadAllBytes(model.Source.OnnxPath), Row(t => enc.Ids[t]), Row(_ => 1), Row(t => enc.TypeIds[t]));

        Assert.Equal(enc.Length, last.Tokens);
        Assert.Equal(384, last.Dim);
        Assert.Equal(ort.Data, last.Last);
        Assert.Equal(model.Spec.Layers + 1, all.Layers.Count);
        Assert.Equal(ort.Data, all.Last);
        // Intermediate layers are different tensors, not copies of the last.
        Assert.NotEqual(all.Layers[0], all.Layers[^1]);
    }

    [Fact]
    public void RelatedSentencesAreCloserThanUnrelatedOnes()
    {
        using var encoder = MiniLm.Value.CreateEncoder(cache: false);
        var guitar = encoder.Encode("A man is playing a guitar.").MeanPooled();
        var instrument = encoder.Encode("Someone is playing an instrument.").MeanPooled();
        var market = encoder.Encode("The stock market fell sharply today.").MeanPooled();
        float related = TensorPrimitives.CosineSimilarity(guitar, instrument);
        Assert.True(related > 0.5f, $"cosine {related}");
        Assert.True(related > TensorPrimitives.CosineSimilarity(guitar, market));
        Assert.True(related > TensorPrimitives.CosineSimilarity(instrument, market));
    }

    [Fact]
    public void ResultsAreCachedOnDiskAndReadBackIdentically()
    {
        using var dir = new TempDir();
        var model = MiniLm.Value;
        var messages = new List<string>();
        using var encoder = new SkTuning.Gpu.ZeroShot.ZeroShotEncoder(model.Imported, model.Tokenizer, model.Onnx.Outputs.Select(o => o.Name), model.Hash,
            () => model.Onnx.WithExtraOutputs(model.Imported.HiddenStateNames), dir.Path, messages.Add);
        var first = encoder.Encode("a cached prompt", allLayers: true);
        Assert.Single(Directory.GetFiles(dir.Path));
        var second = encoder.Encode("a cached prompt", allLayers: true);
        Assert.Contains(messages, m => m.Contains("cache hit"));
        Assert.Equal(first.Layers.Count, second.Layers.Count);
        for (int l = 0; l < first.Layers.Count; l++) Assert.Equal(first.Layers[l], second.Layers[l]);
    }

    [Fact]
    public void SentencePairsEncodeAsTheModelExpects()
    {
        var tok = MiniLm.Value.Tokenizer;
        var pair = tok.Encode("The cat sat.", "A dog ran.");
        Assert.Equal(101, pair.Ids[0]); // [CLS]
        Assert.Equal(2, pair.Ids.Count(id => id == 102)); // two [SEP]
        Assert.Equal(102, pair.Ids[^1]);
        int firstSep = Array.IndexOf(pair.Ids, 102);
        Assert.All(pair.TypeIds[..(firstSep + 1)], t => Assert.Equal(0, t));
        Assert.All(pair.TypeIds[(firstSep + 1)..], t => Assert.Equal(1, t));
        Assert.Equal(tok.Encode("the cat sat."), tok.Encode("The Cat sat."), (a, b) => a.Ids.SequenceEqual(b.Ids));
    }
}
