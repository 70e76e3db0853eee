using SkTuning.Gpu.Engine;
using SkTuning.Gpu.Import;
using SkTuning.Gpu.Onnx;
using SkTuning.Gpu.Verification;

namespace SkTuning.Gpu.Tests.Onnx;

/// <summary>
/// The C# decoder fixture writer: what it writes imports back with exactly the spec and weights it generated, and
/// ONNX Runtime on the graph agrees with the engine (CPU) within the verifier's tolerance.
/// </summary>
public sealed class DecoderFixtureTests : IDisposable
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "sktune-decoder-fixture-tests", Guid.NewGuid().ToString("N"));

    public DecoderFixtureTests() => Directory.CreateDirectory(_dir);

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static readonly DecoderFixtureOptions Gpt2 = new()
    {
        Family = ModelFamily.Gpt2, Layers = 2, Hidden = 48, Heads = 4, FfnSize = 96, VocabSize = 97, MaxPositions = 40, Epsilon = 1e-5f, Seed = 3,
    };

    private static readonly DecoderFixtureOptions LlamaGqa = new()
    {
        Family = ModelFamily.Llama, Layers = 3, Hidden = 64, Heads = 4, KvHeads = 2, FfnSize = 80, VocabSize = 101, RopeTheta = 500000f,
        Epsilon = 1e-6f, Seed = 4,
    };

    /// <summary>Qwen2-like: q/k/v biases, one KV head, cached cos/sin tables, tensor data in model.onnx.data.</summary>
    private static readonly DecoderFixtureOptions LlamaCachedExternal = new()
    {
        Family = ModelFamily.Llama, Layers = 2, Hidden = 32, Heads = 4, KvHeads = 1, FfnSize = 48, VocabSize = 60, MaxPositions = 64,
        RopeTheta = 10000f, QkvBias = true, RopeCache = true, Seed = 5,
    };

    public static TheoryData<string> Cases() => ["gpt2", "llama-gqa", "llama-cached-external"];

    private (string Path, ModelWeights Written) Write(string name)
    {
        var (options, external) = name switch
        {
            "gpt2" => (Gpt2, false),
            "llama-gqa" => (LlamaGqa, false),
            _ => (LlamaCachedExternal, true),
        };
        var folder = Path.Combine(_dir, name);
        Directory.CreateDirectory(folder);
        var path = Path.Combine(folder, "model.onnx");
        return (path, DecoderFixtures.Write(path, options, external));
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void WrittenDecoderImportsWithTheOptionsSpecAndWeights(string name)
    {
        var (path, written) = Write(name);
        var imported = ModelImporter.Import(path);
        Assert.Equal(written.Spec, imported.Spec);
        Assert.Equal(("input_ids", "attention_mask", "position_ids"), (imported.InputIdsName, imported.AttentionMaskName, imported.PositionIdsName));
        Assert.Equal("last_hidden_state", imported.HiddenStateNames[^1]);
        var w = imported.Weights;
        Assert.Equal(written.Embeddings.Word, w.Embeddings.Word);
        Assert.Equal(written.Embeddings.Position, w.Embeddings.Position);
        Assert.Equal(written.FinalNormGamma, w.FinalNormGamma);
        Assert.Equal(written.FinalNormBeta, w.FinalNormBeta);
        var roles = typeof(LayerWeights).GetProperties().Where(p => p.PropertyType == typeof(float[])).ToList();
        Assert.Equal(17, roles.Count);
        for (int l = 0; l < written.Layers.Count; l++)
            foreach (var role in roles)
                Assert.True(((float[])role.GetValue(written.Layers[l])!).SequenceEqual((float[])role.GetValue(w.Layers[l])!), $"layer {l} {role.Name}");
    }

    [Fact]
    public void OptionsReachTheSpec()
    {
        var gpt2 = DecoderFixtures.RandomWeights(Gpt2).Spec;
        Assert.Equal((ModelFamily.Gpt2, 2, 48, 4, 4, 12, 96, 97, 40), (gpt2.Family, gpt2.Layers, gpt2.Hidden, gpt2.Heads, gpt2.KvHeads, gpt2.HeadSize, gpt2.FfnSize, gpt2.VocabSize, gpt2.MaxPositions));
        Assert.Equal((NormKind.LayerNorm, ActivationKind.GeluTanh, PositionKind.Absolute, true, true), (gpt2.Norm, gpt2.Activation, gpt2.Positions, gpt2.QkvBias, gpt2.OtherBiases));
        var llama = DecoderFixtures.RandomWeights(LlamaGqa).Spec;
        Assert.Equal((3, 4, 2, 16, 80, 500000f, 1e-6f, 4096), (llama.Layers, llama.Heads, llama.KvHeads, llama.HeadSize, llama.FfnSize, llama.RopeTheta, llama.Epsilon, llama.MaxPositions));
        Assert.Equal((NormKind.RmsNorm, ActivationKind.SwiGlu, PositionKind.Rope, false, false), (llama.Norm, llama.Activation, llama.Positions, llama.QkvBias, llama.OtherBiases));
        var cached = DecoderFixtures.RandomWeights(LlamaCachedExternal).Spec;
        Assert.Equal((1, 8, 64, true), (cached.KvHeads, cached.HeadSize, cached.MaxPositions, cached.QkvBias));
        Assert.Throws<ArgumentException>(() => DecoderFixtures.RandomWeights(LlamaGqa with { KvHeads = 3 }));
        Assert.Throws<ArgumentException>(() => DecoderFixtures.RandomWeights(Gpt2 with { KvHeads = 2 }));
    }

    [Fact]
    public void SmolLM2PresetHasTheRealModelsParameterCount()
    {
        var o = DecoderFixtureOptions.Named("llama:smollm2-135m");
        Assert.Same(o, DecoderFixtureOptions.Named("smollm2-135m"));
        // Per layer q/o d², k/v d·kvDim, SwiGLU 3·d·F, two RMSNorm γ; embeddings V·d and the final γ: SmolLM2-135M's 134,515,008.
        long d = o.Hidden, kvDim = o.KvHeads * o.HeadSize;
        long perLayer = 2 * d * d + 2 * d * kvDim + 3 * d * o.FfnSize + 2 * d;
        Assert.Equal(134_515_008L, o.VocabSize * d + o.Layers * perLayer + d);
        Assert.Throws<SkTuningException>(() => DecoderFixtureOptions.Named("llama:nope"));
    }

    [Fact]
    public void ExternalDataKeepsTheGraphSmall()
    {
        var (path, written) = Write("llama-cached-external");
        var model = OnnxModel.Load(path);
        Assert.True(model.HasExternalData);
        Assert.True(File.Exists(path + ".data"));
        Assert.True(new FileInfo(path).Length < 64 * 1024, $"graph is {new FileInfo(path).Length} bytes");
        Assert.True(new FileInfo(path + ".data").Length >= written.Count * 4 - 64 * 1024);
        Assert.All(model.Initializers.Values.Where(t => t.ElementCount * 4 >= 1024), t => Assert.True(t.IsExternal, t.Name));
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void OnnxRuntimeAndTheEngineAgree(string name)
    {
        var (path, _) = Write(name);
        using var backend = new CpuBackend();
        var report = ModelVerifier.Run(path, backend);
        Assert.True(report.Passed, string.Join("\n", ModelVerifier.Format(report)));
        Assert.Contains(report.Lines, l => l.What.Contains("left-padded", StringComparison.Ordinal));
    }

    [Fact]
    public void WriterIsDeterministicInTheSeed()
    {
        var a = DecoderFixtures.Bytes(DecoderFixtures.RandomWeights(LlamaGqa));
        Assert.Equal(a, DecoderFixtures.Bytes(DecoderFixtures.RandomWeights(LlamaGqa)));
        Assert.NotEqual(a, DecoderFixtures.Bytes(DecoderFixtures.RandomWeights(LlamaGqa with { Seed = 9 })));
    }
}
