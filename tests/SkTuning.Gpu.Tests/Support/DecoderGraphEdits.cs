using SkTuning.Gpu.Onnx;
using SkTuning.Gpu.Onnx.Proto;

namespace SkTuning.Gpu.Tests.Support;

/// <summary>Edits of committed decoder exports into graphs the engine does not model (the importer must refuse them).</summary>
internal static class DecoderGraphEdits
{
    /// <summary>
    /// A copy of a LLaMA-family export with Mul(o_proj, 0.5) between layer 0's attention output and its residual Add,
    /// as node 'scaled_residual'.
    /// </summary>
    public static ModelProto WithAttentionResidualScale(ModelProto model)
    {
        var proto = model.Clone();
        var add = proto.Graph.Node.First(n => n.Name == "/m/layers.0/Add");
        int branch = add.Input.ToList().FindIndex(i => i.Contains("o_proj", StringComparison.Ordinal));
        var half = new TensorProto { Name = "residual_scale", DataType = (int)OnnxElementType.Float };
        half.FloatData.Add(0.5f);
        proto.Graph.Initializer.Add(half);
        var mul = new NodeProto { Name = "scaled_residual", OpType = "Mul" };
        mul.Input.Add(add.Input[branch]);
        mul.Input.Add("residual_scale");
        mul.Output.Add("scaled_residual_output");
        add.Input[branch] = "scaled_residual_output";
        proto.Graph.Node.Insert(proto.Graph.Node.IndexOf(add), mul);
        return proto;
    }
}
