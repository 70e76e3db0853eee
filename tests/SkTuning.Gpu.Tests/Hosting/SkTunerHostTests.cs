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
        var vocab = new[] { "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", "," }.Concat(Words).ToArray();
        File.WriteAllLines(Path.Combine(dir.Path, "vocab.txt"), vocab);
        FixtureModels.WriteBert(Path.Combine(dir.Path, "model.onnx"),
            new BertFixtureOptions(Layers: 2, Hidden: 32, Heads: 2, FfnSize: 64, VocabSize: 4096, MaxPositions: 24, Seed: 6));
        var (task, data, custom) = TrainerTests.SentimentData(dir);
        var model = FrozenModel.Load(dir.Path);
        string Train(string method, AdapterMode mode)
        {
            string run = Path.Combine(dir.Path, method);
            using var backend = new CpuBackend();
            Trainer.Train(new TrainingSetup(model, dir.Path, task, data, backend, run, custom), new TrainOptions
            {
                Method = method, Mode = mode, SemanticText = "good or bad", Steps = 6, BatchSize = 8, LearningRate = 5e-3f, WarmupSteps = 2, EvalEvery = 6, Seed = 3,
            }, resume: false);
            return run;
        }
        return (dir.Path, Train("sk-prefix", AdapterMode.PerLayer), Train("sk-prompt", AdapterMode.Token), data);
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
