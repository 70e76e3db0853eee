using Google.Protobuf;
using SkTuning.Gpu.Data;
using SkTuning.Gpu.Engine;
using SkTuning.Gpu.Import;
using SkTuning.Gpu.Onnx;
using SkTuning.Gpu.Runs;
using SkTuning.Gpu.Training;

namespace SkTuning.Gpu.Export;

/// <summary>What an ONNX export wrote.</summary>
/// <param name="Path">The .onnx file.</param>
/// <param name="ExternalDataPath">The external-data file beside it, or null when the weights are inline.</param>
/// <param name="Inputs">The graph inputs (input_ids, attention_mask, and token_type_ids where the model has token types).</param>
/// <param name="Outputs">The graph outputs (logits and probabilities, or value for regression).</param>
/// <param name="Bytes">Bytes written (graph and data).</param>
public sealed record OnnxExport(string Path, string? ExternalDataPath, IReadOnlyList<string> Inputs, IReadOnlyList<string> Outputs, long Bytes);

/// <summary>
/// <c>sktune export --format onnx</c>: a trained run as one standalone ONNX graph (opset 17, standard operators: any ONNX
/// Runtime execution provider, any language) that maps token ids to the task's outputs. Baked in as initializers: the
/// adapter's output computed once as the engine uses it at inference (SK-Prefix, prefix tuning and P-tuning v2 keys and
/// values, rotated for RoPE; SK-Prompt and prompt-tuning rows; causal models' shared prompt as its keys and values),
/// LoRA merged into the query and value projections (W + (α/r)·A·B), full fine-tuning's weights, and the head with the
/// pooling the run was trained with. Weights over <see cref="ExternalDataThresholdBytes"/> go to an external-data file
/// (<c>&lt;file&gt;.data</c>), as protobuf cannot hold more than 2 GB.
/// </summary>
public static class OnnxExporter
{
    /// <summary>Weight bytes above which the tensors go to an external-data file.</summary>
    public const long ExternalDataThresholdBytes = 1_500_000_000;

    /// <summary>Exports the run in <paramref name="runDirectory"/> to the .onnx file <paramref name="outPath"/>.</summary>
    /// <param name="runDirectory">A run folder written by training.</param>
    /// <param name="outPath">The .onnx file (its folder is created; an existing file is replaced).</param>
    /// <param name="model">The frozen model (default: the one the run names); its hash must match the adapter's.</param>
    /// <param name="log">One-line messages.</param>
    /// <param name="externalData">Force (true) or forbid (false) the external-data file; null: by size.</param>
    /// <exception cref="SkTuningException">Not a run folder, no trained weights, an unknown method, or a model whose hash differs.</exception>
    public static OnnxExport Export(string runDirectory, string outPath, string? model = null, Action<string>? log = null, bool? externalData = null)
    {
        var tuned = Read(runDirectory, model, log);
        long weightBytes = 4L * (tuned.Weights.Values.Sum(v => (long)v.Length) + tuned.Prompt.Length + tuned.Prefix.Length);
        bool external = externalData ?? weightBytes > ExternalDataThresholdBytes;
        var full = System.IO.Path.GetFullPath(outPath);
        Directory.CreateDirectory(System.IO.Path.GetDirectoryName(full)!);
        string? dataPath = null;
        byte[] graph;
        if (external)
        {
            var location = System.IO.Path.GetFileName(full) + ".data";
            dataPath = System.IO.Path.Combine(System.IO.Path.GetDirectoryName(full)!, location);
            byte[]? written = null;
            AtomicFile.Write(dataPath, stream => written = Serialize(tuned, new OnnxGraphBuilder.ExternalData(stream, location)));
            graph = written!;
        }
        else graph = Serialize(tuned, null);
        AtomicFile.WriteAllBytes(full, graph);
        var result = Describe(tuned, full, dataPath, graph.Length + (dataPath is null ? 0 : new FileInfo(dataPath).Length));
        log?.Invoke($"wrote {full} ({result.Bytes / 1e6:F1} MB{(dataPath is null ? "" : ", external data")}): inputs {string.Join(", ", result.Inputs)}; outputs {string.Join(", ", result.Outputs)}");
        return result;
    }

    private static byte[] Serialize(TunedGraph tuned, OnnxGraphBuilder.ExternalData? external)
    {
        var g = new OnnxGraphBuilder(external);
        TunedGraphWriter.Build(g, tuned);
        var model = g.Model(TunedGraphWriter.Opset);
        model.IrVersion = 8;
        model.ProducerName = "sktune";
        model.ProducerVersion = typeof(OnnxExporter).Assembly.GetName().Version?.ToString() ?? "1";
        return model.ToByteArray();
    }

    private static OnnxExport Describe(TunedGraph t, string path, string? dataPath, long bytes)
    {
        List<string> inputs = ["input_ids", "attention_mask"];
        if (t.Spec.TypeVocabSize > 1) inputs.Add("token_type_ids");
        List<string> outputs = t.Kind == TaskKind.Regression ? ["value"] : ["logits", "probabilities"];
        return new OnnxExport(path, dataPath, inputs, outputs, bytes);
    }

    /// <summary>
    /// What the graph of a run bakes in: the run's model and adapter loaded as <see cref="SkTuner"/> loads them, the
    /// adapter's inference output computed once, the transformer's weights (trained ones for full fine-tuning, LoRA merged).
    /// </summary>
    /// <exception cref="SkTuningException">Not a run folder, no trained weights, an unknown method, or a model whose hash differs.</exception>
    public static TunedGraph Read(string runDirectory, string? model = null, Action<string>? log = null)
    {
        var run = RunFolder.Open(runDirectory);
        var config = run.ReadConfig<AdapterConfig>();
        config.Validate(run.ConfigPath);
        Training.Baselines.MethodCatalog.Get(config.Method);
        var frozen = FrozenModel.Load(model ?? config.Model);
        var saved = run.ReadAdapter(expectedModelHash: frozen.Hash);
        var spec = frozen.Spec;
        using var backend = new CpuBackend();
        using var tuned = TunedModelBuilder.Build(frozen, config, backend, log);
        tuned.Parameters.Import(tuned.Parameters.Values, saved.Tensors, saved.Source);
        var (prompt, prefix) = tuned.InferenceInjection();
        float[] Trained(string name) => backend.ToHost(tuned.Parameters.Value(tuned.Parameters[name]));

        var weights = config.Method == "full"
            ? EngineParameters.WeightTensors(spec).ToDictionary(t => t.Name, t => Trained(t.Name))
            : EngineParameters.PretrainedTensors(frozen.Weights);
        if (tuned.Tuning.Lora is { } lora) MergeLora(spec, weights, lora, Trained);
        if (spec.Positions == PositionKind.Rope && prefix.Length > 0)
            PeftExporter.RotatePrefixKeys(prefix, spec, prefix.Length / (2 * spec.Layers * spec.KvDim));
        return new TunedGraph(spec, weights, prompt, prefix, config.TaskKind, config.Pooling, tuned.Head.Classes,
            Trained("head.weight"), Trained("head.bias"));
    }

    /// <summary>
    /// Wqkv[:, q columns] += (α/r)·A_q·B_q and Wqkv[:, v columns] += (α/r)·A_v·B_v per layer, in place (the fused
    /// matrices are the export's own copies), summed in fp64.
    /// </summary>
    private static void MergeLora(ModelSpec spec, Dictionary<string, float[]> weights, LoraOptions lora, Func<string, float[]> trained)
    {
        int d = spec.Hidden, r = lora.Rank, width = EngineParameters.QkvWidth(spec);
        for (int l = 0; l < spec.Layers; l++)
        {
            var name = EngineParameters.LayerNames(l).QkvWeight;
            var w = weights[name];
            var (qa, qb, va, vb) = EngineParameters.LoraNames(l);
            foreach (var (a, b, column0, outputs) in new[] { (qa, qb, 0, d), (va, vb, d + spec.KvDim, spec.KvDim) })
            {
                float[] A = trained(a), B = trained(b);
                for (int i = 0; i < d; i++)
                    for (int j = 0; j < outputs; j++)
                    {
                        double sum = 0;
                        for (int k = 0; k < r; k++) sum += (double)A[i * r + k] * B[k * outputs + j];
                        w[i * width + column0 + j] += (float)(lora.Scale * sum);
                    }
            }
        }
    }
}
