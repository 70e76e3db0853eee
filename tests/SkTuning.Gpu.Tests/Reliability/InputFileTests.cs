using System.Diagnostics;
using Google.Protobuf;
using SkTuning.Gpu.Data;
using SkTuning.Gpu.Onnx;
using SkTuning.Gpu.Onnx.Proto;
using SkTuning.Gpu.Runs;
using SkTuning.Gpu.Tests.Data;

namespace SkTuning.Gpu.Tests.Reliability;

/// <summary>
/// Issue 12, findings 1 and 5: no file can make sktune read outside the model's folder, block on a FIFO, stream a
/// device, or allocate more than the file's length implies.
/// </summary>
public class InputFileTests
{
    private static string ExternalFixture => Path.Combine(AppContext.BaseDirectory, "Fixtures", "decoders", "tinyllama_opset14_external_data");

    /// <summary>The external-data fixture copied into <paramref name="folder"/> with every external location replaced by <paramref name="location"/>.</summary>
    private static string WithLocation(string folder, string location)
    {
        Directory.CreateDirectory(folder);
        var proto = ModelProto.Parser.ParseFrom(File.ReadAllBytes(Path.Combine(ExternalFixture, "model.onnx")));
        foreach (var t in proto.Graph.Initializer.Where(t => t.DataLocation == TensorProto.Types.DataLocation.External))
            t.ExternalData.Single(kv => kv.Key == "location").Value = location;
        string path = Path.Combine(folder, "model.onnx");
        File.WriteAllBytes(path, proto.ToByteArray());
        return path;
    }

    [Theory]
    [InlineData("../outside.data", "'..'")]
    [InlineData("sub/../../outside.data", "'..'")]
    [InlineData("ABSOLUTE", "absolute")]
    public void ExternalDataOutsideTheModelFolderIsRefused(string location, string why)
    {
        using var dir = new TempDir();
        string outside = Path.Combine(dir.Path, "outside.data");
        File.Copy(Path.Combine(ExternalFixture, "model.onnx.data"), outside);
        if (location == "ABSOLUTE") location = outside;
        string model = WithLocation(Path.Combine(dir.Path, "model"), location);
        var e = Assert.Throws<SkTuningException>(() => OnnxModel.Load(model));
        Assert.Contains(model, e.Message);
        Assert.Contains($"'{location}'", e.Message);
        Assert.Contains(why, e.Message);
    }

    [Fact]
    public void ExternalDataBehindALinkOutOfTheFolderIsRefused()
    {
        using var dir = new TempDir();
        File.Copy(Path.Combine(ExternalFixture, "model.onnx.data"), Path.Combine(dir.Path, "outside.data"));
        string folder = Path.Combine(dir.Path, "model");
        string model = WithLocation(folder, "weights/model.onnx.data");
        Directory.CreateSymbolicLink(Path.Combine(folder, "weights"), dir.Path);
        var e = Assert.Throws<SkTuningException>(() => OnnxModel.Load(model));
        Assert.Contains("symbolic link", e.Message);

        // A link that stays inside the folder is fine.
        File.Copy(Path.Combine(ExternalFixture, "model.onnx.data"), Path.Combine(folder, "real.data"));
        File.CreateSymbolicLink(Path.Combine(folder, "inside.data"), Path.Combine(folder, "real.data"));
        Assert.True(OnnxModel.Load(WithLocation(folder, "inside.data")).HasExternalData);
    }

    [Fact]
    public void ExternalDataOffsetAndLengthThatOverflowAreRefused()
    {
        using var dir = new TempDir();
        string folder = Path.Combine(dir.Path, "model");
        string model = WithLocation(folder, "model.onnx.data");
        File.Copy(Path.Combine(ExternalFixture, "model.onnx.data"), Path.Combine(folder, "model.onnx.data"));
        var proto = ModelProto.Parser.ParseFrom(File.ReadAllBytes(model));
        var t = proto.Graph.Initializer.First(x => x.DataLocation == TensorProto.Types.DataLocation.External);
        t.ExternalData.Where(kv => kv.Key is "offset" or "length").ToList().ForEach(kv => t.ExternalData.Remove(kv));
        t.ExternalData.Add(new StringStringEntryProto { Key = "offset", Value = (long.MaxValue - 8).ToString() });
        t.ExternalData.Add(new StringStringEntryProto { Key = "length", Value = "64" });
        File.WriteAllBytes(model, proto.ToByteArray());
        var e = Assert.Throws<SkTuningException>(() => OnnxModel.Load(model));
        Assert.Contains(t.Name, e.Message);
    }

    [Fact]
    public void InitializerDimsWhoseProductOverflowsAreAnInputError()
    {
        var e = Assert.Throws<SkTuningException>(() => OnnxModel.Parse(Identity(new TensorProto
        {
            Name = "x", DataType = (int)OnnxElementType.Float, Dims = { 1L << 40, 1L << 40 }, FloatData = { 1f },
        }), "big.onnx"));
        Assert.Contains("big.onnx", e.Message);
        Assert.Contains("'x'", e.Message);
    }

    /// <summary>A one-node graph (Identity of x) with <paramref name="x"/> as its initializer.</summary>
    private static byte[] Identity(TensorProto x) => new ModelProto
    {
        Graph = new GraphProto { Node = { new NodeProto { OpType = "Identity", Input = { "x" }, Output = { "y" } } }, Initializer = { x } },
    }.ToByteArray();

    [Fact]
    public void DeclaredElementCountIsCheckedAgainstTheDataBeforeAllocating()
    {
        // A float16 tensor declaring 2^28 elements with 3 values: refused without allocating the 2^28.
        var model = OnnxModel.Parse(Identity(new TensorProto { Name = "x", DataType = (int)OnnxElementType.Float16, Dims = { 1L << 28 }, Int32Data = { 1, 2, 3 } }), "half.onnx");
        long before = GC.GetAllocatedBytesForCurrentThread();
        var e = Assert.Throws<SkTuningException>(() => model.Initializers["x"].ToFloats());
        Assert.True(GC.GetAllocatedBytesForCurrentThread() - before < 1 << 20, "allocated before checking the size");
        Assert.Contains("half.onnx", e.Message);
    }

    [Fact]
    public void AFifoIsRefusedWithoutBlocking()
    {
        using var dir = new TempDir();
        string fifo = Path.Combine(dir.Path, "model.onnx");
        using (var mkfifo = Process.Start("mkfifo", [fifo])) mkfifo.WaitForExit();
        foreach (var read in new Action[] { () => OnnxModel.Load(fifo), () => SafeTensors.Read(fifo), () => RunJson.Read<TrainerState>(fifo) })
        {
            var task = Task.Run(read);
            bool finished = ((IAsyncResult)task).AsyncWaitHandle.WaitOne(TimeSpan.FromSeconds(10));
            if (!finished) using (new FileStream(fifo, FileMode.Open, FileAccess.Write)) { } // release the blocked reader
            Assert.True(finished, "blocked on a FIFO");
            var e = Assert.IsType<SkTuningException>(task.Exception?.InnerException);
            Assert.Contains(fifo, e.Message);
            Assert.Contains("FIFO", e.Message);
        }
    }

    [Fact]
    public void ALinkToADeviceIsRefusedBeforeReading()
    {
        using var dir = new TempDir();
        string link = Path.Combine(dir.Path, "model.onnx");
        File.CreateSymbolicLink(link, "/dev/zero");
        long before = GC.GetAllocatedBytesForCurrentThread();
        foreach (var read in new Action[] { () => OnnxModel.Load(link), () => SafeTensors.Read(link), () => RunJson.Read<TrainerState>(link) })
        {
            var e = Assert.Throws<SkTuningException>(read);
            Assert.Contains("character device", e.Message);
        }
        Assert.True(GC.GetAllocatedBytesForCurrentThread() - before < 1 << 20, "read the device");
    }

    [Fact]
    public void DataFilesThatAreFifosAreRefused()
    {
        using var dir = new TempDir();
        string fifo = Path.Combine(dir.Path, "train.tsv");
        using (var mkfifo = Process.Start("mkfifo", [fifo])) mkfifo.WaitForExit();
        var options = new CustomTaskOptions { TrainFile = fifo };
        var task = Task.Run(() => TaskCatalog.Custom(options).Load(dir.Path));
        bool finished = ((IAsyncResult)task).AsyncWaitHandle.WaitOne(TimeSpan.FromSeconds(10));
        if (!finished) using (new FileStream(fifo, FileMode.Open, FileAccess.Write)) { }
        Assert.True(finished, "blocked on a FIFO");
        Assert.Contains("FIFO", Assert.IsType<SkTuningException>(task.Exception?.InnerException).Message);
    }
}
