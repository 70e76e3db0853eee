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
    public static ModelProto WithAttentionResidualScale(ModelProto model) =>
        WithBranchScale(model, "/m/layers.0/Add", "o_proj", "scaled_residual");

    /// <summary>
    /// A copy with Mul(branch, 0.5) as node <paramref name="name"/> on the input of node <paramref name="addNode"/> whose
    /// name contains <paramref name="branchMarker"/>.
    /// </summary>
    public static ModelProto WithBranchScale(ModelProto model, string addNode, string branchMarker, string name)
    {
        var proto = model.Clone();
        var add = proto.Graph.Node.First(n => n.Name == addNode);
        int branch = add.Input.ToList().FindIndex(i => i.Contains(branchMarker, StringComparison.Ordinal));
        var half = new TensorProto { Name = "residual_scale", DataType = (int)OnnxElementType.Float };
        half.FloatData.Add(0.5f);
        proto.Graph.Initializer.Add(half);
        var mul = new NodeProto { Name = name, OpType = "Mul" };
        mul.Input.Add(add.Input[branch]);
        mul.Input.Add("residual_scale");
        mul.Output.Add($"{name}_output");
        add.Input[branch] = $"{name}_output";
        proto.Graph.Node.Insert(proto.Graph.Node.IndexOf(add), mul);
        return proto;
    }
}
