using SkTuning.Gpu.Engine;
using SkTuning.Gpu.Import;
using SkTuning.Gpu.Onnx;
using SkTuning.Gpu.Tests.Support;

namespace SkTuning.Gpu.Tests.Engine;

/// <summary>
/// A forward with a per-example adapter choice (several runs' SK-Prefixes stacked [L, 2, A, m, kvDim], or SK-Prompts
/// [A, m_p, d]) gives every example the bits a forward of the same batch with its own prefix or prompt shared gives it:
/// RoPE (each stacked prefix rotated to 0..m−1), ALiBi, learned positions, grouped-query and encoder attention.
/// </summary>
public class AdapterChoiceTests
{
    private static ModelWeights Load(string folder, string fixture) =>
        ModelImporter.Import(OnnxModel.Load(Path.Combine(AppContext.BaseDirectory, "Fixtures", folder, fixture, "model.onnx"))).Weights;

    [Theory]
    [InlineData("decoders", "llama_opset14_gqa_theta500k")]
    [InlineData("decoders", "bloom_opset17_6heads")]
    [InlineData("decoders", "gpt2_opset14")]
    [InlineData("decoders", "phi_opset17_partial_rotary")]
    [InlineData("encoders", "roberta_opset14")]
    public void EachExampleGetsTheBitsOfItsOwnPrefixShared(string folder, string fixture)
    {
        var weights = Load(folder, fixture);
        var spec = weights.Spec;
        int L = spec.Layers, kv = spec.KvDim, m = 3, A = 3, B = 5, T = 6, block = m * kv;
        var rng = new Random(23);
        var ids = Enumerable.Range(0, B * T).Select(_ => rng.Next(spec.VocabSize)).ToArray();
        var mask = new float[B * T];
        for (int b = 0; b < B; b++) mask.AsSpan(b * T, T - b % 3).Fill(1f);
        var batch = new TokenBatch(B, T, ids, new int[B * T], mask);
        var prefixes = Enumerable.Range(0, A).Select(_ => TestData.Random(rng, 2 * L * block)).ToArray();
        var stacked = new float[A * 2 * L * block];
        for (int a = 0; a < A; a++)
            for (int s = 0; s < 2 * L; s++) Array.Copy(prefixes[a], s * block, stacked, (s * A + a) * block, block);
        int[] choice = [2, 0, 1, 1, 2];

        using var backend = new CpuBackend();
        using var engine = new TransformerEngine(backend, spec, weights);
        using var stack = backend.UploadNew(stacked);
        var mixed = backend.ToHost(engine.Forward(batch, prefix: stack.All, choice: new AdapterChoice(A, choice)));
        int row = mixed.Length / B;
        for (int a = 0; a < A; a++)
        {
            using var own = backend.UploadNew(prefixes[a]);
            var alone = backend.ToHost(engine.Forward(batch, prefix: own.All));
            for (int b = 0; b < B; b++)
                if (choice[b] == a) Assert.Equal(alone.AsSpan(b * row, row).ToArray(), mixed.AsSpan(b * row, row).ToArray());
        }
        // The rows really differ by their prefix: a kernel that ignored the choice would fail above.
        using var first = backend.UploadNew(prefixes[0]);
        var allFirst = backend.ToHost(engine.Forward(batch, prefix: first.All));
        Assert.NotEqual(allFirst.AsSpan(0, row).ToArray(), mixed.AsSpan(0, row).ToArray());
    }

    [Theory]
    [InlineData("encoders", "roberta_opset14")]
    [InlineData("decoders", "llama_opset14_gqa_theta500k")]
    public void EachExampleGetsTheBitsOfItsOwnPromptShared(string folder, string fixture)
    {
        var weights = Load(folder, fixture);
        var spec = weights.Spec;
        int d = spec.Hidden, m = 2, A = 2, B = 4, T = 5;
        var rng = new Random(29);
        var ids = Enumerable.Range(0, B * T).Select(_ => rng.Next(spec.VocabSize)).ToArray();
        var mask = new float[B * T];
        for (int b = 0; b < B; b++) mask.AsSpan(b * T, T - b % 2).Fill(1f);
        var batch = new TokenBatch(B, T, ids, new int[B * T], mask);
        var prompts = TestData.Random(rng, A * m * d);
        int[] choice = [1, 0, 0, 1];

        using var backend = new CpuBackend();
        using var engine = new TransformerEngine(backend, spec, weights);
        using var stack = backend.UploadNew(prompts);
        var mixed = backend.ToHost(engine.Forward(batch, prompt: stack.All, choice: new AdapterChoice(A, choice)));
        int row = mixed.Length / B;
        for (int a = 0; a < A; a++)
        {
            using var own = backend.UploadNew(prompts.AsSpan(a * m * d, m * d));
            var alone = backend.ToHost(engine.Forward(batch, prompt: own.All));
            for (int b = 0; b < B; b++)
                if (choice[b] == a) Assert.Equal(alone.AsSpan(b * row, row).ToArray(), mixed.AsSpan(b * row, row).ToArray());
                else Assert.NotEqual(alone.AsSpan(b * row, row).ToArray(), mixed.AsSpan(b * row, row).ToArray());
        }
    }

    [Fact]
    public void AChoiceIsForInferenceAndItsIndicesAreChecked()
    {
        var weights = Load("decoders", "gpt2_opset14");
        var spec = weights.Spec;
        var batch = new TokenBatch(2, 2, [1, 2, 3, 4], new int[4], [1f, 1f, 1f, 1f]);
        using var backend = new CpuBackend();
        using var engine = new TransformerEngine(backend, spec, weights);
        using var stack = backend.Allocate(2 * 2 * spec.Layers * spec.KvDim);
        var ex = Assert.Throws<ArgumentException>(() => engine.Forward(batch, prefix: stack.All, training: true, choice: new AdapterChoice(2, [0, 1])));
        Assert.Contains("inference only", ex.Message);
        ex = Assert.Throws<ArgumentException>(() => engine.Forward(batch, prefix: stack.All, choice: new AdapterChoice(2, [0, 2])));
        Assert.Contains("adapter choice of example 1 is 2, outside the 2 stacked adapters", ex.Message);
        engine.Forward(batch, prefix: stack.All, choice: new AdapterChoice(2, [1, 0]));
        using var dHidden = backend.Allocate(2 * 2 * spec.Hidden);
        Assert.Throws<InvalidOperationException>(() => engine.Backward(dHidden.All));
    }
}
