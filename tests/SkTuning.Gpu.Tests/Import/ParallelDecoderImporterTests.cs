using SkTuning.Gpu.Import;
using SkTuning.Gpu.Onnx;
using SkTuning.Gpu.Onnx.Proto;
using SkTuning.Gpu.Tests.Support;

namespace SkTuning.Gpu.Tests.Import;

/// <summary>
/// Falcon and Phi graphs the engine does not compute, and each family's graph offered to the other's importer: refused
/// with one line naming the file, the layer and the node. (The committed fixtures themselves are read in
/// <see cref="DecoderImporterTests"/>.)
/// </summary>
public class ParallelDecoderImporterTests
{
    private static OnnxModel Fixture(string name) =>
        OnnxModel.Load(Path.Combine(AppContext.BaseDirectory, "Fixtures", "decoders", name, "model.onnx"));

    [Fact]
    public void ScaleOnAParallelBranchIsRefusedNamingTheNode()
    {
        // Mul(dense, 0.5) between Phi's attention output and the branch sum: not attn + ffn + x.
        var proto = DecoderGraphEdits.WithBranchScale(Fixture("phi_opset17_partial_rotary").Proto, "/m/layers.0/Add", "dense", "scaled_branch");
        var e = Assert.Throws<SkTuningException>(() => ModelImporter.Import(OnnxModel.FromProto(proto, "phi.onnx")));
        Assert.Equal("phi.onnx: unsupported graph: layer 0: an extra scale on the attention branch of the parallel block (node 'scaled_branch')", e.Message);
    }

    [Fact]
    public void StridedCutOfTheFusedQueryKeyValueIsRefusedNamingTheNode()
    {
        // Falcon's query = fused[..., :-2, :] taken with step 2: not a head layout the engine can permute into q | k | v.
        var proto = Fixture("falcon_opset14_mqa").Proto.Clone();
        var slice = proto.Graph.Node.First(n => n.Name == "/m/h.0/self_attention/Slice");
        var two = new TensorProto { Name = "slice_step_two", DataType = (int)OnnxElementType.Int64 };
        two.Dims.Add(1);
        two.Int64Data.Add(2);
        proto.Graph.Initializer.Add(two);
        slice.Input[4] = "slice_step_two";
        var e = Assert.Throws<SkTuningException>(() => FalconImporter.Import(OnnxModel.FromProto(proto, "falcon.onnx")));
        Assert.Equal("falcon.onnx: unsupported graph: layer 0: a strided Slice of the fused projection (node '/m/h.0/self_attention/Slice')", e.Message);
    }

    [Fact]
    public void EachFamilysGraphIsRefusedByTheOthersImporter()
    {
        var e = Assert.Throws<SkTuningException>(() => FalconImporter.Import(Fixture("phi_opset17_partial_rotary")));
        Assert.StartsWith($"{Fixture("phi_opset17_partial_rotary").FilePath}: unsupported graph: partial rotary (8 of 16 dimensions) in a Falcon graph", e.Message);
        e = Assert.Throws<SkTuningException>(() => PhiImporter.Import(Fixture("falcon_opset17_new_arch")));
        Assert.Contains("unsupported graph: a norm per branch in a Phi graph", e.Message);
        e = Assert.Throws<SkTuningException>(() => PhiImporter.Import(Fixture("llama_opset14_gqa_theta500k")));
        Assert.Contains("unsupported graph: sequential attention and FFN in a Phi graph", e.Message);
        e = Assert.Throws<SkTuningException>(() => LlamaImporter.Import(Fixture("falcon_opset14_mqa")));
        Assert.Contains("unsupported graph: LayerNorm in a LLaMA graph", e.Message);
        Assert.DoesNotContain('\n', e.Message);
    }
}
