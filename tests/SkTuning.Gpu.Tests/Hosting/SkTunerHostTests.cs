using System.Diagnostics.Metrics;
using Microsoft.Extensions.DependencyInjection;
using SkTuning.Gpu.Data;
using SkTuning.Gpu.Engine;
using SkTuning.Gpu.Hosting;
using SkTuning.Gpu.Import;
using SkTuning.Gpu.Onnx;
using SkTuning.Gpu.Tests.Data;
using SkTuning.Gpu.Tests.Training;
using SkTuning.Gpu.Training;

namespace SkTuning.Gpu.Tests.Hosting;

/// <summary>The host API: micro-batched concurrent callers, cancellation, runs sharing one frozen model, DI registration.</summary>
public class SkTunerHostTests
{
    private static readonly string[] Words = ["good", "great", "fine", "nice", "bad", "awful", "poor", "sad", "the", "movie", "was", "very", "not", "plot", "acting"];

    /// <summary>
    /// A BERT fixture whose embedding table (4096 rows) dominates its size, so that sharing it shows in memory, and two short
    /// runs over it: SK-Prefix and SK-Prompt.
    /// </summary>
    private static (string Model, string Prefix, string Prompt, TaskData Data) Runs(TempDir dir)
    {
        var train = Fixture(dir, out var data);
        return (dir.Path, train("sk-prefix", "sk-prefix", AdapterMode.PerLayer, 3, "good or bad"), train("sk-prompt", "sk-prompt", AdapterMode.Token, 3, "good or bad"), data);
    }

    /// <summary>Writes the fixture model and data into <paramref name="dir"/>; returns how to train a short run over them (name, method, mode, seed, semantic text).</summary>
    private static Func<string, string, AdapterMode, int, string, string> Fixture(TempDir dir, out TaskData data)
    {
        var vocab = new[] { "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", "," }.Concat(Words).ToArray();
        File.WriteAllLines(Path.Combine(dir.Path, "vocab.txt"), vocab);
        FixtureModels.WriteBert(Path.Combine(dir.Path, "model.onnx"),
            new BertFixtureOptions(Layers: 2, Hidden: 32, Heads: 2, FfnSize: 64, VocabSize: 4096, MaxPositions: 24, Seed: 6));
        var (task, taskData, custom) = TrainerTests.SentimentData(dir);
        var model = FrozenModel.Load(dir.Path);
        data = taskData;
        return (name, method, mode, seed, text) =>
        {
            string run = Path.Combine(dir.Path, name);
            using var backend = new CpuBackend();
            Trainer.Train(new TrainingSetup(model, dir.Path, task, taskData, backend, run, custom), new TrainOptions
            {
                Method = method, Mode = mode, SemanticText = text, Steps = 6, BatchSize = 8, LearningRate = 5e-3f, WarmupSteps = 2, EvalEvery = 6, Seed = seed,
            }, resume: false);
            return run;
        };
    }

    /// <summary>Three SK-Prefix runs of one prefix length (different seeds, modes, texts) and two SK-Prompt runs over one model.</summary>
    private static (string Model, string[] Prefixes, string[] Prompts, TaskData Data) MixRuns(TempDir dir)
    {
        var train = Fixture(dir, out var data);
        string[] prefixes =
        [
            train("a", "sk-prefix", AdapterMode.PerLayer, 3, "good or bad"),
            train("b", "sk-prefix", AdapterMode.Token, 4, "good or bad"),
            train("c", "sk-prefix", AdapterMode.PerLayer, 5, "bad or good"),
        ];
        return (dir.Path, prefixes, [train("p", "sk-prompt", AdapterMode.Token, 3, "good or bad"), train("q", "sk-prompt", AdapterMode.Token, 4, "bad or good")], data);
    }

    /// <summary>Each text's probabilities from <paramref name="run"/> loaded alone (its own model and batcher), one call at a time.</summary>
    private static float[][] AloneAnswers(string model, string run, string[] texts)
    {
        using var tuner = SkTuner.Load(run, Cpu(model));
        return texts.Select(t => tuner.Predict(t).Probabilities!).ToArray();
    }

    [Fact]
    public void RowsOfFiveRunsInOneBatchGetTheBitsEachRunGivesAlone()
    {
        using var dir = new TempDir();
        var (model, prefixes, prompts, data) = MixRuns(dir);
        var runs = prefixes.Concat(prompts).ToArray();
        var texts = data.Dev.Take(10).Select(e => e.Text).ToArray();
        var alone = runs.Select(run => AloneAnswers(model, run, texts)).ToArray();
        // The runs differ: a test that mixed up prefixes, prompts or heads would see it.
        for (int r = 1; r < runs.Length; r++) Assert.NotEqual(alone[r - 1][0], alone[r][0]);

        using var shared = SharedModel.Load(model, "cpu");
        var options = new SkTunerOptions { MixAdapters = true };
        var tuners = runs.Select(run => SkTuner.Load(run, shared, options)).ToArray();
        try
        {
            var mixer = shared.CurrentMixer!;
            Assert.NotNull(mixer);
            // Every (run, text) pair in one batch, runs interleaved and texts of different lengths side by side: the
            // prefix runs' rows run as one forward, the prompt runs' as another.
            var pairs = Enumerable.Range(0, texts.Length * runs.Length).Select(i => (Run: i % runs.Length, Text: i / runs.Length)).ToArray();
            var groups = new List<(int Rows, int Adapters)>();
            mixer.GroupRan = (rows, adapters) => groups.Add((rows, adapters));
            var mixed = mixer.RunBatch(pairs.Select(p =>
            {
                var request = tuners[p.Run].Request(texts[p.Text], null);
                return new MixedRequest(tuners[p.Run], request.Example, request.Encoded);
            }).ToList());
            mixer.GroupRan = null;
            Assert.Equal([(texts.Length * prefixes.Length, prefixes.Length), (texts.Length * prompts.Length, prompts.Length)], groups);
            for (int i = 0; i < pairs.Length; i++)
                Assert.Equal(alone[pairs[i].Run][pairs[i].Text], mixed[i].Probabilities);

            // Single calls go through the mixer too (a lone caller: a batch of one, its injection shared as in the run's own path).
            for (int r = 0; r < runs.Length; r++) Assert.Equal(alone[r][3], tuners[r].Predict(texts[3]).Probabilities);
        }
        finally
        {
            foreach (var t in tuners) t.Dispose();
        }
    }

    [Fact]
    public async Task ConcurrentCallersOfTwoRunsOverOneSharedModelRunInOneBatchWithTheirAloneAnswers()
    {
        using var dir = new TempDir();
        var (model, prefixes, _, data) = MixRuns(dir);
        var texts = data.Dev.Select(e => e.Text).ToArray();
        var alone = prefixes[..2].Select(run => AloneAnswers(model, run, texts)).ToArray();

        using var shared = SharedModel.Load(model, "cpu");
        var options = new SkTunerOptions { MixAdapters = true, BatchWindow = TimeSpan.FromMilliseconds(20) };
        using var a = SkTuner.Load(prefixes[0], shared, options);
        using var b = SkTuner.Load(prefixes[1], shared, options);
        var groups = new List<(int Rows, int Adapters)>();
        shared.CurrentMixer!.GroupRan = (rows, adapters) => { lock (groups) groups.Add((rows, adapters)); };
        // Every text from its own caller on each run, all at once.
        var answers = await Task.WhenAll(Enumerable.Range(0, 2 * texts.Length)
            .Select(i => Task.Run(() => (i % 2 == 0 ? a : b).PredictAsync(texts[i / 2]))));
        shared.CurrentMixer.GroupRan = null;

        for (int i = 0; i < answers.Length; i++) Assert.Equal(alone[i % 2][i / 2], answers[i].Probabilities);
        lock (groups)
        {
            Assert.Contains(groups, g => g.Rows > 1 && g.Adapters == 2);
            Assert.Equal(answers.Length, groups.Sum(g => g.Rows));
        }
    }

    private static SkTunerOptions Cpu(string model) => new() { Model = model, Device = "cpu" };

    [Fact]
    public async Task ConcurrentCallersGetBitIdenticalAnswersToSequentialCallsAndAreBatched()
    {
        using var dir = new TempDir();
        var (model, prefix, _, data) = Runs(dir);
        using var tuner = SkTuner.Load(prefix, Cpu(model));
        var texts = data.Dev.Select(e => e.Text).ToArray();
        var sequential = texts.Select(t => tuner.Predict(t)).ToArray();

        var batchSizes = new List<int>();
        using var listener = new MeterListener();
        listener.InstrumentPublished = (instrument, l) => { if (instrument.Meter.Name == SkTunerMetrics.MeterName) l.EnableMeasurementEvents(instrument); };
        listener.SetMeasurementEventCallback<int>((instrument, value, _, _) => { if (instrument.Name == "sktuning.batch_size") lock (batchSizes) batchSizes.Add(value); });
        listener.Start();
        // Every text from its own caller, three rounds, all at once.
        var concurrent = await Task.WhenAll(Enumerable.Range(0, 3 * texts.Length)
            .Select(i => Task.Run(() => tuner.PredictAsync(texts[i % texts.Length]))));
        listener.Dispose();

        for (int i = 0; i < concurrent.Length; i++)
        {
            var expected = sequential[i % texts.Length];
            Assert.Equal(expected.Label, concurrent[i].Label);
            Assert.Equal(expected.Probabilities, concurrent[i].Probabilities);
        }
        lock (batchSizes) Assert.Contains(batchSizes, size => size > 1);

        // The bulk path (length-sorted batches of up to 64) gives the same bits too.
        var bulk = tuner.PredictBatch(texts.Select(t => (t, (string?)null)).ToList());
        for (int i = 0; i < texts.Length; i++) Assert.Equal(sequential[i].Probabilities, bulk[i].Probabilities);
    }

    [Fact]
    public async Task AQueuedRequestCancelledBeforeItsBatchRunsIsDroppedAndTheOthersAreAnswered()
    {
        using var running = new ManualResetEventSlim();
        using var release = new ManualResetEventSlim();
        var batches = new List<string[]>();
        using var batcher = new MicroBatcher<string, string>(inputs =>
        {
            lock (batches) batches.Add(inputs.ToArray());
            running.Set();
            release.Wait();
            return inputs.Select(x => x.ToUpperInvariant()).ToArray();
        }, maxBatchSize: 8, TimeSpan.Zero);

        var first = batcher.Submit("a", CancellationToken.None);
        Assert.True(running.Wait(TimeSpan.FromSeconds(10)));
        using var cancel = new CancellationTokenSource();
        var cancelled = batcher.Submit("b", cancel.Token);
        var third = batcher.Submit("c", CancellationToken.None);
        cancel.Cancel();
        Assert.True(cancelled.IsCanceled);
        release.Set();

        Assert.Equal("A", await first);
        Assert.Equal("C", await third);
        lock (batches) Assert.Equal([["a"], ["c"]], batches);
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => batcher.Submit("d", cancel.Token));
    }

    /// <summary>
    /// A lone blocking caller runs its request on its own thread (no hand-off to the worker); while a batch runs, or once
    /// disposed, it does not.
    /// </summary>
    [Fact]
    public async Task AnIdleBatcherRunsALoneCallersRequestOnItsThreadAndABusyOneDoesNot()
    {
        using var running = new ManualResetEventSlim();
        using var release = new ManualResetEventSlim(initialState: true);
        var threads = new List<int>();
        var batcher = new MicroBatcher<string, string>(inputs =>
        {
            lock (threads) threads.Add(Environment.CurrentManagedThreadId);
            running.Set();
            release.Wait();
            return inputs.Select(x => x.ToUpperInvariant()).ToArray();
        }, maxBatchSize: 8, TimeSpan.Zero);

        Assert.True(batcher.TryRunAlone("a", out var alone));
        Assert.Equal("A", alone);
        lock (threads) Assert.Equal([Environment.CurrentManagedThreadId], threads);

        release.Reset();
        running.Reset();
        var queued = batcher.Submit("b", CancellationToken.None);
        Assert.True(running.Wait(TimeSpan.FromSeconds(10)));
        Assert.False(batcher.TryRunAlone("c", out _));
        release.Set();
        Assert.Equal("B", await queued);
        lock (threads) Assert.NotEqual(Environment.CurrentManagedThreadId, threads[1]);

        batcher.Dispose();
        Assert.Throws<ObjectDisposedException>(() => batcher.TryRunAlone("d", out _));
    }

    [Fact]
    public void TwoRunsOverOneSharedModelCostTheirAdaptersNotTheModelAndAnswerAsIfLoadedAlone()
    {
        using var dir = new TempDir();
        var (model, prefix, prompt, data) = Runs(dir);
        var texts = data.Dev.Take(8).Select(e => e.Text).ToArray();
        float[][] Alone(string run)
        {
            using var tuner = SkTuner.Load(run, Cpu(model));
            return texts.Select(t => tuner.Predict(t).Probabilities!).ToArray();
        }
        var (prefixAlone, promptAlone) = (Alone(prefix), Alone(prompt));

        using var shared = SharedModel.Load(model, "cpu");
        long modelBytes = shared.Backend.Memory.Current;
        using var a = SkTuner.Load(prefix, shared);
        long firstRun = shared.Backend.Memory.Current - modelBytes;
        using var b = SkTuner.Load(prompt, shared);
        long secondRun = shared.Backend.Memory.Current - modelBytes - firstRun;

        Assert.Same(a.Frozen, b.Frozen);
        // The embedding table alone is 4096·32 floats (512 KB); each run adds its adapter, head and activations only.
        Assert.True(modelBytes > 4096 * 32 * 4, $"model {modelBytes} bytes");
        Assert.True(firstRun < modelBytes / 2 && secondRun < modelBytes / 2, $"model {modelBytes} B, runs {firstRun} B and {secondRun} B");
        Assert.Equal(prefixAlone, texts.Select(t => a.Predict(t).Probabilities!).ToArray());
        Assert.Equal(promptAlone, texts.Select(t => b.Predict(t).Probabilities!).ToArray());
    }

    [Fact]
    public void AddSkTunerRegistersASingletonTheContainerDisposes()
    {
        using var dir = new TempDir();
        var (model, prefix, _, data) = Runs(dir);
        var provider = new ServiceCollection().AddSkTuner(prefix, o => { o.Model = model; o.Device = "cpu"; o.WarmUp = false; }).BuildServiceProvider();
        var tuner = provider.GetRequiredService<SkTuner>();
        Assert.Same(tuner, provider.GetRequiredService<SkTuner>());
        Assert.Contains(tuner.Predict(data.Dev[0].Text).Label, tuner.LabelNames!);
        provider.Dispose();
        Assert.ThrowsAny<Exception>(() => tuner.Predict(data.Dev[0].Text));
    }

    [Fact]
    public async Task OnnxRuntimeOnTheExportAnswersAsTheEngine()
    {
        using var dir = new TempDir();
        var (model, prefix, prompt, data) = Runs(dir);
        var texts = data.Dev.Select(e => e.Text).ToArray();
        foreach (var run in new[] { prefix, prompt })
        {
            var exported = Path.Combine(dir.Path, Path.GetFileName(run) + ".onnx");
            Gpu.Export.OnnxExporter.Export(run, exported);
            using var engine = SkTuner.Load(run, Cpu(model));
            var options = Cpu(model);
            options.Runtime = SkTunerRuntime.OnnxRuntime;
            options.OnnxModel = exported;
            using var ort = SkTuner.Load(run, options);
            Assert.Equal(SkTunerRuntime.OnnxRuntime, ort.Runtime);
            var expected = engine.PredictBatch(texts.Select(t => (t, (string?)null)).ToList());
            var batched = ort.PredictBatch(texts.Select(t => (t, (string?)null)).ToList());
            var concurrent = await Task.WhenAll(texts.Select(t => Task.Run(() => ort.PredictAsync(t))));
            for (int i = 0; i < texts.Length; i++)
                foreach (var actual in new[] { batched[i], concurrent[i] })
                {
                    Assert.Equal(expected[i].Label, actual.Label);
                    for (int c = 0; c < expected[i].Probabilities!.Length; c++)
                        Assert.True(Math.Abs(expected[i].Probabilities![c] - actual.Probabilities![c]) <= 1e-5, $"{texts[i]}: class {c}");
                }
        }
        var missing = Cpu(model);
        missing.Runtime = SkTunerRuntime.OnnxRuntime;
        Assert.Contains("OnnxModel", Assert.Throws<SkTuningException>(() => SkTuner.Load(prefix, missing)).Message);
    }
}
