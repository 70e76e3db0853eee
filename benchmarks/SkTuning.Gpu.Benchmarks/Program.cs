using BenchmarkDotNet.Running;

// BenchmarkDotNet suites: run all with `dotnet run -c Release --project benchmarks/SkTuning.Gpu.Benchmarks -- --filter '*'`,
// or one with a filter such as '*Gemm*'. Each suite pairs a fast kernel with its baseline (Baseline = true) so the
// summary's Ratio column is the speed-up measured in the same run. `-- latency RUN_DIR [SECOND_RUN] [--seconds N] [--window-ms N] [--threads N]` runs the
// host API's bounded load test instead (LatencyLoad).
if (args is ["latency", .. var rest]) { SkTuning.Gpu.Benchmarks.LatencyLoad.Run(rest); return; }
BenchmarkSwitcher.FromAssembly(typeof(SkTuning.Gpu.Benchmarks.GemmBenchmarks).Assembly).Run(args);
