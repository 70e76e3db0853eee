using System.Runtime.InteropServices;
using Google.Protobuf;
using SkTuning.Gpu.Import;
using SkTuning.Gpu.Onnx;
using SkTuning.Gpu.Onnx.Proto;
using SkTuning.Gpu.Tests.Support;

namespace SkTuning.Gpu.Tests.Onnx;

public sealed class OnnxModelTests : IDisposable
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "sktune-onnx-tests", Guid.NewGuid().ToString("N"));

    public OnnxModelTests() => Directory.CreateDirectory(_dir);

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public void MiniLmLoadsAsAReadModel()
    {
        var m = OnnxModel.Load(ModelCatalog.Resolve("minilm").OnnxPath);
        Assert.Equal("torch-jit-export", m.GraphName);
        Assert.Equal(13, m.Opset);
        Assert.Equal(["input_ids", "attention_mask", "token_type_ids"], m.Inputs.Select(i => i.Name));
        Assert.All(m.Inputs, i => Assert.Equal(OnnxElementType.Int64, i.ElementType));
        Assert.Equal(["batch", "sequence"], m.Inputs[0].Dims.Select(d => d.Symbol));
        Assert.Equal("last_hidden_state", m.Outputs[0].Name);
        Assert.Equal(650, m.Nodes.Count);
        // The first query projection: a renamed [in, out] initializer.
        var w = m.Initializers["927"];
        Assert.Equal([384L, 384L], w.Dims);
        Assert.Equal(384 * 384, w.ToFloats().Length);
        Assert.Equal(Enumerable.Range(0, 512).Select(i => (long)i), m.Initializers["embeddings.position_ids"].ToInt64s());
        // Constants: the mask value and LayerNorm epsilon.
        Assert.Equal(-10000f, m.Constants["114"].ScalarFloat());
        Assert.Equal(1e-12f, m.Constants["141"].ScalarFloat());
        var reduce = m.Nodes.First(n => n.OpType == "ReduceMean");
        Assert.Equal([-1L], reduce.GetInts("axes"));
        Assert.Equal("Add", m.Consumers("148").Single().OpType);
        Assert.Equal("MatMul_34", m.Producer("148")!.Name);
    }

    [Fact]
    public void TruncatedFileIsAOneLineError()
    {
        var path = Path.Combine(_dir, "truncated.onnx");
        File.WriteAllBytes(path, FixtureModels.BertBytes(new BertFixtureOptions())[..1000]);
        var e = Assert.Throws<SkTuningException>(() => OnnxModel.Load(path));
        AssertOneLine(e, path);
        Assert.Contains("truncated", e.Message);
        // The importer reports the same.
        Assert.Equal(e.Message, Assert.Throws<SkTuningException>(() => SkTuning.Gpu.Import.BertImporter.Import(path)).Message);
    }

    [Fact]
    public void TextFileIsNotOnnx()
    {
        var path = Path.Combine(_dir, "notes.onnx");
        File.WriteAllText(path, "This is not a model.\nJust some random text, 42 lines of it.\n");
        var e = Assert.Throws<SkTuningException>(() => OnnxModel.Load(path));
        AssertOneLine(e, path);
        Assert.Contains("not an ONNX file", e.Message);
    }

    [Fact]
    public void EmptyFileIsNotOnnx()
    {
        var path = Path.Combine(_dir, "empty.onnx");
        File.WriteAllBytes(path, []);
        AssertOneLine(Assert.Throws<SkTuningException>(() => OnnxModel.Load(path)), path);
    }

    [Fact]
    public void MissingFileIsAOneLineError()
    {
        var path = Path.Combine(_dir, "absent.onnx");
        var e = Assert.Throws<SkTuningException>(() => OnnxModel.Load(path));
        AssertOneLine(e, path);
        Assert.Contains("not found", e.Message);
    }

    [Fact]
    public void Float16Int64AndExternalDataInitializersRead()
    {
        var path = Path.Combine(_dir, "typed.onnx");
        float[] external = [1.5f, -2.25f, 3f, 1e-3f];
        // The external file holds 8 junk bytes first, so the offset is exercised.
        File.WriteAllBytes(Path.Combine(_dir, "typed.data"), [.. new byte[8], .. MemoryMarshal.AsBytes<float>(external)]);
        WriteTypedModel(path, "typed.data");

        var m = OnnxModel.Load(path);
        Assert.Equal([1f, -0.5f, 65504f, 0.000060975552f, 2f, 0f], m.Initializers["half_raw"].ToFloats());
        Assert.Equal([0.333251953125f, -3f], m.Initializers["half_typed"].ToFloats());
        Assert.Equal([-7L, 1L << 40], m.Initializers["int_typed"].ToInt64s());
        Assert.Equal([3L, -4L], m.Initializers["int_raw"].ToInt64s());
        Assert.Equal([0.5f, 2f], m.Initializers["float_typed"].ToFloats());
        var ext = m.Initializers["external"];
        Assert.True(ext.IsExternal);
        Assert.True(m.HasExternalData);
        Assert.Equal(external, ext.ToFloats());
        Assert.Equal([2L, 3L], m.Initializers["half_raw"].Dims);
        Assert.Equal(0.25f, m.Constants["c_float"].ScalarFloat());
        Assert.Equal([4L, 5L, 6L], m.GetTensor("c_ints").ToInt64s());
        Assert.Equal([3L], m.Constants["c_ints"].Dims);
        Assert.Equal(OnnxAttributeKind.Ints, m.Nodes[2].Attributes["value_ints"].Kind);
    }

    [Fact]
    public void MissingExternalDataFileIsAOneLineError()
    {
        var path = Path.Combine(_dir, "lost.onnx");
        WriteTypedModel(path, "lost.data");
        var e = Assert.Throws<SkTuningException>(() => OnnxModel.Load(path));
        AssertOneLine(e, path);
        Assert.Contains("lost.data", e.Message);
    }

    [Fact]
    public void SaveRoundTripsThroughTheFile()
    {
        var source = OnnxModel.Parse(FixtureModels.BertBytes(new BertFixtureOptions(Layers: 1)), "fixture");
        var path = Path.Combine(_dir, "saved.onnx");
        source.Save(path);
        var back = OnnxModel.Load(path);
        Assert.Equal(source.ToBytes(), back.ToBytes());
        Assert.Equal(source.Nodes.Count, back.Nodes.Count);
        Assert.Equal(source.Initializers["100"].ToFloats(), back.Initializers["100"].ToFloats());
        Assert.Empty(Directory.GetFiles(_dir, "*.tmp"));
    }

    [Fact]
    public void ExtraOutputsExposeEveryLayerToOnnxRuntime()
    {
        var bytes = FixtureModels.BertBytes(new BertFixtureOptions(Layers: 2, Pooler: false));
        var model = OnnxModel.Parse(bytes, "fixture");
        var imported = BertImporter.Import(model);
        Assert.Equal(3, imported.HiddenStateNames.Count);
        var extended = model.WithExtraOutputs(imported.HiddenStateNames);
        Assert.Equal(["last_hidden_state", .. imported.HiddenStateNames.Take(2)], OnnxModel.Parse(extended, "x").Outputs.Select(o => o.Name));

        long[,] ids = { { 1, 5, 7 } }, mask = { { 1, 1, 1 } }, types = { { 0, 0, 1 } };
        var outputs = OrtRunner.Run(extended, ids, mask, types);
        Assert.Equal(3, outputs.Count);
        foreach (var name in imported.HiddenStateNames)
            Assert.Equal([1, 3, 32], outputs[name].Dims);
        Assert.NotEqual(outputs[imported.HiddenStateNames[0]].Data, outputs[imported.HiddenStateNames[1]].Data);
        Assert.Throws<SkTuningException>(() => model.WithExtraOutputs(["no-such-value"]));
    }

    private static void AssertOneLine(SkTuningException e, string path)
    {
        Assert.Contains(path, e.Message);
        Assert.DoesNotContain('\n', e.Message);
        Assert.DoesNotContain('\r', e.Message);
    }

    /// <summary>A small model whose initializers use float16 (raw and int32_data), int64 (raw and typed), float_data and external data.</summary>
    private static void WriteTypedModel(string path, string externalFile)
    {
        var graph = new GraphProto { Name = "typed" };
        ushort[] halves = [0x3C00, 0xB800, 0x7BFF, 0x03FF, 0x4000, 0x0000]; // 1, −0.5, 65504, subnormal, 2, 0
        var halfRaw = new TensorProto { Name = "half_raw", DataType = (int)TensorProto.Types.DataType.Float16, Dims = { 2, 3 },
            RawData = ByteString.CopyFrom(MemoryMarshal.AsBytes<ushort>(halves)) };
        var halfTyped = new TensorProto { Name = "half_typed", DataType = (int)TensorProto.Types.DataType.Float16, Dims = { 2 },
            Int32Data = { 0x3555, 0xC200 } }; // 0.33325, −3
        var intTyped = new TensorProto { Name = "int_typed", DataType = (int)TensorProto.Types.DataType.Int64, Dims = { 2 }, Int64Data = { -7, 1L << 40 } };
        var intRaw = new TensorProto { Name = "int_raw", DataType = (int)TensorProto.Types.DataType.Int64, Dims = { 2 },
            RawData = ByteString.CopyFrom(MemoryMarshal.AsBytes<long>([3L, -4L])) };
        var floatTyped = new TensorProto { Name = "float_typed", DataType = (int)TensorProto.Types.DataType.Float, Dims = { 2 }, FloatData = { 0.5f, 2f } };
        var external = new TensorProto
        {
            Name = "external", DataType = (int)TensorProto.Types.DataType.Float, Dims = { 4 },
            DataLocation = TensorProto.Types.DataLocation.External,
            ExternalData =
            {
                new StringStringEntryProto { Key = "location", Value = externalFile },
                new StringStringEntryProto { Key = "offset", Value = "8" },
                new StringStringEntryProto { Key = "length", Value = "16" },
            },
        };
        graph.Initializer.Add([halfRaw, halfTyped, intTyped, intRaw, floatTyped, external]);
        graph.Input.Add(new ValueInfoProto { Name = "x", Type = new TypeProto { TensorType = new TypeProto.Types.Tensor { ElemType = 1 } } });
        graph.Node.Add(new NodeProto { OpType = "Add", Name = "add", Input = { "x", "external" }, Output = { "y" } });
        graph.Node.Add(new NodeProto { OpType = "Constant", Name = "c1", Output = { "c_float" },
            Attribute = { new AttributeProto { Name = "value_float", F = 0.25f, Type = AttributeProto.Types.AttributeType.Float } } });
        graph.Node.Add(new NodeProto { OpType = "Constant", Name = "c2", Output = { "c_ints" },
            Attribute = { new AttributeProto { Name = "value_ints", Ints = { 4, 5, 6 }, Type = AttributeProto.Types.AttributeType.Ints } } });
        graph.Output.Add(new ValueInfoProto { Name = "y", Type = new TypeProto { TensorType = new TypeProto.Types.Tensor { ElemType = 1 } } });
        var model = new ModelProto { IrVersion = 7, Graph = graph, OpsetImport = { new OperatorSetIdProto { Version = 13 } } };
        File.WriteAllBytes(path, model.ToByteArray());
    }
}
