using System.Globalization;
using System.Runtime.InteropServices;
using Google.Protobuf;
using Google.Protobuf.Collections;
using SkTuning.Gpu.Onnx.Proto;

namespace SkTuning.Gpu.Onnx;

/// <summary>
/// Builds an ONNX graph node by node the way a torch export names things (<c>Op_index</c> nodes, numbered values,
/// Constant nodes for scalars and shapes), for the fixture writers. Initializer data goes inline (raw_data) or, with an
/// <see cref="ExternalData"/> sink, to an external-data file (ONNX's <c>data_location = EXTERNAL</c> with
/// location/offset/length), so a model over protobuf's 2 GB limit can be written.
/// </summary>
internal sealed class OnnxGraphBuilder(OnnxGraphBuilder.ExternalData? external = null)
{
    private int _value = 1;

    /// <summary>
    /// Where external initializer data goes: a stream written front to back, named <paramref name="Location"/> relative
    /// to the .onnx file. Tensors smaller than <paramref name="Threshold"/> bytes stay inline (as onnx's
    /// <c>size_threshold</c>), which keeps shape constants readable without the data file.
    /// </summary>
    internal sealed record ExternalData(Stream Stream, string Location, int Threshold = 1024);

    public GraphProto Graph { get; } = new();

    /// <summary>The model around <see cref="Graph"/> at <paramref name="opset"/>.</summary>
    public ModelProto Model(int opset = 13) => new()
    {
        IrVersion = 7,
        ProducerName = "sktune-fixture",
        ProducerVersion = "1",
        Graph = Graph,
        OpsetImport = { new OperatorSetIdProto { Domain = "", Version = opset } },
    };

    /// <summary>Appends a node; returns its (single) output name.</summary>
    public string Node(string op, string[] inputs, Action<RepeatedField<AttributeProto>>? attributes = null, string? output = null)
    {
        var node = new NodeProto { OpType = op, Name = $"{op}_{Graph.Node.Count}" };
        node.Input.Add(inputs);
        output ??= $"v{_value++}";
        node.Output.Add(output);
        attributes?.Invoke(node.Attribute);
        Graph.Node.Add(node);
        return output;
    }

    /// <summary>Appends a node with several outputs (Split); returns them.</summary>
    public string[] Node(string op, string[] inputs, int outputs, Action<RepeatedField<AttributeProto>>? attributes = null)
    {
        var node = new NodeProto { OpType = op, Name = $"{op}_{Graph.Node.Count}" };
        node.Input.Add(inputs);
        var names = Enumerable.Range(0, outputs).Select(_ => $"v{_value++}").ToArray();
        node.Output.Add(names);
        attributes?.Invoke(node.Attribute);
        Graph.Node.Add(node);
        return names;
    }

    private string Constant(TensorProto value) =>
        Node("Constant", [], a => a.Add(new AttributeProto { Name = "value", T = value, Type = AttributeProto.Types.AttributeType.Tensor }));

    /// <summary>A float scalar Constant.</summary>
    public string ConstFloat(float value) => Constant(new TensorProto
    {
        DataType = (int)TensorProto.Types.DataType.Float,
        RawData = ByteString.CopyFrom(MemoryMarshal.AsBytes<float>([value])),
    });

    /// <summary>An int64 scalar Constant.</summary>
    public string ConstScalarInt(long value) => Constant(new TensorProto
    {
        DataType = (int)TensorProto.Types.DataType.Int64,
        RawData = ByteString.CopyFrom(MemoryMarshal.AsBytes<long>([value])),
    });

    /// <summary>An int64 vector Constant (shapes, axes, Slice bounds).</summary>
    public string ConstInts(long[] values)
    {
        var t = new TensorProto { DataType = (int)TensorProto.Types.DataType.Int64, RawData = ByteString.CopyFrom(MemoryMarshal.AsBytes<long>(values)) };
        t.Dims.Add(values.Length);
        return Constant(t);
    }

    /// <summary>A float initializer of shape <paramref name="dims"/>.</summary>
    public string Initializer(string name, long[] dims, float[] data)
    {
        long n = dims.Aggregate(1L, (a, b) => a * b);
        if (n != data.Length) throw new ArgumentException($"initializer {name}: {data.Length} values for shape [{string.Join(",", dims)}]");
        return Initializer(name, dims, TensorProto.Types.DataType.Float, MemoryMarshal.AsBytes<float>(data));
    }

    /// <summary>An int64 initializer.</summary>
    public string Initializer(string name, long[] dims, long[] data) =>
        Initializer(name, dims, TensorProto.Types.DataType.Int64, MemoryMarshal.AsBytes<long>(data));

    /// <summary>A bool initializer (one byte per value, as ONNX stores bools in raw_data).</summary>
    public string Initializer(string name, long[] dims, bool[] data) =>
        Initializer(name, dims, TensorProto.Types.DataType.Bool, MemoryMarshal.AsBytes<bool>(data));

    private string Initializer(string name, long[] dims, TensorProto.Types.DataType type, ReadOnlySpan<byte> bytes)
    {
        var t = new TensorProto { Name = name, DataType = (int)type };
        t.Dims.Add(dims);
        if (external is { } e && bytes.Length >= e.Threshold)
        {
            long offset = e.Stream.Position;
            e.Stream.Write(bytes);
            t.DataLocation = TensorProto.Types.DataLocation.External;
            t.ExternalData.Add(new StringStringEntryProto { Key = "location", Value = e.Location });
            t.ExternalData.Add(new StringStringEntryProto { Key = "offset", Value = offset.ToString(CultureInfo.InvariantCulture) });
            t.ExternalData.Add(new StringStringEntryProto { Key = "length", Value = bytes.Length.ToString(CultureInfo.InvariantCulture) });
        }
        else t.RawData = ByteString.CopyFrom(bytes);
        Graph.Initializer.Add(t);
        return name;
    }

    // ---------------------------------------------------------------- value infos and attributes

    /// <summary>An int64 [batch, sequence] graph input.</summary>
    public static ValueInfoProto Int64Input(string name) =>
        new() { Name = name, Type = TensorType(TensorProto.Types.DataType.Int64, [new("batch"), new("sequence")]) };

    /// <summary>A float graph output.</summary>
    public static ValueInfoProto FloatOutput(string name, OnnxDim[] dims) =>
        new() { Name = name, Type = TensorType(TensorProto.Types.DataType.Float, dims) };

    /// <summary>A tensor type with fixed or symbolic dimensions.</summary>
    public static TypeProto TensorType(TensorProto.Types.DataType type, OnnxDim[] dims)
    {
        var shape = new TensorShapeProto();
        foreach (var dim in dims)
            shape.Dim.Add(dim.Symbol is { } s
                ? new TensorShapeProto.Types.Dimension { DimParam = s }
                : new TensorShapeProto.Types.Dimension { DimValue = dim.Value ?? 0 });
        return new TypeProto { TensorType = new TypeProto.Types.Tensor { ElemType = (int)type, Shape = shape } };
    }

    /// <summary>An int attribute.</summary>
    public static AttributeProto IntAttr(string name, long value) =>
        new() { Name = name, I = value, Type = AttributeProto.Types.AttributeType.Int };

    /// <summary>An int-list attribute.</summary>
    public static AttributeProto IntsAttr(string name, long[] values)
    {
        var a = new AttributeProto { Name = name, Type = AttributeProto.Types.AttributeType.Ints };
        a.Ints.Add(values);
        return a;
    }

    // ---------------------------------------------------------------- torch's spellings shared by the writers

    /// <summary>
    /// torch's decomposed LayerNorm (ReduceMean, Sub, Pow 2, ReduceMean, Add ε, Sqrt, Div, Mul γ, Add β) with γ and β
    /// as initializers <c>{prefix}.weight</c> / <c>{prefix}.bias</c>.
    /// </summary>
    public string LayerNorm(string x, string prefix, float[] gamma, float[] beta, float eps, string? output = null)
    {
        var mean = Node("ReduceMean", [x], a => a.Add(IntsAttr("axes", [-1])));
        var centered = Node("Sub", [x, mean]);
        var sq = Node("Pow", [centered, ConstFloat(2f)]);
        var variance = Node("ReduceMean", [sq], a => a.Add(IntsAttr("axes", [-1])));
        var plus = Node("Add", [variance, ConstFloat(eps)]);
        var std = Node("Sqrt", [plus]);
        var norm = Node("Div", [centered, std]);
        Initializer(prefix + ".weight", [gamma.Length], gamma);
        Initializer(prefix + ".bias", [beta.Length], beta);
        var scaled = Node("Mul", [norm, prefix + ".weight"]);
        return Node("Add", [scaled, prefix + ".bias"], output: output);
    }
}
