using BenchmarkDotNet.Running;

// BenchmarkDotNet suites: run all with `dotnet run -c Release --project benchmarks/SkTuning.Gpu.Benchmarks -- --filter '*'`,
// or one with a filter such as '*Gemm*'. Each suite pairs a fast kernel with its baseline (Baseline = true) so the
// summary's Ratio column is the speed-up measured in the same run. `-- latency RUN_DIR [SECOND_RUN] [--seconds N] [--window-ms N] [--threads N] [--onnx FILE] [--mixed]` runs the
// host API's bounded load test instead (LatencyLoad; --onnx adds the run served by ONNX Runtime on its export; --mixed: two runs batching alone vs mixed), and
// `-- export-parity RUN_DIR DATA_ROOT [ONNX_FILE]` exports a run and compares it with the engine on the dev set (ExportParity),
// and `-- gemm-breakdown` times the fp32 GEMM stage by stage against the FMA peak in CPU time (GemmBreakdown).
if (args is ["latency", .. var rest]) { SkTuning.Gpu.Benchmarks.LatencyLoad.Run(rest); return; }
if (args is ["latency-profile", .. var profileArgs]) { SkTuning.Gpu.Benchmarks.LatencyProfile.Run(profileArgs); return; }
if (args is ["export-parity", .. var parityArgs]) { SkTuning.Gpu.Benchmarks.ExportParity.Run(parityArgs); return; }
if (args is ["gemm-breakdown"]) { SkTuning.Gpu.Benchmarks.GemmBreakdown.Run(); return; }
BenchmarkSwitcher.FromAssembly(typeof(SkTuning.Gpu.Benchmarks.GemmBenchmarks).Assembly).Run(args);
