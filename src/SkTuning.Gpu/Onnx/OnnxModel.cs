using Google.Protobuf;
using SkTuning.Gpu.Onnx.Proto;

namespace SkTuning.Gpu.Onnx;

/// <summary>One dimension of a graph input or output: a fixed size or a symbolic name (or neither).</summary>
/// <param name="Value">The fixed size, or null.</param>
/// <param name="Symbol">The symbolic name such as <c>batch</c>, or null.</param>
public sealed record OnnxDim(long? Value, string? Symbol)
{
    /// <summary>A fixed dimension.</summary>
    public OnnxDim(long value) : this(value, null) { }

    /// <summary>A symbolic dimension.</summary>
    public OnnxDim(string symbol) : this(null, symbol) { }

    /// <inheritdoc/>
    public override string ToString() => Value?.ToString() ?? Symbol ?? "?";
}

/// <summary>A graph input, output or value_info: name, element type and shape.</summary>
/// <param name="Name">The value's name.</param>
/// <param name="ElementType">The tensor element type.</param>
/// <param name="Dims">The dimensions; empty when the shape is unknown or a scalar.</param>
public sealed record OnnxValueInfo(string Name, OnnxElementType ElementType, IReadOnlyList<OnnxDim> Dims)
{
    /// <inheritdoc/>
    public override string ToString() => $"{Name}: {ElementType}[{string.Join(",", Dims)}]";
}

/// <summary>The kind of an <see cref="OnnxAttribute"/>.</summary>
public enum OnnxAttributeKind
{
    /// <summary>Unset or a kind this reader does not expose (graphs, sparse tensors).</summary>
    Other = 0,
    /// <summary>One float.</summary>
    Float = 1,
    /// <summary>One integer.</summary>
    Int = 2,
    /// <summary>One string.</summary>
    String = 3,
    /// <summary>One tensor.</summary>
    Tensor = 4,
    /// <summary>A list of floats.</summary>
    Floats = 6,
    /// <summary>A list of integers.</summary>
    Ints = 7,
    /// <summary>A list of strings.</summary>
    Strings = 8,
}

/// <summary>A node attribute.</summary>
public sealed class OnnxAttribute
{
    internal OnnxAttribute(AttributeProto proto, string file, string? baseDirectory)
    {
        Name = proto.Name;
        Kind = proto.Type switch
        {
            AttributeProto.Types.AttributeType.Float => OnnxAttributeKind.Float,
            AttributeProto.Types.AttributeType.Int => OnnxAttributeKind.Int,
            AttributeProto.Types.AttributeType.String => OnnxAttributeKind.String,
            AttributeProto.Types.AttributeType.Tensor => OnnxAttributeKind.Tensor,
            AttributeProto.Types.AttributeType.Floats => OnnxAttributeKind.Floats,
            AttributeProto.Types.AttributeType.Ints => OnnxAttributeKind.Ints,
            AttributeProto.Types.AttributeType.Strings => OnnxAttributeKind.Strings,
            _ => OnnxAttributeKind.Other,
        };
        Float = proto.F;
        Int = proto.I;
        String = proto.S.ToStringUtf8();
        Tensor = proto.T is null ? null : new OnnxTensor(proto.T, file, baseDirectory);
        Floats = proto.Floats.ToArray();
        Ints = proto.Ints.ToArray();
        Strings = proto.Strings.Select(s => s.ToStringUtf8()).ToArray();
    }

    /// <summary>The attribute name.</summary>
    public string Name { get; }

    /// <summary>Which of the value members holds the value.</summary>
    public OnnxAttributeKind Kind { get; }

    /// <summary>The value of a <see cref="OnnxAttributeKind.Float"/> attribute.</summary>
    public float Float { get; }

    /// <summary>The value of an <see cref="OnnxAttributeKind.Int"/> attribute.</summary>
    public long Int { get; }

    /// <summary>The value of a <see cref="OnnxAttributeKind.String"/> attribute (UTF-8 decoded).</summary>
    public string String { get; }

    /// <summary>The value of a <see cref="OnnxAttributeKind.Tensor"/> attribute.</summary>
    public OnnxTensor? Tensor { get; }

    /// <summary>The value of a <see cref="OnnxAttributeKind.Floats"/> attribute.</summary>
    public IReadOnlyList<float> Floats { get; }

    /// <summary>The value of an <see cref="OnnxAttributeKind.Ints"/> attribute.</summary>
    public IReadOnlyList<long> Ints { get; }

    /// <summary>The value of a <see cref="OnnxAttributeKind.Strings"/> attribute.</summary>
    public IReadOnlyList<string> Strings { get; }

    /// <inheritdoc/>
    public override string ToString() => Kind switch
    {
        OnnxAttributeKind.Float => $"{Name}={Float}",
        OnnxAttributeKind.Int => $"{Name}={Int}",
        OnnxAttributeKind.String => $"{Name}='{String}'",
        OnnxAttributeKind.Tensor => $"{Name}=<{Tensor}>",
        OnnxAttributeKind.Floats => $"{Name}=[{string.Join(",", Floats)}]",
        OnnxAttributeKind.Ints => $"{Name}=[{string.Join(",", Ints)}]",
        OnnxAttributeKind.Strings => $"{Name}=[{string.Join(",", Strings)}]",
        _ => $"{Name}=?",
    };
}

/// <summary>A node of the graph, in the graph's (topological) order.</summary>
public sealed class OnnxNode
{
    internal OnnxNode(int index, NodeProto proto, string file, string? baseDirectory)
    {
        Index = index;
        OpType = proto.OpType;
        Name = proto.Name;
        Domain = proto.Domain;
        Inputs = proto.Input.ToArray();
        Outputs = proto.Output.ToArray();
        var attributes = new Dictionary<string, OnnxAttribute>(StringComparer.Ordinal);
        foreach (var a in proto.Attribute) attributes[a.Name] = new OnnxAttribute(a, file, baseDirectory);
        Attributes = attributes;
    }

    /// <summary>The position in the graph's node list.</summary>
    public int Index { get; }

    /// <summary>The operator, e.g. <c>MatMul</c>.</summary>
    public string OpType { get; }

    /// <summary>The node name (may be empty).</summary>
    public string Name { get; }

    /// <summary>The operator domain; empty for the default ONNX domain.</summary>
    public string Domain { get; }

    /// <summary>Input value names; an empty name is an omitted optional input.</summary>
    public IReadOnlyList<string> Inputs { get; }

    /// <summary>Output value names.</summary>
    public IReadOnlyList<string> Outputs { get; }

    /// <summary>Attributes by name.</summary>
    public IReadOnlyDictionary<string, OnnxAttribute> Attributes { get; }

    /// <summary>An integer attribute, or <paramref name="fallback"/> when absent.</summary>
    public long GetInt(string name, long fallback) => Attributes.TryGetValue(name, out var a) ? a.Int : fallback;

    /// <summary>A float attribute, or <paramref name="fallback"/> when absent.</summary>
    public float GetFloat(string name, float fallback) => Attributes.TryGetValue(name, out var a) ? a.Float : fallback;

    /// <summary>An integer-list attribute, or null when absent.</summary>
    public IReadOnlyList<long>? GetInts(string name) => Attributes.TryGetValue(name, out var a) ? a.Ints : null;

    /// <inheritdoc/>
    public override string ToString() =>
        $"#{Index} {OpType} '{Name}' ({string.Join(", ", Inputs)}) -> ({string.Join(", ", Outputs)})" +
        (Attributes.Count > 0 ? " {" + string.Join(", ", Attributes.Values) + "}" : "");
}

/// <summary>
/// An ONNX model as a read model: graph inputs and outputs, nodes in order, initializers and Constant
/// values by name with typed access. Load with <see cref="Load"/>; every problem with the file is a
/// <see cref="SkTuningException"/> whose one-line message names the file.
/// </summary>
public sealed class OnnxModel
{
    private readonly Dictionary<string, OnnxNode> _producers = new(StringComparer.Ordinal);
    private readonly Dictionary<string, List<OnnxNode>> _consumers = new(StringComparer.Ordinal);

    private OnnxModel(ModelProto proto, string file, string? baseDirectory)
    {
        Proto = proto;
        FilePath = file;
        BaseDirectory = baseDirectory;
        var graph = proto.Graph;
        if (graph is null) throw new SkTuningException($"{file}: not an ONNX model (no graph)");
        if (graph.Node.Count == 0) throw new SkTuningException($"{file}: not an ONNX model (the graph has no nodes)");
        GraphName = graph.Name;
        IrVersion = proto.IrVersion;
        ProducerName = proto.ProducerName;
        ProducerVersion = proto.ProducerVersion;
        Opset = proto.OpsetImport.Where(o => o.Domain is "" or "ai.onnx").Select(o => o.Version).DefaultIfEmpty(0).Max();
        var initializers = new Dictionary<string, OnnxTensor>(StringComparer.Ordinal);
        foreach (var t in graph.Initializer) initializers[t.Name] = new OnnxTensor(t, file, baseDirectory);
        Initializers = initializers;
        // Initializers may also appear among the inputs (IR < 4); those are not real inputs.
        Inputs = graph.Input.Where(i => !initializers.ContainsKey(i.Name)).Select(ToInfo).ToArray();
        Outputs = graph.Output.Select(ToInfo).ToArray();
        ValueInfos = graph.ValueInfo.Select(ToInfo).ToArray();
        var nodes = new OnnxNode[graph.Node.Count];
        var constants = new Dictionary<string, OnnxTensor>(StringComparer.Ordinal);
        for (int i = 0; i < nodes.Length; i++)
        {
            var node = nodes[i] = new OnnxNode(i, graph.Node[i], file, baseDirectory);
            foreach (var o in node.Outputs) if (o.Length > 0) _producers[o] = node;
            foreach (var input in node.Inputs)
            {
                if (input.Length == 0) continue;
                if (!_consumers.TryGetValue(input, out var list)) _consumers[input] = list = [];
                list.Add(node);
            }
            if (node.OpType == "Constant" && node.Outputs.Count == 1 && ConstantValue(graph.Node[i], file) is { } tensor)
                constants[node.Outputs[0]] = tensor;
        }
        Nodes = nodes;
        Constants = constants;
    }

    internal ModelProto Proto { get; }

    /// <summary>The file the model was read from (or the name given to <see cref="Parse"/>).</summary>
    public string FilePath { get; }

    /// <summary>The folder external-data locations are relative to; null when parsed from bytes without one.</summary>
    public string? BaseDirectory { get; }

    /// <summary>The graph name.</summary>
    public string GraphName { get; }

    /// <summary>The IR version.</summary>
    public long IrVersion { get; }

    /// <summary>The producer, e.g. <c>pytorch</c>.</summary>
    public string ProducerName { get; }

    /// <summary>The producer's version.</summary>
    public string ProducerVersion { get; }

    /// <summary>The opset version of the default ONNX domain (0 when not declared).</summary>
    public long Opset { get; }

    /// <summary>The graph inputs the caller feeds (initializers listed as inputs are left out).</summary>
    public IReadOnlyList<OnnxValueInfo> Inputs { get; }

    /// <summary>The graph outputs.</summary>
    public IReadOnlyList<OnnxValueInfo> Outputs { get; }

    /// <summary>The graph's value_info entries (intermediate shapes the exporter recorded).</summary>
    public IReadOnlyList<OnnxValueInfo> ValueInfos { get; }

    /// <summary>The nodes in graph order.</summary>
    public IReadOnlyList<OnnxNode> Nodes { get; }

    /// <summary>Initializers by name.</summary>
    public IReadOnlyDictionary<string, OnnxTensor> Initializers { get; }

    /// <summary>The <c>value</c> tensors of Constant nodes, by the node's output name.</summary>
    public IReadOnlyDictionary<string, OnnxTensor> Constants { get; }

    /// <summary>Whether any initializer keeps its data in an external file.</summary>
    public bool HasExternalData => Initializers.Values.Any(t => t.IsExternal);

    /// <summary>Total number of elements of the float-typed initializers (the model's parameters, roughly).</summary>
    public long FloatInitializerElements => Initializers.Values
        .Where(t => t.ElementType is OnnxElementType.Float or OnnxElementType.Float16 or OnnxElementType.BFloat16 or OnnxElementType.Double)
        .Sum(t => t.ElementCount);

    /// <summary>Reads an .onnx file. External-data files are looked up beside it.</summary>
    public static OnnxModel Load(string path)
    {
        byte[] bytes;
        try
        {
            bytes = InputFile.ReadAllBytes(path);
        }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException)
        {
            throw new SkTuningException($"{path}: ONNX file not found", e);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new SkTuningException($"{path}: cannot read the ONNX file ({e.Message.ReplaceLineEndings(" ")})", e);
        }
        return Parse(bytes, path, Path.GetDirectoryName(Path.GetFullPath(path)));
    }

    /// <summary>
    /// Parses serialized ONNX bytes; <paramref name="fileName"/> names the source in error messages and
    /// <paramref name="baseDirectory"/> is where external-data files are looked up.
    /// </summary>
    public static OnnxModel Parse(byte[] bytes, string fileName, string? baseDirectory = null)
    {
        ModelProto proto;
        try
        {
            proto = ModelProto.Parser.ParseFrom(bytes);
        }
        catch (InvalidProtocolBufferException e)
        {
            throw new SkTuningException(e.Message.Contains("truncated", StringComparison.OrdinalIgnoreCase)
                ? $"{fileName}: truncated ONNX file ({bytes.Length} bytes; the protobuf ends in the middle of a field)"
                : $"{fileName}: not an ONNX file ({bytes.Length} bytes that do not parse as an ONNX ModelProto)", e);
        }
        return new OnnxModel(proto, fileName, baseDirectory);
    }

    internal static OnnxModel FromProto(ModelProto proto, string fileName, string? baseDirectory = null) =>
        new(proto, fileName, baseDirectory);

    /// <summary>An initializer or Constant value by name, or null.</summary>
    public OnnxTensor? TryGetTensor(string name) =>
        Initializers.TryGetValue(name, out var t) ? t : Constants.TryGetValue(name, out var c) ? c : null;

    /// <summary>An initializer or Constant value by name; throws a <see cref="SkTuningException"/> naming the file if absent.</summary>
    public OnnxTensor GetTensor(string name) =>
        TryGetTensor(name) ?? throw new SkTuningException($"{FilePath}: no initializer or Constant named '{name}'");

    /// <summary>The node producing <paramref name="value"/>, or null (graph input, initializer).</summary>
    public OnnxNode? Producer(string value) => _producers.GetValueOrDefault(value);

    /// <summary>The nodes reading <paramref name="value"/>, in graph order.</summary>
    public IReadOnlyList<OnnxNode> Consumers(string value) =>
        _consumers.TryGetValue(value, out var list) ? list : [];

    /// <summary>The serialized model (external data stays referenced, not inlined).</summary>
    public byte[] ToBytes() => Proto.ToByteArray();

    /// <summary>
    /// Writes the model atomically. External-data locations are kept as they are (relative paths), so
    /// save beside the external-data files or copy them along.
    /// </summary>
    public void Save(string path) => AtomicFile.WriteAllBytes(path, ToBytes());

    /// <summary>
    /// The serialized model with extra graph outputs for intermediate values (e.g. every layer's hidden
    /// states), each with element type FLOAT and an unspecified shape. Names already among the outputs are
    /// skipped; a name no node produces is a <see cref="SkTuningException"/>. External data stays referenced:
    /// ONNX Runtime needs <c>session.model_external_initializers_file_folder_path</c> set to
    /// <see cref="BaseDirectory"/> to load such bytes.
    /// </summary>
    public byte[] WithExtraOutputs(IEnumerable<string> names)
    {
        var copy = Proto.Clone();
        var existing = new HashSet<string>(copy.Graph.Output.Select(o => o.Name), StringComparer.Ordinal);
        foreach (var name in names)
        {
            if (!existing.Add(name)) continue;
            if (!_producers.ContainsKey(name))
                throw new SkTuningException($"{FilePath}: no node produces '{name}', cannot add it as an output");
            copy.Graph.Output.Add(new ValueInfoProto
            {
                Name = name,
                Type = new TypeProto { TensorType = new TypeProto.Types.Tensor { ElemType = (int)OnnxElementType.Float } },
            });
        }
        return copy.ToByteArray();
    }

    /// <summary>A Constant node's value: the <c>value</c> tensor or a <c>value_float(s)</c> / <c>value_int(s)</c> attribute.</summary>
    private OnnxTensor? ConstantValue(NodeProto node, string file)
    {
        foreach (var a in node.Attribute)
        {
            var t = new TensorProto { Name = node.Output[0] };
            switch (a.Name)
            {
                case "value" when a.T is not null: return new OnnxTensor(a.T, file, BaseDirectory);
                case "value_float": t.DataType = (int)OnnxElementType.Float; t.FloatData.Add(a.F); break;
                case "value_floats": t.DataType = (int)OnnxElementType.Float; t.FloatData.Add(a.Floats); t.Dims.Add(a.Floats.Count); break;
                case "value_int": t.DataType = (int)OnnxElementType.Int64; t.Int64Data.Add(a.I); break;
                case "value_ints": t.DataType = (int)OnnxElementType.Int64; t.Int64Data.Add(a.Ints); t.Dims.Add(a.Ints.Count); break;
                default: continue;
            }
            return new OnnxTensor(t, file, BaseDirectory);
        }
        return null;
    }

    private static OnnxValueInfo ToInfo(ValueInfoProto v)
    {
        var tensor = v.Type?.TensorType;
        var dims = tensor?.Shape?.Dim.Select(d => new OnnxDim(
            d.ValueCase == TensorShapeProto.Types.Dimension.ValueOneofCase.DimValue ? d.DimValue : null,
            d.ValueCase == TensorShapeProto.Types.Dimension.ValueOneofCase.DimParam ? d.DimParam : null)).ToArray() ?? [];
        return new OnnxValueInfo(v.Name, (OnnxElementType)(tensor?.ElemType ?? 0), dims);
    }

    /// <inheritdoc/>
    public override string ToString() =>
        $"{Path.GetFileName(FilePath)}: graph '{GraphName}', opset {Opset}, {Nodes.Count} nodes, {Initializers.Count} initializers, " +
        $"inputs [{string.Join("; ", Inputs)}], outputs [{string.Join("; ", Outputs)}]";
}
