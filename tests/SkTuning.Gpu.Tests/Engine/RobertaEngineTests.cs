using SkTuning.Gpu.Engine;
using SkTuning.Gpu.Import;
using SkTuning.Gpu.Tests.Support;
using Xunit.Abstractions;

namespace SkTuning.Gpu.Tests.Engine;

/// <summary>
/// The engine on the committed RoBERTa-style exports: its positions are the ones the graph computed (padding_idx +
/// cumsum of the real tokens, padding at padding_idx), every layer input and the final state match PyTorch's on the
/// left- and right-padded reference batches, and with an SK-Prompt and SK-Prefix the forward and the prompt/prefix
/// gradients match the fp64 reference (prompt rows take no position; the tokens keep theirs, as in BERT).
/// </summary>
public class RobertaEngineTests(ITestOutputHelper output)
{
    [Theory]
    [MemberData(nameof(EncoderFixtures.Names), MemberType = typeof(EncoderFixtures))]
    public void EngineMatchesPyTorchOnEveryLayer(string name)
    {
        var imported = ModelImporter.Import(EncoderFixtures.OnnxPath(name));
        var spec = imported.Spec;
        var reference = NpzReader.Read(Path.Combine(EncoderFixtures.Folder(name), "reference.npz"));
        using var backend = new CpuBackend();
        using var engine = new TransformerEngine(backend, spec, imported.Weights);
        foreach (var side in new[] { "left", "right" })
        {
            var batch = EncoderFixtures.Batch(reference, side);
            int B = batch.Batch, T = batch.SeqLen, d = spec.Hidden;
            Assert.Contains(0f, batch.Mask);
            // The graph's rule on input_ids, padding included, is the engine's rule on the mask.
            Assert.Equal(reference[$"{side}.position_ids"].Longs!.Select(v => (int)v), TransformerEngine.TokenPositions(batch, spec));
            Assert.Equal(reference[$"{side}.position_ids"].Longs!.Select(v => (int)v), EngineReference.Positions(spec, batch, 0, 0).Tokens);
            var final = backend.ToHost(engine.Forward(batch));
            for (int l = 0; l <= spec.Layers; l++)
            {
                var ours = l < spec.Layers ? backend.ToHost(engine.LayerInput(l)) : final;
                var expected = reference[$"{side}.hidden_{l}"].Floats!;
                Assert.Equal(expected.Length, ours.Length);
                double diff = 0, scale = 0;
                for (int r = 0; r < B * T; r++)
                {
                    if (batch.Mask[r] == 0) continue; // padded rows: neither side's contract
                    for (int j = 0; j < d; j++)
                    {
                        diff = Math.Max(diff, Math.Abs(ours[r * d + j] - expected[r * d + j]));
                        scale = Math.Max(scale, Math.Abs(expected[r * d + j]));
                    }
                }
                output.WriteLine($"{name} {side} hidden_{l}: max|diff| / max|ref| = {diff / scale:E2}");
                Assert.True(diff <= 1e-4 * scale, $"{name} {side} hidden_{l}: max|diff| / max|ref| = {diff / scale:E2}");
            }
        }
    }

    [Theory]
    [InlineData("left")]
    [InlineData("right")]
    public void PromptAndPrefixForwardAndGradientsMatchTheFp64Reference(string side)
    {
        var imported = ModelImporter.Import(EncoderFixtures.OnnxPath("roberta_opset17_no_token_types"));
        var (spec, weights) = (imported.Spec, imported.Weights);
        var batch = EncoderFixtures.Batch(NpzReader.Read(Path.Combine(EncoderFixtures.Folder("roberta_opset17_no_token_types"), "reference.npz")), side);
        var rng = new Random(5);
        int promptLen = 2, prefixLen = 3, d = spec.Hidden;
        var prompt = TestData.Random(rng, promptLen * d);
        var prefix = TestData.Random(rng, 2 * spec.Layers * prefixLen * spec.KvDim);
        var dOut = TestData.Random(rng, batch.Batch * (promptLen + batch.SeqLen) * d);

        using var backend = new CpuBackend();
        using var engine = new TransformerEngine(backend, spec, weights);
        using var p = backend.UploadNew(prompt);
        using var k = backend.UploadNew(prefix);
        using var dh = backend.UploadNew(dOut);
        // The gradients start at g0 ≠ 0 and come back minus g0: the backward accumulates.
        var g0p = TestData.Random(rng, prompt.Length, 0.1f);
        var g0k = TestData.Random(rng, prefix.Length, 0.1f);
        using var dp = backend.UploadNew(g0p);
        using var dk = backend.UploadNew(g0k);
        var hidden = backend.ToHost(engine.Forward(batch, p.All, k.All));
        engine.Backward(dh.All, dp.All, dk.All);
        var dPrompt = backend.ToHost(dp.All).Select((v, i) => v - g0p[i]).ToArray();
        var dPrefix = backend.ToHost(dk.All).Select((v, i) => v - g0k[i]).ToArray();

        var (expected, g) = EngineReference.ForwardBackward(spec, EngineReference.Tensors(weights), batch, TestData.ToDouble(prompt),
            TestData.ToDouble(prefix), TestData.ToDouble(dOut));
        double norm = TestData.Normwise(hidden, expected);
        double gp = TestData.Normwise(dPrompt, g.Prompt), gk = TestData.Normwise(dPrefix, g.Prefix);
        output.WriteLine($"{side}: hidden normwise {norm:E2}, d prompt {gp:E2}, d prefix {gk:E2}");
        Assert.True(norm <= 1e-5, $"hidden normwise {norm:E2}");
        Assert.True(gp <= 1e-4 && gk <= 1e-4, $"d prompt {gp:E2}, d prefix {gk:E2}");
    }
}
