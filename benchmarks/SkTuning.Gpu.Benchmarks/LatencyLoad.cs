using System.Diagnostics;
using System.Diagnostics.Metrics;
using SkTuning.Gpu;
using SkTuning.Gpu.Hosting;
using SkTuning.Gpu.Runs;
using SkTuning.Gpu.Training;

namespace SkTuning.Gpu.Benchmarks;

/// <summary>
/// A bounded in-process load test of the host API (not BenchmarkDotNet: it measures latency distributions under
/// concurrency): warm single-sentence latency, throughput and p99 at 1, 8 and 32 concurrent callers, the frozen model in
/// ONNX Runtime on the same sentence for reference, and the memory a second run costs over a shared model. With
/// <c>--onnx FILE</c> (the run's <c>sktune export --format onnx</c>) the same single-sentence and concurrent measurements
/// follow for the run served by ONNX Runtime on its export (<see cref="SkTunerRuntime.OnnxRuntime"/>), in the same process.
/// With <c>--mixed</c>, after the memory table only: 32 callers split over the two runs, each run batching alone against
/// both mixing their rows in the shared model's batcher (<see cref="SkTunerOptions.MixAdapters"/>), in alternating rounds.
/// Usage: <c>latency RUN_DIR [SECOND_RUN_DIR] [--seconds N] [--window-ms N] [--threads N] [--onnx FILE] [--mixed]</c>.
/// </summary>
internal static class LatencyLoad
{
    /// <summary>The sentence every latency measurement predicts (8 MiniLM tokens with [CLS] and [SEP]).</summary>
    internal const string Sentence = "a gripping, beautifully acted film";

    public static void Run(string[] args)
    {
        string run = args[0];
        string second = args.Length > 1 && !args[1].StartsWith("--") ? args[1] : run;
        int seconds = CommandArgs.Option(args, "--seconds", 5);
        string? onnx = CommandArgs.Option(args, "--onnx");
        var options = new SkTunerOptions
        {
            BatchWindow = TimeSpan.FromMilliseconds(CommandArgs.Option(args, "--window-ms", 2)),
            MaxKernelThreads = CommandArgs.Option(args, "--threads", -1),
        };

        var (heap0, set0) = Resident();
        var load = Stopwatch.StartNew();
        using var shared = SharedModel.Load(RunFolder.Open(run).ReadConfig<AdapterConfig>().Model, "cpu");
        var (heap1, set1) = Resident();
        long device1 = shared.Backend.Memory.Current;
        using var tuner = SkTuner.Load(run, shared, options);
        Console.WriteLine($"load + warm-up: {load.Elapsed.TotalMilliseconds:F0} ms");
        var (heap2, set2) = Resident();
        long device2 = shared.Backend.Memory.Current;
        using var other = SkTuner.Load(second, shared, options);
        var (heap3, set3) = Resident();
        long device3 = shared.Backend.Memory.Current;
        Console.WriteLine("| MB | GC heap | engine buffers | working set |");
        Console.WriteLine("|---|---:|---:|---:|");
        Console.WriteLine($"| shared model | {Mb(heap1 - heap0)} | {Mb(device1)} | {Mb(set1 - set0)} |");
        Console.WriteLine($"| first run | {Mb(heap2 - heap1)} | {Mb(device2 - device1)} | {Mb(set2 - set1)} |");
        Console.WriteLine($"| second run | {Mb(heap3 - heap2)} | {Mb(device3 - device2)} | {Mb(set3 - set2)} |");
        if (args.Contains("--mixed"))
        {
            Mixed(shared, run, second, [tuner, other], options, TimeSpan.FromSeconds(seconds));
            return;
        }

        // The run served by ONNX Runtime on its export, measured interleaved with the engine (single calls alternate,
        // each concurrency level runs on both back to back) so that a shared machine's load falls on both alike.
        SkTuner? ortTuner = null;
        if (onnx is not null)
        {
            var ortOptions = new SkTunerOptions
            {
                BatchWindow = options.BatchWindow, MaxKernelThreads = options.MaxKernelThreads, Runtime = SkTunerRuntime.OnnxRuntime, OnnxModel = onnx,
            };
            ortTuner = SkTuner.Load(run, ortOptions);
        }
        using (ortTuner)
        {
            Single(ortTuner is null ? [("engine", tuner)] : [("engine", tuner), ("ORT export", ortTuner)]);

            using (var encoder = shared.Frozen.CreateEncoder(cache: false))
            {
                var ort = new List<double>();
                for (int i = 0; i < 400; i++)
                {
                    long t = Stopwatch.GetTimestamp();
                    encoder.Encode(Sentence);
                    ort.Add(Stopwatch.GetElapsedTime(t).TotalMilliseconds);
                }
                Console.WriteLine($"single sentence, warm, ORT frozen graph (no prefix, no head): p50 {P(ort, 50):F2} ms, p99 {P(ort, 99):F2} ms");
            }

            Console.WriteLine("| runtime | callers | requests/s | p50 ms | p99 ms | mean batch |");
            Console.WriteLine("|---|---:|---:|---:|---:|---:|");
            foreach (int callers in new[] { 1, 8, 32 })
            {
                Console.WriteLine(Load([tuner], "engine", callers, TimeSpan.FromSeconds(seconds)));
                if (ortTuner is not null) Console.WriteLine(Load([ortTuner], "ORT export", callers, TimeSpan.FromSeconds(seconds)));
            }
        }
    }

    /// <summary>
    /// 32 callers, caller c calling run c mod 2: the two runs each batching alone (<paramref name="alone"/>) against the same
    /// runs loaded again with <see cref="SkTunerOptions.MixAdapters"/>, whose rows share batches; three rounds of each,
    /// alternating, so that a shared machine's load falls on both alike, after an untimed round of each (the first
    /// concurrent round after loading runs partly on tier-0 JIT code).
    /// </summary>
    private static void Mixed(SharedModel shared, string run, string second, SkTuner[] alone, SkTunerOptions options, TimeSpan duration)
    {
        var mixOptions = new SkTunerOptions { BatchWindow = options.BatchWindow, MaxKernelThreads = options.MaxKernelThreads, MixAdapters = true };
        using var mixed1 = SkTuner.Load(run, shared, mixOptions);
        using var mixed2 = SkTuner.Load(second, shared, mixOptions);
        Load(alone, "warm-up", 32, duration);
        Load([mixed1, mixed2], "warm-up", 32, duration);
        Console.WriteLine("| batching | callers | requests/s | p50 ms | p99 ms | mean batch |");
        Console.WriteLine("|---|---:|---:|---:|---:|---:|");
        for (int round = 0; round < 3; round++)
        {
            Console.WriteLine(Load(alone, "2 runs, each batching alone", 32, duration));
            Console.WriteLine(Load([mixed1, mixed2], "2 runs, mixed batches", 32, duration));
        }
    }

    /// <summary>
    /// Warm single-sentence latency: 400 sequential <see cref="SkTuner.Predict(string, string?)"/> calls per tuner, the tuners
    /// taking turns in blocks of 50 (so both see the same machine, but a call never follows the other runtime's: ONNX
    /// Runtime's intra-op threads spin for a while after each run, taking a core from whatever runs next), after 1 s of
    /// such calls: the first few hundred calls after loading run partly on the JIT's tier-0 code (~1 ms slower per call),
    /// which the later concurrency rows never see.
    /// </summary>
    private static void Single((string Name, SkTuner Tuner)[] tuners)
    {
        const int Block = 50;
        var warm = Stopwatch.StartNew();
        while (warm.Elapsed < TimeSpan.FromSeconds(1))
            foreach (var (_, tuner) in tuners) tuner.Predict(Sentence);
        var times = tuners.Select(_ => new List<double>()).ToArray();
        for (int block = 0; block < 400 / Block; block++)
            for (int k = 0; k < tuners.Length; k++)
                for (int i = 0; i < Block; i++)
                {
                    long t = Stopwatch.GetTimestamp();
                    tuners[k].Tuner.Predict(Sentence);
                    times[k].Add(Stopwatch.GetElapsedTime(t).TotalMilliseconds);
                }
        for (int k = 0; k < tuners.Length; k++)
            Console.WriteLine($"single sentence, warm, {tuners[k].Name}: p50 {P(times[k], 50):F2} ms, p99 {P(times[k], 99):F2} ms");
    }

    /// <summary>
    /// Callers calling as fast as answers come for <paramref name="duration"/>, caller c calling <paramref name="tuners"/>[c mod n];
    /// returns the table row.
    /// </summary>
    private static string Load(SkTuner[] tuners, string name, int callers, TimeSpan duration)
    {
        long batches = 0, rows = 0;
        using var listener = new MeterListener();
        listener.InstrumentPublished = (i, l) => { if (i.Name == "sktuning.batch_size") l.EnableMeasurementEvents(i); };
        listener.SetMeasurementEventCallback<int>((_, v, _, _) => { Interlocked.Increment(ref batches); Interlocked.Add(ref rows, v); });
        listener.Start();
        var latencies = new List<double>[callers];
        var clock = Stopwatch.StartNew();
        var tasks = Enumerable.Range(0, callers).Select(c => Task.Run(async () =>
        {
            var mine = latencies[c] = [];
            while (clock.Elapsed < duration)
            {
                long t = Stopwatch.GetTimestamp();
                await tuners[c % tuners.Length].PredictAsync(Sentence);
                mine.Add(Stopwatch.GetElapsedTime(t).TotalMilliseconds);
            }
        })).ToArray();
        Task.WaitAll(tasks);
        double elapsed = clock.Elapsed.TotalSeconds;
        listener.Dispose();
        var all = latencies.SelectMany(l => l).ToList();
        return $"| {name} | {callers} | {all.Count / elapsed:F0} | {P(all, 50):F2} | {P(all, 99):F2} | {(double)rows / Math.Max(1, batches):F1} |";
    }

    private static double P(List<double> values, double percentile)
    {
        var sorted = values.Order().ToArray();
        return sorted[Math.Min(sorted.Length - 1, (int)(percentile / 100 * sorted.Length))];
    }

    private static (long Heap, long WorkingSet) Resident()
    {
        GC.Collect(); GC.WaitForPendingFinalizers(); GC.Collect();
        return (GC.GetTotalMemory(true), Environment.WorkingSet);
    }

    private static string Mb(long bytes) => (bytes / 1048576.0).ToString("F1");
}
