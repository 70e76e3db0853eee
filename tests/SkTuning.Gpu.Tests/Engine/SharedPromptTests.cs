using SkTuning.Gpu.Engine;
using SkTuning.Gpu.Import;
using SkTuning.Gpu.Onnx;
using SkTuning.Gpu.Tests.Support;

namespace SkTuning.Gpu.Tests.Engine;

/// <summary>
/// In a causal model the prompt rows see only themselves: running them once and attending to their keys/values as a
/// shared prefix gives the batch's token states and d(loss)/d(prompt) of per-example prompt rows.
/// </summary>
public class SharedPromptTests
{
    [Theory]
    [InlineData("gpt2_opset14")]
    [InlineData("llama_opset14_gqa_theta500k")]
    [InlineData("bloom_opset17_6heads")]
    public void SharedPromptRowsEqualPerExamplePromptRows(string fixture)
    {
        var weights = ModelImporter.Import(OnnxModel.Load(Path.Combine(AppContext.BaseDirectory, "Fixtures", "decoders", fixture, "model.onnx"))).Weights;
        var spec = weights.Spec;
        int d = spec.Hidden, L = spec.Layers, kv = spec.KvDim, m = 3, B = 3, T = 5;
        var rng = new Random(17);
        var ids = Enumerable.Range(0, B * T).Select(_ => rng.Next(spec.VocabSize)).ToArray();
        var mask = new float[B * T];
        for (int b = 0; b < B; b++) mask.AsSpan(b * T, T - b).Fill(1f);   // right padding of 0, 1, 2
        var batch = new TokenBatch(B, T, ids, new int[B * T], mask);
        var prompt = TestData.Random(rng, m * d);
        var w = TestData.Random(rng, B * T * d);   // loss = Σ w ⊙ real tokens' states
        for (int r = 0; r < B * T; r++) if (mask[r] == 0) Array.Clear(w, r * d, d);

        using var backend = new CpuBackend();
        using var engine = new TransformerEngine(backend, spec, weights);
        using var p = backend.UploadNew(prompt);

        // Per example: [prompt; tokens] rows.
        var perExample = backend.ToHost(engine.Forward(batch, prompt: p.All));
        var dHidden = new float[B * (m + T) * d];
        for (int b = 0; b < B; b++) Array.Copy(w, b * T * d, dHidden, (b * (m + T) + m) * d, T * d);
        using var dh1 = backend.UploadNew(dHidden);
        using var dPrompt1 = backend.Allocate(m * d);
        engine.Backward(dh1.All, dPrompt: dPrompt1.All);

        // Shared: the prompt alone (one fully padded dummy token after it), its keys/values as the batch's prefix.
        using var promptEngine = new TransformerEngine(engine);
        var dummy = new TokenBatch(1, 1, [0], [0], [0f]);
        promptEngine.Forward(dummy, prompt: p.All);
        using var prefix = backend.Allocate(2 * L * m * kv);
        promptEngine.PromptKeyValues(prefix.All);
        var shared = backend.ToHost(engine.Forward(batch, prefix: prefix.All));
        using var dh2 = backend.UploadNew(w);
        using var dPrefix = backend.Allocate(prefix.Length);
        engine.Backward(dh2.All, dPrefix: dPrefix.All);
        using var dPrompt2 = backend.Allocate(m * d);
        using var zero = backend.Allocate((m + 1) * d);
        promptEngine.Backward(zero.All, dPrompt: dPrompt2.All, dPromptKeyValues: dPrefix.All);

        var tokens = new float[B * T * d];
        for (int b = 0; b < B; b++) Array.Copy(perExample, (b * (m + T) + m) * d, tokens, b * T * d, T * d);
        for (int r = 0; r < B * T; r++)
        {
            if (mask[r] == 0) continue;
            for (int c = 0; c < d; c++) Assert.Equal(tokens[r * d + c], shared[r * d + c], 1e-3f);
        }
        var g1 = backend.ToHost(dPrompt1.All);
        var g2 = backend.ToHost(dPrompt2.All);
        double error = TestData.Normwise(g2, Array.ConvertAll(g1, v => (double)v));
        Assert.True(error < 1e-5, $"d(prompt) normwise error {error}");
    }
}
