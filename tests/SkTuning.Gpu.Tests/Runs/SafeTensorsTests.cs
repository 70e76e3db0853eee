using System.Buffers.Binary;
using System.Text;
using SkTuning.Gpu.Runs;

namespace SkTuning.Gpu.Tests.Runs;

public sealed class SafeTensorsTests : IDisposable
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "sktune-st-" + Guid.NewGuid().ToString("N"));

    public SafeTensorsTests() => Directory.CreateDirectory(_dir);

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    // A tiny file computed by hand: F32 "a" = [1, -2.5], I64 scalar "step" = 7, metadata k = v.
    private const string HandHeader =
        "{\"__metadata__\":{\"k\":\"v\"},\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"step\":{\"dtype\":\"I64\",\"shape\":[],\"data_offsets\":[8,16]}}";

    private static byte[] HandBuilt()
    {
        Assert.Equal(135, HandHeader.Length); // padded with one space to 136 = 17 * 8
        var bytes = new List<byte> { 136, 0, 0, 0, 0, 0, 0, 0 };
        bytes.AddRange(Encoding.ASCII.GetBytes(HandHeader + " "));
        bytes.AddRange(new byte[] { 0x00, 0x00, 0x80, 0x3F }); // 1.0f
        bytes.AddRange(new byte[] { 0x00, 0x00, 0x20, 0xC0 }); // -2.5f
        bytes.AddRange(new byte[] { 7, 0, 0, 0, 0, 0, 0, 0 }); // 7L
        return bytes.ToArray();
    }

    private static Dictionary<string, NamedTensor> HandTensors() => new()
    {
        ["step"] = NamedTensor.Scalar(7),
        ["a"] = new NamedTensor([2], [1f, -2.5f]),
    };

    [Fact]
    public void HandBuiltFileParses()
    {
        var path = Path.Combine(_dir, "hand.safetensors");
        File.WriteAllBytes(path, HandBuilt());
        var file = SafeTensors.Read(path);
        Assert.Equal(2, file.Tensors.Count);
        Assert.Equal(TensorDType.F32, file.Tensors["a"].DType);
        Assert.Equal([2], file.Tensors["a"].Shape);
        Assert.Equal([1f, -2.5f], file.Tensors["a"].Data);
        Assert.Equal(TensorDType.I64, file.Tensors["step"].DType);
        Assert.Empty(file.Tensors["step"].Shape);
        Assert.Equal([7L], file.Tensors["step"].Int64Data);
        Assert.Equal("v", Assert.Single(file.Metadata).Value);
    }

    [Fact]
    public void WriterProducesTheHandBuiltBytes() =>
        Assert.Equal(HandBuilt(), SafeTensors.Serialize(HandTensors(), new Dictionary<string, string> { ["k"] = "v" }));

    [Fact]
    public void RoundTripsEveryDTypeAndIsDeterministic()
    {
        var rng = new Random(3);
        var tensors = new Dictionary<string, NamedTensor>
        {
            ["z.weight"] = new NamedTensor([3, 5], Enumerable.Range(0, 15).Select(_ => (float)rng.NextDouble() - 0.5f).ToArray()),
            ["b.bias"] = new NamedTensor([5], [float.NaN, float.PositiveInfinity, -0f, float.Epsilon, 1e30f]),
            ["empty"] = new NamedTensor([0, 4], []),
            ["counts"] = NamedTensor.FromInt32([2, 2], [1, -2, int.MaxValue, int.MinValue]),
            ["step"] = NamedTensor.Scalar(long.MaxValue),
        };
        var metadata = new Dictionary<string, string> { ["model_hash"] = "abc", ["note"] = "ünïcode \"quoted\"" };
        var path = Path.Combine(_dir, "rt.safetensors");
        SafeTensors.Write(path, tensors, metadata);
        var bytes = File.ReadAllBytes(path);
        Assert.Equal(0, (int)BinaryPrimitives.ReadUInt64LittleEndian(bytes) % 8);

        var back = SafeTensors.Read(path);
        Assert.Equal(tensors.Keys.Order(), back.Tensors.Keys.Order());
        foreach (var (name, t) in tensors) Assert.True(t.ContentEquals(back.Tensors[name]), name);
        Assert.Equal(metadata, back.Metadata);

        // Insertion order does not matter: same bytes.
        var reversed = tensors.Reverse().ToDictionary(kv => kv.Key, kv => kv.Value);
        Assert.Equal(bytes, SafeTensors.Serialize(reversed, metadata));
        Assert.Empty(Directory.GetFiles(_dir, "*.tmp"));
    }

    [Fact]
    public void WithoutMetadataReadsEmptyMetadata()
    {
        var path = Path.Combine(_dir, "nometa.safetensors");
        SafeTensors.Write(path, new Dictionary<string, NamedTensor> { ["x"] = NamedTensor.Vector([1, 2, 3]) });
        Assert.Empty(SafeTensors.Read(path).Metadata);
        Assert.Equal([1f, 2f, 3f], SafeTensors.Read(path).Tensors["x"].Data);
    }

    private static byte[] WithHeader(string header, int dataBytes)
    {
        var h = Encoding.UTF8.GetBytes(header);
        var bytes = new byte[8 + h.Length + dataBytes];
        BinaryPrimitives.WriteUInt64LittleEndian(bytes, (ulong)h.Length);
        h.CopyTo(bytes, 8);
        return bytes;
    }

    public static TheoryData<string, byte[], string> Corruptions() => new()
    {
        { "short", new byte[] { 1, 2, 3 }, "truncated safetensors file (3 bytes" },
        { "past-end", WithHeader("{}", 0)[..9], "header length 2 runs past the end of the file (9 bytes)" },
        { "huge-length", [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, (byte)'{'], "header length 18446744073709551615 runs past the end" },
        { "bad-json", WithHeader("{\"a\": {\"dtype\": ", 0), "safetensors header is not valid JSON" },
        { "not-object", WithHeader("[1, 2]  ", 0), "safetensors header is not a JSON object" },
        { "dtype", WithHeader("{\"a\":{\"dtype\":\"BF16\",\"shape\":[2],\"data_offsets\":[0,4]}}", 4), "tensor 'a': unsupported dtype 'BF16' (supported: F32, I64, I32)" },
        { "outside", WithHeader("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 4), "tensor 'a': data_offsets [0, 8] lie outside the data (4 bytes): the file is truncated or corrupt" },
        { "inverted", WithHeader("{\"a\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[4,0]}}", 4), "tensor 'a': data_offsets [4,0] are not integers 0 <= begin <= end" },
        { "overlap", WithHeader("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8),
            "tensor 'b' data_offsets [4, 8] overlap tensor 'a' [0, 8]" },
        { "shape", WithHeader("{\"a\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,20]}}", 20), "tensor 'a': shape [2, 3] needs 24 bytes of F32 but data_offsets [0, 20] hold 20" },
        { "i64-shape", WithHeader("{\"a\":{\"dtype\":\"I64\",\"shape\":[3],\"data_offsets\":[0,12]}}", 12), "tensor 'a': shape [3] needs 24 bytes of I64 but data_offsets [0, 12] hold 12" },
        { "neg-dim", WithHeader("{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4), "has a dimension that is not a non-negative integer" },
        { "no-shape", WithHeader("{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4), "tensor 'a': header entry has no \"shape\" array" },
        { "meta", WithHeader("{\"__metadata__\":{\"n\":3}}", 0), "__metadata__ entry 'n' is not a string" },
        { "dup", WithHeader("{\"a\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,4]},\"a\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[4,8]}}", 8), "names 'a' twice" },
    };

    [Theory]
    [MemberData(nameof(Corruptions))]
    public void CorruptFileGivesOneLineErrorNamingIt(string name, byte[] bytes, string expected)
    {
        var path = Path.Combine(_dir, name + ".safetensors");
        File.WriteAllBytes(path, bytes);
        var e = Assert.Throws<SkTuningException>(() => SafeTensors.Read(path));
        Assert.StartsWith(path + ": ", e.Message);
        Assert.Contains(expected, e.Message);
        Assert.DoesNotContain('\n', e.Message);
    }

    [Fact]
    public void MissingFileIsOneLineError()
    {
        var path = Path.Combine(_dir, "nope.safetensors");
        Assert.Equal($"{path}: no such file", Assert.Throws<SkTuningException>(() => SafeTensors.Read(path)).Message);
    }

    [Fact]
    public void TensorShapeMustMatchData()
    {
        Assert.Throws<ArgumentException>(() => new NamedTensor([2, 2], [1f, 2f, 3f]));
        Assert.Throws<ArgumentException>(() => SafeTensors.Serialize(new Dictionary<string, NamedTensor> { ["__metadata__"] = NamedTensor.Scalar(1) }));
    }
}
