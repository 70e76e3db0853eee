using SkTuning.Gpu.Runs;

namespace SkTuning.Gpu.Tests.Runs;

public sealed class RunFolderTests : IDisposable
{
    private readonly string _root = Path.Combine(Path.GetTempPath(), "sktune-runs-" + Guid.NewGuid().ToString("N"));

    public RunFolderTests() => Directory.CreateDirectory(_root);

    public void Dispose() => Directory.Delete(_root, recursive: true);

    public enum Pooling { Mean, LastToken }

    public sealed record TestConfig(string Method, string ModelHash, int PromptLength, double LearningRate, Pooling Pooling, string[] Labels);

    private static readonly TestConfig Config = new("sk-prompt", "ab12", 10, 3e-3, Pooling.LastToken, ["neg", "pos"]);

    private RunFolder NewRun(string name = "run") => RunFolder.Create(Path.Combine(_root, name));

    [Fact]
    public void ConfigRoundTripsAsSnakeCaseIndentedJson()
    {
        var run = NewRun();
        run.WriteConfig(Config);
        var text = File.ReadAllText(run.ConfigPath);
        Assert.Contains("\"prompt_length\": 10", text);
        Assert.Contains("\"pooling\": \"last_token\"", text);
        Assert.Contains('\n', text);

        var back = RunFolder.Open(run.Path).ReadConfig<TestConfig>();
        Assert.Equal(Config with { Labels = back.Labels }, back);
        Assert.Equal(Config.Labels, back.Labels);
    }

    [Fact]
    public void OpenWithoutConfigIsNotARunFolder()
    {
        var dir = Path.Combine(_root, "empty");
        Directory.CreateDirectory(dir);
        Assert.Equal($"{dir}: not a run folder (no adapter_config.json)", Assert.Throws<SkTuningException>(() => RunFolder.Open(dir)).Message);
        var missing = Path.Combine(_root, "missing");
        Assert.Equal($"{missing}: not a run folder (no adapter_config.json)", Assert.Throws<SkTuningException>(() => RunFolder.Open(missing)).Message);
    }

    [Theory]
    [InlineData("{ \"method\": \"sk-prompt\", ")]
    [InlineData("not json at all")]
    [InlineData("{ \"method\": \"sk-prompt\", \"model_hash\": \"x\", \"prompt_length\": \"ten\", \"learning_rate\": 1, \"pooling\": \"mean\", \"labels\": [] }")]
    [InlineData("{ \"method\": \"sk-prompt\" }")]
    [InlineData("null")]
    public void CorruptConfigIsOneLineErrorNamingTheFile(string json)
    {
        var run = NewRun();
        File.WriteAllText(run.ConfigPath, json);
        var e = Assert.Throws<SkTuningException>(() => RunFolder.Open(run.Path).ReadConfig<TestConfig>());
        Assert.StartsWith(run.ConfigPath + ": invalid JSON", e.Message);
        Assert.DoesNotContain('\n', e.Message);
    }

    [Fact]
    public void AdapterRoundTripsWithModelHashAndMethod()
    {
        var run = NewRun();
        var e = Assert.Throws<SkTuningException>(() => run.ReadAdapter());
        Assert.Equal($"{run.Path}: no trained weights yet (its run has not committed an evaluation); continue a stopped run with sktune train --resume --out {run.Path}", e.Message);

        var tensors = new Dictionary<string, NamedTensor>
        {
            ["prompt"] = new NamedTensor([2, 3], [1, 2, 3, 4, 5, 6]),
            ["head.weight"] = new NamedTensor([2], [0.5f, -0.5f]),
        };
        run.Commit(MakeCheckpoint(1, 1), new RunHistory(), new BestAdapter(tensors, "deadbeef", "sk-prompt"));
        var back = run.ReadAdapter("DEADBEEF");
        Assert.Equal("deadbeef", back.ModelHash);
        Assert.Equal("sk-prompt", back.Method);
        foreach (var (name, t) in tensors) Assert.True(t.ContentEquals(back.Tensors[name]), name);
        // The top-level copy is the commit's, byte for byte; a commit without a new best keeps the previous one.
        string committed = Path.Combine(run.CheckpointPath, RunFolder.AdapterFileName);
        Assert.Equal(File.ReadAllBytes(committed), File.ReadAllBytes(run.AdapterPath));
        Commit(run, MakeCheckpoint(2, 2));
        Assert.Equal(File.ReadAllBytes(run.AdapterPath), File.ReadAllBytes(committed));

        e = Assert.Throws<SkTuningException>(() => run.ReadAdapter("0123456789abcdef0123"));
        Assert.Equal($"{committed}: trained on model deadbeef, but the model given is 0123456789ab", e.Message);
    }

    [Fact]
    public void AdapterWithoutMetadataIsRejected()
    {
        var run = NewRun();
        SafeTensors.Write(run.AdapterPath, new Dictionary<string, NamedTensor> { ["x"] = NamedTensor.Vector([1]) });
        var e = Assert.Throws<SkTuningException>(() => run.ReadAdapter());
        Assert.StartsWith(run.AdapterPath + ": no model_hash", e.Message);
    }

    private static void Commit(RunFolder run, TrainingCheckpoint<TrainerState> checkpoint) => run.Commit(checkpoint, new RunHistory(), null);

    private static TrainingCheckpoint<TrainerState> MakeCheckpoint(long step, int seed)
    {
        var rng = new Random(seed);
        float[] R(int n) => Enumerable.Range(0, n).Select(_ => (float)rng.NextDouble()).ToArray();
        var p = new Dictionary<string, NamedTensor> { ["prompt"] = new([4, 3], R(12)), ["head.bias"] = new([2], R(2)) };
        var m = p.ToDictionary(kv => kv.Key, kv => new NamedTensor(kv.Value.Shape, R(kv.Value.Data.Length)));
        var v = p.ToDictionary(kv => kv.Key, kv => new NamedTensor(kv.Value.Shape, R(kv.Value.Data.Length)));
        var state = new TrainerState(step, Epoch: 2, DataPosition: 17, Seed: 42, RngState: [1UL, ulong.MaxValue, 3UL, 4UL],
            BestMetric: double.NaN, BestStep: -1, EvaluationsWithoutImprovement: 3, ElapsedSeconds: 12.5, ExamplesSeen: step * 32);
        return new TrainingCheckpoint<TrainerState>(p, m, v, state);
    }

    private static void AssertSame(TrainingCheckpoint<TrainerState> expected, TrainingCheckpoint<TrainerState>? actual)
    {
        Assert.NotNull(actual);
        foreach (var (a, b) in new[] { (expected.Parameters, actual.Parameters), (expected.AdamM, actual.AdamM), (expected.AdamV, actual.AdamV) })
        {
            Assert.Equal(a.Keys.Order(), b.Keys.Order());
            foreach (var (name, t) in a) Assert.True(t.ContentEquals(b[name]), name);
        }
        Assert.Equal(expected.Trainer with { RngState = [] }, actual.Trainer with { RngState = [] });
        Assert.Equal(expected.Trainer.RngState, actual.Trainer.RngState);
    }

    [Fact]
    public void CheckpointRoundTrips()
    {
        var run = NewRun();
        Assert.False(run.HasCheckpoint);
        Assert.Null(run.ReadCheckpoint<TrainerState>());
        var c1 = MakeCheckpoint(100, 1);
        Commit(run, c1);
        Assert.True(run.HasCheckpoint);
        AssertSame(c1, run.ReadCheckpoint<TrainerState>());
        var names = SafeTensors.Read(Path.Combine(run.CheckpointPath, RunFolder.StateFileName)).Tensors.Keys.Order().ToArray();
        Assert.Equal(["adam_m.head.bias", "adam_m.prompt", "adam_v.head.bias", "adam_v.prompt", "param.head.bias", "param.prompt"], names);
        Assert.Contains("\"rng_state\"", File.ReadAllText(Path.Combine(run.CheckpointPath, RunFolder.TrainerFileName)));

        var c2 = MakeCheckpoint(200, 2);
        Commit(run, c2);
        AssertSame(c2, run.ReadCheckpoint<TrainerState>());
        Assert.Equal([RunFolder.CheckpointDirName], Directory.GetDirectories(run.Path).Select(Path.GetFileName));

        run.DeleteCheckpoint();
        Assert.False(run.HasCheckpoint);
    }

    [Fact]
    public void HalfWrittenTempCheckpointIsIgnored()
    {
        var run = NewRun();
        var c1 = MakeCheckpoint(100, 1);
        Commit(run, c1);
        // A kill while writing the next one: a partial temp folder with a truncated state file.
        var temp = Path.Combine(run.Path, RunFolder.TempCheckpointPrefix + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(temp);
        File.WriteAllBytes(Path.Combine(temp, RunFolder.StateFileName), [1, 2, 3]);
        AssertSame(c1, run.ReadCheckpoint<TrainerState>());

        // The next write cleans it up.
        var c2 = MakeCheckpoint(200, 2);
        Commit(run, c2);
        Assert.False(Directory.Exists(temp));
        AssertSame(c2, run.ReadCheckpoint<TrainerState>());
    }

    [Fact]
    public void KillBetweenTheRenamesLeavesTheOldCheckpoint()
    {
        var run = NewRun();
        var c1 = MakeCheckpoint(100, 1);
        Commit(run, c1);
        // Kill after "checkpoint -> checkpoint.old" and before "tmp -> checkpoint": only checkpoint.old and a temp remain.
        var old = Path.Combine(run.Path, RunFolder.OldCheckpointDirName);
        Directory.Move(run.CheckpointPath, old);
        var temp = Path.Combine(run.Path, RunFolder.TempCheckpointPrefix + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(temp);
        Assert.True(run.HasCheckpoint);
        AssertSame(c1, run.ReadCheckpoint<TrainerState>());

        // Resuming writes the next checkpoint over that state.
        var c2 = MakeCheckpoint(200, 2);
        Commit(run, c2);
        AssertSame(c2, run.ReadCheckpoint<TrainerState>());
        Assert.False(Directory.Exists(old));
        Assert.False(Directory.Exists(temp));
    }

    [Fact]
    public void KillBeforeDeletingTheOldCheckpointUsesTheNewOne()
    {
        var run = NewRun();
        var c1 = MakeCheckpoint(100, 1);
        var c2 = MakeCheckpoint(200, 2);
        Commit(run, c1);
        // Simulate "checkpoint.old" (c1) left behind next to a complete "checkpoint" (c2).
        var other = RunFolder.Create(Path.Combine(_root, "other"));
        Commit(other, c2);
        Directory.Move(run.CheckpointPath, Path.Combine(run.Path, RunFolder.OldCheckpointDirName));
        Directory.Move(other.CheckpointPath, run.CheckpointPath);
        AssertSame(c2, run.ReadCheckpoint<TrainerState>());

        var c3 = MakeCheckpoint(300, 3);
        Commit(run, c3);
        AssertSame(c3, run.ReadCheckpoint<TrainerState>());
        Assert.Equal([RunFolder.CheckpointDirName], Directory.GetDirectories(run.Path).Select(Path.GetFileName));
    }

    [Fact]
    public void CorruptCheckpointIsOneLineErrorNamingTheFile()
    {
        var run = NewRun();
        Commit(run, MakeCheckpoint(100, 1));
        var trainer = Path.Combine(run.CheckpointPath, RunFolder.TrainerFileName);
        File.WriteAllText(trainer, "{ \"step\": ");
        var e = Assert.Throws<SkTuningException>(() => run.ReadCheckpoint<TrainerState>());
        Assert.StartsWith(trainer + ": invalid JSON", e.Message);

        Commit(run, MakeCheckpoint(100, 1));
        var state = Path.Combine(run.CheckpointPath, RunFolder.StateFileName);
        SafeTensors.Write(state, new Dictionary<string, NamedTensor> { ["param.x"] = NamedTensor.Vector([1]), ["adam_m.x"] = NamedTensor.Vector([1]) });
        e = Assert.Throws<SkTuningException>(() => run.ReadCheckpoint<TrainerState>());
        Assert.Equal($"{state}: param.x has no adam_v.x", e.Message);
    }

    [Fact]
    public void MismatchedMomentsAreRejectedOnWrite()
    {
        var run = NewRun();
        var c = MakeCheckpoint(1, 1);
        var bad = c with { AdamV = new Dictionary<string, NamedTensor> { ["prompt"] = NamedTensor.Vector([1]), ["head.bias"] = c.AdamV["head.bias"] } };
        Assert.Throws<ArgumentException>(() => Commit(run, bad));
        Assert.False(run.HasCheckpoint);
        Assert.Empty(Directory.GetDirectories(run.Path));
    }

    [Fact]
    public void HistoryRoundTrips()
    {
        var run = NewRun();
        Assert.Empty(run.ReadHistory().Points);
        var h = new RunHistory { PrimaryMetric = "accuracy" };
        h.Add(new CurvePoint(10, 320, 0.69, 1e-3, 1.5));
        h.Add(new CurvePoint(20, 640, double.NaN, 9e-4, 3.0, new Dictionary<string, double> { ["accuracy"] = 0.75, ["f1"] = 0.7 }));
        h.Add(new CurvePoint(30, 960, 0.41, 8e-4, 4.5, new Dictionary<string, double> { ["accuracy"] = 0.8125 }));
        h.BestStep = 30;
        h.Best = new Dictionary<string, double> { ["accuracy"] = 0.8125 };
        h.Final = new Dictionary<string, double> { ["accuracy"] = 0.8, ["f1"] = 0.79 };
        h.Save(run.Path);
        Assert.Throws<ArgumentException>(() => h.Add(new CurvePoint(5, 0, 1, 1, 1)));

        var back = RunHistory.Load(run.Path);
        Assert.Equal("accuracy", back.PrimaryMetric);
        Assert.Equal(30, back.BestStep);
        Assert.Equal(h.Best, back.Best);
        Assert.Equal(h.Final, back.Final);
        Assert.Equal(3, back.Points.Count);
        for (int i = 0; i < 3; i++)
        {
            Assert.Equal(h.Points[i] with { Dev = null }, back.Points[i] with { Dev = null });
            Assert.Equal(h.Points[i].Dev, back.Points[i].Dev);
        }
        Assert.True(double.IsNaN(back.Points[1].TrainLoss));

        back.TruncateAfter(20);
        Assert.Equal([10L, 20L], back.Points.Select(p => p.Step));
        back.Add(new CurvePoint(25, 800, 0.5, 1e-4, 4));
        // A commit carries its own history; the top-level metrics.json is its copy.
        run.Commit(MakeCheckpoint(25, 1), back, null);
        Assert.Equal([10L, 20L, 25L], run.ReadHistory().Points.Select(p => p.Step));
        Assert.Equal(File.ReadAllText(Path.Combine(run.CheckpointPath, RunFolder.MetricsFileName)), File.ReadAllText(run.MetricsPath));
    }

    [Fact]
    public void CorruptHistoryIsOneLineErrorNamingTheFile()
    {
        var run = NewRun();
        File.WriteAllText(run.MetricsPath, "{\"points\": [{\"step\": 1}]}");
        var e = Assert.Throws<SkTuningException>(() => RunHistory.Load(run.Path));
        Assert.StartsWith(run.MetricsPath + ": invalid JSON", e.Message);
        Assert.DoesNotContain('\n', e.Message);
    }
}
