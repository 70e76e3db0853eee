using SkTuning.Gpu.Engine;
using SkTuning.Gpu.Import;
using SkTuning.Gpu.Tokenization;
using SkTuning.Gpu.Training;
using Xunit.Abstractions;

namespace SkTuning.Gpu.Tests.Engine;

/// <summary>
/// SK-Prefix's defining property on causal decoders: the model-initialised per-layer adapter turns the semantic text's
/// zero-shot states into exactly the keys/values the text would have as a prefix of the input, so the engine's output
/// for x with that prefix equals ONNX Runtime's output for the concatenated ids [text; x] on x's positions. (BERT is not
/// causal — its text states would depend on x — so the property does not hold there and is not tested.)
/// </summary>
public sealed class SkPrefixInvariantTests(ITestOutputHelper output) : IDisposable
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "sktune-prefix-invariant", Guid.NewGuid().ToString("N"));

    public void Dispose()
    {
        if (Directory.Exists(_dir)) Directory.Delete(_dir, recursive: true);
    }

    /// <summary>
    /// FrozenModel.Load needs a tokenizer beside the graph: the fixture's model.onnx goes into a temp folder with the
    /// gpt2-bpe tokenizer fixture (607 tokens, within every decoder fixture's 1,024-row embedding table).
    /// </summary>
    private FrozenModel Load(string fixture)
    {
        Directory.CreateDirectory(_dir);
        File.Copy(Path.Combine(DecoderParityTests.Root, fixture, "model.onnx"), Path.Combine(_dir, "model.onnx"));
        var tokenizer = Path.Combine(AppContext.BaseDirectory, "Fixtures", "tokenizers", "gpt2-bpe");
        foreach (var file in Directory.GetFiles(tokenizer)) File.Copy(file, Path.Combine(_dir, Path.GetFileName(file)));
        return FrozenModel.Load(_dir);
    }

    [Theory]
    [InlineData("gpt2_opset14")]
    [InlineData("llama_opset14_gqa_theta500k")]
    [InlineData("falcon_opset14_mqa")]
    [InlineData("falcon_opset17_new_arch")]
    [InlineData("phi_opset17_partial_rotary")]
    [InlineData("bloom_opset14")]
    public void ModelInitialisedPerLayerPrefixEqualsPrependingTheText(string fixture)
    {
        var model = Load(fixture);
        var spec = model.Spec;
        Assert.True(spec.Causal);
        int d = spec.Hidden, L = spec.Layers;
        using var encoder = model.CreateEncoder(cache: false);

        // The semantic text's states entering each layer (ONNX Runtime, the zero-shot pass).
        var text = model.Tokenizer.Encode("the movie was a delight from start to finish");
        int m = text.Length;
        Assert.True(m >= 3, $"text of {m} tokens");
        var states = encoder.Run(text, allLayers: true);
        Assert.Equal(L + 1, states.Layers.Count);
        var sources = ModelProjections.AttentionInputs(model.Weights, states.Layers.Take(L).ToArray());

        using var backend = new CpuBackend();
        var shape = new AdapterShape(AdapterKind.Prefix, AdapterMode.PerLayer, m, d, L, spec.KvDim);
        using var adapter = new SemanticAdapter(backend, shape, sources, dropout: 0f, init: AdapterInit.Model, model: model.Weights);
        using var p = new TrainableParameters(backend, adapter.Tensors());
        adapter.Initialize(p, new Random(1));
        var prefix = adapter.Forward(p, training: false, seed: 0);

        // x: three examples of different lengths, left-padded (the engine's positions skip the padding).
        var rng = new Random(7);
        int[] lengths = [6, 2, 4];
        int B = lengths.Length, T = lengths.Max();
        var ids = new int[B * T];
        var mask = new float[B * T];
        for (int b = 0; b < B; b++)
            for (int t = T - lengths[b]; t < T; t++) (ids[b * T + t], mask[b * T + t]) = (rng.Next(1, model.Tokenizer.VocabularySize), 1f);
        var batch = new TokenBatch(B, T, ids, new int[B * T], mask);
        using var engine = new TransformerEngine(backend, spec, model.Weights);
        var ours = backend.ToHost(engine.Forward(batch, default, prefix));

        double worstNorm = 0, worstElement = 0;
        for (int b = 0; b < B; b++)
        {
            int n = lengths[b];
            var x = ids.AsSpan(b * T + T - n, n).ToArray();
            var joined = encoder.Run(new EncodedText([.. text.Ids, .. x], new int[m + n]), allLayers: true).Layers[^1];
            var expected = Enumerable.Range(m * d, n * d).Select(i => (double)joined[i]).ToArray();
            var got = ours.AsSpan((b * T + T - n) * d, n * d).ToArray();
            worstNorm = Math.Max(worstNorm, Support.TestData.Normwise(got, expected));
            worstElement = Math.Max(worstElement, Support.TestData.MaxRelError(got, expected));
        }
        output.WriteLine($"{fixture} (text of {m} tokens): engine with the prefix vs ORT on [text; x]: normwise {worstNorm:E2}, element-wise {worstElement:E2}");
        Assert.True(worstNorm <= 1e-4, $"max|diff| / max|ref| = {worstNorm:E2}");
    }
}
