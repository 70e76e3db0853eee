using System.Text.Json;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using SkTuning.Gpu.Import;
using SkTuning.Gpu.Onnx;
using SkTuning.Gpu.Onnx.Proto;
using SkTuning.Gpu.Tests.Support;

namespace SkTuning.Gpu.Tests.Import;

/// <summary>
/// The committed decoder fixtures (tests/fixtures/make_decoder_fixtures.py): each imports with the spec and weights
/// the generator recorded, and ONNX Runtime on the graph reproduces PyTorch's hidden states at the names the importer
/// reports.
/// </summary>
public sealed class DecoderImporterTests : IDisposable
{
    private static readonly string Root = Path.Combine(AppContext.BaseDirectory, "Fixtures", "decoders");

    private readonly string _dir = Path.Combine(Path.GetTempPath(), "sktune-decoder-tests", Guid.NewGuid().ToString("N"));

    public DecoderImporterTests() => Directory.CreateDirectory(_dir);

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    public static TheoryData<string> Fixtures() =>
    [
        "gpt2_opset14", "gpt2_opset17_no_position_ids", "llama_opset14_gqa_theta500k", "llama_opset17_rope_cache",
        "qwen2_opset17_qkv_bias", "mistral_opset14_with_past", "llama_opset17_causal_lm", "tinyllama_opset14_external_data",
        "falcon_opset14_mqa", "falcon_opset17_new_arch", "phi_opset17_partial_rotary",
        "bloom_opset14", "bloom_opset17_6heads",
    ];

    private static JsonElement Reference(string name) =>
        JsonDocument.Parse(File.ReadAllText(Path.Combine(Root, name, "reference.json"))).RootElement;

    private static string OnnxPath(string name) => Path.Combine(Root, name, "model.onnx");

    [Theory]
    [MemberData(nameof(Fixtures))]
    public void FixtureImportsWithTheGeneratorsSpec(string name)
    {
        var r = Reference(name);
        var imported = ModelImporter.Import(OnnxPath(name));
        var s = imported.Spec;
        var family = Enum.Parse<ModelFamily>(r.GetProperty("family").GetString()!);
        Assert.Equal(family, s.Family);
        Assert.Equal(r.GetProperty("layers").GetInt32(), s.Layers);
        Assert.Equal(r.GetProperty("hidden").GetInt32(), s.Hidden);
        Assert.Equal(r.GetProperty("heads").GetInt32(), s.Heads);
        Assert.Equal(r.GetProperty("kvHeads").GetInt32(), s.KvHeads);
        Assert.Equal(r.GetProperty("headSize").GetInt32(), s.HeadSize);
        Assert.Equal(r.GetProperty("ffn").GetInt32(), s.FfnSize);
        Assert.Equal((float)r.GetProperty("epsilon").GetDouble(), s.Epsilon);
        Assert.Equal(r.GetProperty("vocab").GetInt32(), s.VocabSize);
        Assert.Equal(r.GetProperty("maxPositions").GetInt32(), s.MaxPositions);
        Assert.Equal(r.GetProperty("qkvBias").GetBoolean(), s.QkvBias);
        Assert.Equal(float.MinValue, s.MaskValue); // HF: torch.finfo(float32).min
        Assert.True(s.Causal);
        bool parallel = r.TryGetProperty("parallel", out var p) && p.GetBoolean();
        Assert.Equal(parallel ? NormPlacement.Parallel : NormPlacement.Pre, s.NormPlacement);
        Assert.Equal(r.TryGetProperty("sharedNorm", out var shared) && shared.GetBoolean(), s.SharedNorm);
        Assert.Equal(family == ModelFamily.Bloom, s.EmbeddingNorm);
        Assert.Equal(0, s.TypeVocabSize);
        Assert.False(s.HasPooler);
        if (family is ModelFamily.Gpt2 or ModelFamily.Bloom)
        {
            var positions = family == ModelFamily.Bloom ? PositionKind.Alibi : PositionKind.Absolute;
            Assert.Equal((NormKind.LayerNorm, ActivationKind.GeluTanh, positions, true), (s.Norm, s.Activation, s.Positions, s.OtherBiases));
            Assert.Equal(0, s.RotaryDim);
        }
        else
        {
            var expected = family switch
            {
                ModelFamily.Falcon => (NormKind.LayerNorm, ActivationKind.GeluErf, PositionKind.Rope, false),
                ModelFamily.Phi => (NormKind.LayerNorm, ActivationKind.GeluTanh, PositionKind.Rope, true),
                _ => (NormKind.RmsNorm, ActivationKind.SwiGlu, PositionKind.Rope, false),
            };
            Assert.Equal(expected, (s.Norm, s.Activation, s.Positions, s.OtherBiases));
            Assert.Equal(r.GetProperty("rotaryDim").GetInt32(), s.RotaryDim);
            Assert.Equal(r.GetProperty("ropeTheta").GetDouble(), s.RopeTheta, (double)s.RopeTheta * 1e-6);
        }
        Assert.Equal(r.GetProperty("parameterCount").GetInt64(), s.ParameterCount);
        Assert.Equal(s.ParameterCount, imported.Weights.Count);
        Assert.Equal(s.Layers + 1, imported.HiddenStateNames.Count);
        Assert.Equal(("input_ids", "attention_mask", null), (imported.InputIdsName, imported.AttentionMaskName, imported.TokenTypeIdsName));
        Assert.Equal(r.GetProperty("positionIds").GetBoolean() ? "position_ids" : null, imported.PositionIdsName);
        var expectedPast = r.GetProperty("past").GetBoolean()
            ? Enumerable.Range(0, s.Layers).SelectMany(l => new[] { $"past_key_values.{l}.key", $"past_key_values.{l}.value" }).ToArray()
            : [];
        Assert.Equal(expectedPast, imported.PastInputNames);
        if (!r.GetProperty("logits").GetBoolean()) Assert.Equal("last_hidden_state", imported.HiddenStateNames[^1]);
        Assert.DoesNotContain('\n', imported.ToString());
    }

    [Theory]
    [MemberData(nameof(Fixtures))]
    public void ImportedWeightsEqualTheGenerators(string name)
    {
        var w = ModelImporter.Import(OnnxPath(name)).Weights;
        foreach (var item in Reference(name).GetProperty("checksums").EnumerateObject())
        {
            if (item.Name == "LmHead") continue; // the LM head is not part of the frozen body
            var parts = item.Name.Split('.');
            float[] values = parts[0] switch
            {
                "Embeddings" => parts[1] switch
                {
                    "Word" => w.Embeddings.Word,
                    "Position" => w.Embeddings.Position,
                    "NormGamma" => w.Embeddings.NormGamma,
                    _ => w.Embeddings.NormBeta,
                },
                "FinalNormGamma" => w.FinalNormGamma,
                "FinalNormBeta" => w.FinalNormBeta,
                "Layers" => (float[])typeof(LayerWeights).GetProperty(parts[2])!.GetValue(w.Layers[int.Parse(parts[1])])!,
                _ => throw new InvalidDataException(item.Name),
            };
            double sum = 0;
            for (int i = 0; i < values.Length; i++) sum += values[i] * (double)(i % 7 + 1);
            Assert.True(Math.Abs(sum - item.Value.GetDouble()) <= 1e-6 * Math.Max(1, Math.Abs(item.Value.GetDouble())),
                $"{name} {item.Name}: checksum {sum} ≠ {item.Value.GetDouble()}");
        }
        foreach (var l in w.Layers)
        {
            var s = w.Spec;
            Assert.Equal(s.Activation == ActivationKind.SwiGlu ? s.Hidden * s.FfnSize : 0, l.WGate.Length);
            Assert.Equal(s.QkvBias ? s.KvDim : 0, l.Bk.Length);
            Assert.Equal(s.OtherBiases ? s.Hidden : 0, l.Bo.Length);
            Assert.Equal(s.Norm == NormKind.LayerNorm ? s.Hidden : 0, l.AttentionNormBeta.Length);
            Assert.Equal(s.SharedNorm ? 0 : s.Hidden, l.FfnNormGamma.Length);
        }
    }

    [Theory]
    [MemberData(nameof(Fixtures))]
    public void OnnxRuntimeReproducesThePyTorchHiddenStates(string name)
    {
        var imported = ModelImporter.Import(OnnxPath(name));
        var model = OnnxModel.Load(OnnxPath(name));
        var names = imported.HiddenStateNames;
        // External data stays referenced: the edited graph must sit beside its data file.
        var edited = Path.Combine(_dir, "model.onnx");
        File.WriteAllBytes(edited, model.WithExtraOutputs(names));
        foreach (var data in Directory.GetFiles(Path.Combine(Root, name), "*.data")) File.Copy(data, Path.Combine(_dir, Path.GetFileName(data)));
        var reference = NpzReader.Read(Path.Combine(Root, name, "reference.npz"));
        using var session = new InferenceSession(edited);
        foreach (var side in new[] { "left", "right" })
        {
            var ids = reference[$"{side}.input_ids"];
            int b = ids.Shape[0];
            DenseTensor<long> Long(string key) => new(reference[$"{side}.{key}"].Longs!, reference[$"{side}.{key}"].Shape);
            var inputs = new List<NamedOnnxValue>
            {
                NamedOnnxValue.CreateFromTensor(imported.InputIdsName, Long("input_ids")),
                NamedOnnxValue.CreateFromTensor(imported.AttentionMaskName!, Long("attention_mask")),
            };
            if (imported.PositionIdsName is { } p) inputs.Add(NamedOnnxValue.CreateFromTensor(p, Long("position_ids")));
            foreach (var past in imported.PastInputNames)
                inputs.Add(NamedOnnxValue.CreateFromTensor(past, new DenseTensor<float>([b, imported.Spec.KvHeads, 0, imported.Spec.HeadSize])));
            using var results = session.Run(inputs, names);
            for (int l = 0; l < names.Count; l++)
            {
                var expected = reference[$"{side}.hidden_{l}"];
                var actual = results.First(x => x.Name == names[l]).AsTensor<float>();
                Assert.Equal(expected.Shape, actual.Dimensions.ToArray());
                double worst = 0, scale = 0;
                var a = actual.ToArray();
                for (int i = 0; i < a.Length; i++)
                {
                    worst = Math.Max(worst, Math.Abs(a[i] - expected.Floats![i]));
                    scale = Math.Max(scale, Math.Abs(expected.Floats[i]));
                }
                Assert.True(worst <= 1e-5 * scale, $"{name} {side} hidden_{l} ('{names[l]}'): max |diff| {worst:G3}, max |ref| {scale:G3}");
            }
        }
    }

    [Fact]
    public void ExtraResidualScaleIsRefusedNamingTheNode()
    {
        // Put Mul(o_proj, 0.5) between layer 0's attention output and its residual Add: a model the engine cannot compute.
        var proto = DecoderGraphEdits.WithAttentionResidualScale(OnnxModel.Load(OnnxPath("llama_opset14_gqa_theta500k")).Proto);
        var e = Assert.Throws<SkTuningException>(() => ModelImporter.Import(OnnxModel.FromProto(proto, "scaled.onnx")));
        Assert.Equal("scaled.onnx: unsupported graph: layer 0: an extra scale on the attention residual branch (node 'scaled_residual')", e.Message);
    }

    [Fact]
    public void QueryNormIsRefusedNamingTheNode()
    {
        // Scale the query by a per-channel γ after its projection (the tail of a q-norm).
        var m = OnnxModel.Load(OnnxPath("llama_opset14_gqa_theta500k"));
        var proto = m.Proto.Clone();
        var reshape = proto.Graph.Node.First(n => n.Name == "/m/layers.0/self_attn/Reshape");
        var gamma = new TensorProto { Name = "q_norm_weight", DataType = (int)OnnxElementType.Float };
        gamma.Dims.Add(64);
        gamma.FloatData.Add(Enumerable.Repeat(1.5f, 64));
        proto.Graph.Initializer.Add(gamma);
        var mul = new NodeProto { Name = "q_norm", OpType = "Mul" };
        mul.Input.Add(reshape.Input[0]);
        mul.Input.Add("q_norm_weight");
        mul.Output.Add("q_norm_output");
        reshape.Input[0] = "q_norm_output";
        proto.Graph.Node.Insert(proto.Graph.Node.IndexOf(reshape), mul);
        var e = Assert.Throws<SkTuningException>(() => LlamaImporter.Import(OnnxModel.FromProto(proto, "qnorm.onnx")));
        Assert.StartsWith("qnorm.onnx: unsupported graph: layer 0: a query norm", e.Message);
        Assert.EndsWith("(node 'q_norm')", e.Message);
    }

    [Fact]
    public void EncoderIsRefusedWhereADecoderIsRequired()
    {
        var bert = OnnxModel.Parse(FixtureModels.BertBytes(new BertFixtureOptions()), "bert.onnx");
        foreach (var import in new Func<OnnxModel, ImportedModel>[] { LlamaImporter.Import, Gpt2Importer.Import })
        {
            var e = Assert.Throws<SkTuningException>(() => import(bert));
            Assert.StartsWith("bert.onnx: unsupported graph: an encoder-only graph", e.Message);
            Assert.Contains("(node '", e.Message);
        }
        Assert.Equal(ModelFamily.Bert, ModelImporter.Import(bert).Spec.Family);
    }

    [Fact]
    public void AlibiSlopesThatAreNotBloomsAreRefusedNamingTheNode()
    {
        // bloom_opset14 has 4 heads; give its ALiBi constant [4, 1] the slopes of the first 4 of 8 heads.
        var proto = OnnxModel.Load(OnnxPath("bloom_opset14")).Proto.Clone();
        var slopes = proto.Graph.Node.Single(n => n.OpType == "Constant" && n.Attribute[0].T is { DataType: (int)OnnxElementType.Float } t
                                                  && t.Dims.SequenceEqual([4L, 1L]));
        var wrong = new TensorProto { DataType = (int)OnnxElementType.Float };
        wrong.Dims.Add([4, 1]);
        wrong.FloatData.Add([0.5f, 0.25f, 0.125f, 0.0625f]);
        slopes.Attribute[0].T = wrong;
        var e = Assert.Throws<SkTuningException>(() => ModelImporter.Import(OnnxModel.FromProto(proto, "slopes.onnx")));
        Assert.Equal("slopes.onnx: unsupported graph: ALiBi slopes [0.5, 0.25, 0.125, 0.0625] are not BLOOM's for 4 heads " +
                     "[0.25, 0.0625, 0.01562, 0.003906] (node '/m/h.0/self_attention/Softmax')", e.Message);
    }

    [Fact]
    public void GptGraphIsNotABloom()
    {
        var e = Assert.Throws<SkTuningException>(() => BloomImporter.Import(OnnxPath("gpt2_opset14")));
        Assert.Contains("unsupported graph: Absolute positions in a BLOOM graph (no ALiBi term on the attention scores)", e.Message);
        Assert.DoesNotContain('\n', e.Message);
    }

    [Fact]
    public void GptGraphIsNotALlama()
    {
        var e = Assert.Throws<SkTuningException>(() => LlamaImporter.Import(OnnxPath("gpt2_opset14")));
        Assert.Contains("unsupported graph: learned absolute positions in a LLaMA graph", e.Message);
    }
}
