using System.Diagnostics;
using System.Text;
using SkTuning.Gpu.Data;
using SkTuning.Gpu.Onnx;
using SkTuning.Gpu.Runs;
using SkTuning.Gpu.Tests.Data;
using SkTuning.Gpu.Tests.Support;
using SkTuning.Gpu.Training;
using SkTuning.Gpu.ZeroShot;
using Xunit.Abstractions;

namespace SkTuning.Gpu.Tests.Reliability;

/// <summary>
/// Issue 12's fuzz suite: every reader of user files is fed thousands of seeded mutations of a valid file. Each case
/// must finish within a time limit, fail (if at all) only with the tool's input error <see cref="SkTuningException"/>,
/// and allocate no more than a fixed multiple of the bytes it was given. A failure names the seed and case and keeps the
/// input under the temp folder to replay.
/// </summary>
public class FuzzTests(ITestOutputHelper output)
{
    /// <summary>
    /// Per-case limit; a case is a few milliseconds, so this only trips on a hang (generous: the suite runs CLI processes
    /// beside it on 2 cores, and a case once took over 5 s of wall time there).
    /// </summary>
    private static readonly TimeSpan CaseLimit = TimeSpan.FromSeconds(30);

    /// <summary>Allocation allowed per case: this many times the input's bytes (UTF-16 strings, parsed copies, lists), plus a fixed allowance.</summary>
    private const long AllocationFactor = 64, AllocationAllowance = 4 << 20;

    /// <summary>
    /// Runs <paramref name="cases"/> mutations of <paramref name="seedFile"/> through <paramref name="read"/> (which gets
    /// the mutated bytes and returns the bytes it read besides them, e.g. external data).
    /// </summary>
    private void Fuzz(string name, byte[] seedFile, int cases, bool text, Func<byte[], long> read, int seed = 12)
    {
        var rng = new Random(seed);
        var clock = Stopwatch.StartNew();
        int inputErrors = 0;
        read(seedFile); // the valid file itself must read
        for (int i = 0; i < cases; i++)
        {
            var input = Mutator.Mutate(seedFile, rng, text);
            // A thread of its own (LongRunning), not the pool: other test classes block pool threads, and a case that waits
            // for a pool thread would look like a hang.
            var run = Task.Factory.StartNew(() =>
            {
                long before = GC.GetAllocatedBytesForCurrentThread();
                long extra = 0;
                bool refused = false;
                try { extra = read(input); }
                catch (SkTuningException) { refused = true; }
                return (Allocated: GC.GetAllocatedBytesForCurrentThread() - before, Extra: extra, Refused: refused);
            }, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);
            string where = $"{name} fuzz, seed {seed}, case {i}";
            if (!run.Wait(CaseLimit)) Assert.Fail($"{where}: no answer within {CaseLimit.TotalSeconds} s (input kept at {Keep(name, i, input)})");
            if (run.Exception is { } e)
                Assert.Fail($"{where}: {e.InnerException!.GetType().Name}: {e.InnerException.Message} (input kept at {Keep(name, i, input)})\n{e.InnerException.StackTrace}");
            var (allocated, extraBytes, wasRefused) = run.Result;
            long bound = AllocationFactor * (input.Length + extraBytes) + AllocationAllowance;
            if (allocated > bound) Assert.Fail($"{where}: allocated {allocated:N0} bytes for {input.Length:N0} input bytes (bound {bound:N0}; input kept at {Keep(name, i, input)})");
            if (wasRefused) inputErrors++;
        }
        output.WriteLine($"{name}: {cases} cases, {inputErrors} refused with an input error, {cases - inputErrors} accepted, {clock.Elapsed.TotalSeconds:F1} s");
    }

    private static string Keep(string name, int i, byte[] input)
    {
        string dir = Directory.CreateDirectory(Path.Combine(Path.GetTempPath(), "sktune-fuzz-failures")).FullName;
        string path = Path.Combine(dir, $"{name}-{i}.bin");
        File.WriteAllBytes(path, input);
        return path;
    }

    [Fact]
    public void OnnxReader()
    {
        // The external-data fixture: a graph whose initializers point into model.onnx.data, so locations, offsets and
        // lengths are mutated too.
        string fixture = Path.Combine(AppContext.BaseDirectory, "Fixtures", "decoders", "tinyllama_opset14_external_data");
        long dataLength = new FileInfo(Path.Combine(fixture, "model.onnx.data")).Length;
        Fuzz("onnx", File.ReadAllBytes(Path.Combine(fixture, "model.onnx")), 2500, text: false, bytes =>
        {
            var model = OnnxModel.Parse(bytes, "fuzz.onnx", fixture);
            foreach (var t in model.Initializers.Values.Concat(model.Constants.Values))
                if (t.ElementType != OnnxElementType.String) t.ToFloats();
            return model.HasExternalData ? dataLength : 0;
        });
    }

    [Fact]
    public void SafeTensorsReader()
    {
        var rng = new Random(3);
        var tensors = new Dictionary<string, NamedTensor>
        {
            ["head.weight"] = new([8, 2], TestData.Random(rng, 16)),
            ["head.bias"] = NamedTensor.Vector(TestData.Random(rng, 2)),
            ["step"] = NamedTensor.Scalar(40),
            ["counts"] = NamedTensor.FromInt32([3], [1, 2, 3]),
        };
        var file = SafeTensors.Serialize(tensors, new Dictionary<string, string> { ["format"] = "sktuning-adapter/1", ["method"] = "linear" });
        Fuzz("safetensors", file, 5000, text: false, bytes => { SafeTensors.Parse(bytes, "fuzz.safetensors"); return 0; });
    }

    [Fact]
    public void ZeroShotCacheEntry()
    {
        var states = new HiddenStates(3, 4, [TestData.Random(new Random(4), 12), TestData.Random(new Random(5), 12)]);
        using var memory = new MemoryStream();
        states.Write(memory);
        var valid = memory.ToArray();
        int accepted = 0;
        Fuzz("zeroshot-cache", valid, 3000, text: false, bytes =>
        {
            if (HiddenStates.TryRead(bytes) is not null && !bytes.AsSpan().SequenceEqual(valid)) accepted++;
            return 0;
        });
        Assert.Equal(0, accepted); // any change to the bytes fails the checksum
    }

    public static TheoryData<string, string, string?, TaskKind> DataFiles() => new()
    {
        { "train.tsv", "text\tpair\tlabel\ngood movie\tfine\tpos\nbad film\t\"quoted\"\tneg\nok\tso so\tpos\nmeh\tbad\tneg\nfine\tyes\tpos\nawful\tno\tneg\n", "pair", TaskKind.Classification },
        { "train.csv", "text,label\n\"good, movie\",1.5\n\"bad \"\"film\"\"\",-2\nfine,0.25\nawful,3e2\n", null, TaskKind.Regression },
        { "train.jsonl", "{\"text\": \"good movie\", \"label\": \"pos\"}\n{\"text\": \"bad \\u00e9 film\", \"label\": \"neg\"}\n{\"text\": \"ok\", \"label\": \"pos\"}\n{\"text\": \"meh\", \"label\": \"neg\"}\n", null, TaskKind.Classification },
        { "train.conll", "-DOCSTART- O\n\nJohn B-PER\nlives O\nin O\nNew B-LOC\nYork I-LOC\n\nMary B-PER\nSmith I-PER\nleft O\nParis B-LOC\n\nAnn B-PER\nLee I-PER\nsaw O\nRome B-LOC\n\nBob B-PER\nJr I-PER\nin O\nOslo B-LOC\n", null, TaskKind.TokenClassification },
    };

    [Theory]
    [MemberData(nameof(DataFiles))]
    public void DataReaders(string fileName, string content, string? pairColumn, TaskKind kind)
    {
        using var dir = new TempDir();
        string path = Path.Combine(dir.Path, fileName);
        var options = new CustomTaskOptions { TrainFile = path, PairColumn = pairColumn, Kind = kind, DevFraction = 0.3 };
        Fuzz(Path.GetExtension(fileName)[1..], Encoding.UTF8.GetBytes(content), 1500, text: true, bytes =>
        {
            File.WriteAllBytes(path, bytes);
            TaskCatalog.Custom(options).Load(dir.Path);
            return 0;
        });
    }

    [Fact]
    public void JsonConfigs()
    {
        using var dir = new TempDir();
        var config = new AdapterConfig
        {
            Method = "sk-prefix", Mode = AdapterMode.PerLayer, SemanticText = "good or bad", SemanticTokens = 4, Tokens = 4, Model = "minilm",
            ModelHash = new string('a', 64), Task = "custom", TaskKind = TaskKind.Classification, Labels = ["neg", "pos"], Classes = 2, Dim = 384,
            Layers = 6, MaxTokens = 128, PrimaryMetric = "accuracy", TrainableParameters = 1000, ModelParameters = 22_000_000,
            Training = new TrainOptions(), CustomTask = new CustomTaskOptions { TrainFile = "train.tsv" },
        };
        var state = new TrainerState(40, 1, 8, 42, [1, 2, 3, 4], 0.75, 40, 0, 12.5, 320, 1.5);
        var history = new RunHistory { PrimaryMetric = "accuracy", BestStep = 40, Best = new Dictionary<string, double> { ["accuracy"] = 0.75 } };
        history.Add(new CurvePoint(20, 160, 0.69, 1e-3, 5, null));
        history.Add(new CurvePoint(40, 320, 0.55, 5e-4, 10, new Dictionary<string, double> { ["accuracy"] = 0.75, ["loss"] = 0.6 }));

        string configPath = Path.Combine(dir.Path, RunFolder.ConfigFileName), statePath = Path.Combine(dir.Path, RunFolder.TrainerFileName);
        RunJson.Write(configPath, config);
        RunJson.Write(statePath, state);
        history.Save(dir.Path);
        string metricsPath = Path.Combine(dir.Path, RunFolder.MetricsFileName);

        Fuzz("adapter_config", File.ReadAllBytes(configPath), 1500, text: true, bytes =>
        {
            File.WriteAllBytes(configPath, bytes);
            RunJson.Read<AdapterConfig>(configPath).Validate(configPath);
            return 0;
        });
        Fuzz("trainer", File.ReadAllBytes(statePath), 1000, text: true, bytes =>
        {
            File.WriteAllBytes(statePath, bytes);
            RunJson.Read<TrainerState>(statePath);
            return 0;
        });
        Fuzz("metrics", File.ReadAllBytes(metricsPath), 1000, text: true, bytes =>
        {
            File.WriteAllBytes(metricsPath, bytes);
            RunHistory.Load(dir.Path);
            return 0;
        });
    }
}
