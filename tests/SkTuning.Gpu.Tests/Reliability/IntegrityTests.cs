using SkTuning.Gpu.Engine;
using SkTuning.Gpu.Import;
using SkTuning.Gpu.Runs;
using SkTuning.Gpu.Tests.Data;
using SkTuning.Gpu.Tests.Training;
using SkTuning.Gpu.Training;
using SkTuning.Gpu.ZeroShot;

namespace SkTuning.Gpu.Tests.Reliability;

/// <summary>One small trained run (a linear head on the GPT-2 fixture), shared by the tests that tamper with copies of it.</summary>
public sealed class TrainedRunFixture : IDisposable
{
    private readonly TempDir _dir = new();

    public TrainedRunFixture()
    {
        ModelFolder = DecoderTrainingTests.ModelFolder(_dir, "gpt2");
        var (task, data, custom) = TrainerTests.SentimentData(_dir);
        var options = MethodDefaults.For("linear", new TrainOptions { Method = "linear", Steps = 2, BatchSize = 8, WarmupSteps = 1, EvalEvery = 2, Seed = 3 });
        RunPath = Path.Combine(_dir.Path, "run");
        using var backend = new CpuBackend();
        Trainer.Train(new TrainingSetup(FrozenModel.Load(ModelFolder), ModelFolder, task, data, backend, RunPath, custom), options, resume: false);
    }

    public string ModelFolder { get; }

    public string RunPath { get; }

    /// <summary>A copy of the run's adapter and config in a fresh folder.</summary>
    public string Copy(TempDir into)
    {
        string copy = Path.Combine(into.Path, "run");
        Directory.CreateDirectory(copy);
        foreach (var f in new[] { RunFolder.ConfigFileName, RunFolder.AdapterFileName })
            File.Copy(Path.Combine(RunPath, f), Path.Combine(copy, f));
        return copy;
    }

    public void Dispose() => _dir.Dispose();
}

/// <summary>Issue 12, finding 4: loaded weights and cached states are checked, so a damaged file cannot slip a wrong answer through.</summary>
public class IntegrityTests(TrainedRunFixture fixture) : IClassFixture<TrainedRunFixture>
{
    /// <summary>Rewrites the copy's adapter with one tensor replaced.</summary>
    private static void Tamper(string run, string tensor, Func<NamedTensor, NamedTensor> change)
    {
        var path = Path.Combine(run, RunFolder.AdapterFileName);
        var file = SafeTensors.Read(path);
        var tensors = file.Tensors.ToDictionary(kv => kv.Key, kv => kv.Key == tensor ? change(kv.Value) : kv.Value);
        SafeTensors.Write(path, tensors, file.Metadata);
    }

    private SkTuningException LoadFails(string run) =>
        Assert.Throws<SkTuningException>(() => SkTuner.Load(run, fixture.ModelFolder, "cpu").Dispose());

    [Fact]
    public void TheUntamperedCopyLoads()
    {
        using var dir = new TempDir();
        using var tuner = SkTuner.Load(fixture.Copy(dir), fixture.ModelFolder, "cpu");
        Assert.NotNull(tuner.Predict("good movie").Label);
    }

    [Theory]
    [InlineData(float.NaN)]
    [InlineData(float.PositiveInfinity)]
    public void NonFiniteWeightsAreRefused(float bad)
    {
        using var dir = new TempDir();
        string run = fixture.Copy(dir);
        Tamper(run, "head.weight", t => { var d = (float[])t.Data.Clone(); d[5] = bad; return new NamedTensor(t.Shape, d); });
        var e = LoadFails(run);
        Assert.Contains(RunFolder.AdapterFileName, e.Message);
        Assert.Contains("'head.weight'", e.Message);
        Assert.Contains(bad.ToString(System.Globalization.CultureInfo.InvariantCulture), e.Message);
    }

    [Fact]
    public void ATransposedShapeIsRefused()
    {
        using var dir = new TempDir();
        string run = fixture.Copy(dir);
        Tamper(run, "head.weight", t => new NamedTensor([t.Shape[1], t.Shape[0]], t.Data));
        var e = LoadFails(run);
        Assert.Contains("'head.weight'", e.Message);
        Assert.Contains("shape", e.Message);
    }

    [Fact]
    public void AnIntegerTensorWhereFloatsAreExpectedIsRefused()
    {
        using var dir = new TempDir();
        string run = fixture.Copy(dir);
        Tamper(run, "head.bias", t => NamedTensor.FromInt32(t.Shape, new int[t.ElementCount]));
        var e = LoadFails(run);
        Assert.Contains("'head.bias'", e.Message);
        Assert.Contains("I32", e.Message);
    }

    [Fact]
    public void LabelsShorterThanTheHeadAreRefused()
    {
        using var dir = new TempDir();
        string run = fixture.Copy(dir);
        string config = Path.Combine(run, RunFolder.ConfigFileName);
        var c = RunJson.Read<AdapterConfig>(config);
        RunJson.Write(config, c with { Labels = c.Labels![..1] });
        var e = LoadFails(run);
        Assert.Contains(RunFolder.ConfigFileName, e.Message);
        Assert.Contains("labels", e.Message);
    }

    [Fact]
    public void ATamperedZeroShotCacheEntryIsDetectedAndRecomputed()
    {
        using var dir = new TempDir();
        var model = FrozenModel.Load(fixture.ModelFolder);
        var log = new List<string>();
        ZeroShotEncoder Encoder() => new(model.Imported, model.Tokenizer, model.Onnx.Outputs.Select(o => o.Name), model.Hash,
            () => model.Onnx.WithExtraOutputs(model.Imported.HiddenStateNames), dir.Path, log.Add);
        HiddenStates first;
        using (var encoder = Encoder()) first = encoder.Encode("good or bad");
        string entry = Assert.Single(Directory.GetFiles(dir.Path));
        var bytes = File.ReadAllBytes(entry);
        bytes[bytes.Length / 2] ^= 0x40; // same size, one bit of one float
        File.WriteAllBytes(entry, bytes);

        HiddenStates second;
        using (var encoder = Encoder()) second = encoder.Encode("good or bad");
        Assert.Equal(first.Last, second.Last);
        Assert.Contains(log, l => l.Contains("checksum") && l.Contains(Path.GetFileName(entry)));
        using (var encoder = Encoder()) Assert.Equal(first.Last, encoder.Encode("good or bad").Last);
        Assert.Contains(log, l => l.Contains("cache hit"));
    }

    [Fact]
    public void AnUnwritableCacheIsUsedWithoutWriting()
    {
        using var dir = new TempDir();
        var model = FrozenModel.Load(fixture.ModelFolder);
        var log = new List<string>();
        string blocked = Path.Combine(dir.Write("not-a-folder", "x"), "zeroshot"); // a path below a regular file cannot be created
        using var encoder = new ZeroShotEncoder(model.Imported, model.Tokenizer, model.Onnx.Outputs.Select(o => o.Name), model.Hash,
            () => model.Onnx.WithExtraOutputs(model.Imported.HiddenStateNames), blocked, log.Add);
        Assert.Equal(model.Spec.Hidden, encoder.Encode("good or bad").Dim);
        Assert.Contains(log, l => l.Contains(blocked) && l.Contains("SKTUNE_CACHE"));
    }
}
