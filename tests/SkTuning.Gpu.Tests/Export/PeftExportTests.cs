using System.Text.Json;
using SkTuning.Gpu.Engine;
using SkTuning.Gpu.Export;
using SkTuning.Gpu.Import;
using SkTuning.Gpu.Runs;
using SkTuning.Gpu.Tests.Cli;
using SkTuning.Gpu.Tests.Data;
using SkTuning.Gpu.Tests.Support;
using SkTuning.Gpu.Tests.Training;
using SkTuning.Gpu.Training;

namespace SkTuning.Gpu.Tests.Export;

/// <summary>
/// <c>sktune export --format peft</c> against PEFT's documented layout: runs trained for a few steps on the tiny BERT
/// fixture and on decoder fixtures (LLaMA with grouped KV heads, GPT-2), exported, then read back and compared with
/// what PEFT would build — the expected tensors come from an independent re-implementation of PEFT's reshape
/// (<c>view(m, 2L, heads, head_dim).permute(2, 0, 3, 1, 4).split(2)</c>) and of Hugging Face's rotate_half RoPE.
/// </summary>
public class PeftExportTests
{
    /// <summary>A run of <paramref name="method"/> trained for 4 steps on the model in <paramref name="folder"/>.</summary>
    private static string Train(TempDir dir, string folder, string method)
    {
        var model = FrozenModel.Load(folder);
        var (task, data, custom) = TrainerTests.SentimentData(dir);
        var options = MethodDefaults.For(method, new TrainOptions
        {
            Method = method, SemanticText = "good or bad", Steps = 4, BatchSize = 8, WarmupSteps = 1, EvalEvery = 2, Seed = 3,
        });
        string run = Path.Combine(dir.Path, "run-" + method);
        using var backend = new CpuBackend();
        Trainer.Train(new TrainingSetup(model, folder, task, data, backend, run, custom), options, resume: false);
        return run;
    }

    private static string BertFolder(TempDir dir)
    {
        TrainerTests.Fixture(dir);
        return dir.Path;
    }

    /// <summary>The prefix [L, 2, m, kvDim] or prompt [m, d] the trained adapter computes, as the engine takes it.</summary>
    private static float[] AdapterOutput(string run, FrozenModel model)
    {
        var folder = RunFolder.Open(run);
        var config = folder.ReadConfig<AdapterConfig>();
        var weights = folder.ReadAdapter();
        using var backend = new CpuBackend();
        using var tuned = TunedModelBuilder.Build(model, config, backend, log: null);
        tuned.Parameters.Import(tuned.Parameters.Values, weights.Tensors, weights.Source);
        return backend.ToHost(tuned.Adapter!.Forward(tuned.Parameters, training: false, seed: 0));
    }

    /// <summary>
    /// PEFT's get_prompt on one example: <paramref name="embeddings"/> [m, 2L·tokenDim] viewed as [m, 2L, heads, hd],
    /// permuted to [2L, heads, m, hd], split in pairs; returns [layer][0 = key, 1 = value][head, t, e] flattened.
    /// </summary>
    private static float[][][] PeftPastKeyValues(float[] embeddings, int m, int layers, int heads, int tokenDim)
    {
        int hd = tokenDim / heads;
        var past = new float[layers][][];
        for (int l = 0; l < layers; l++)
        {
            past[l] = new float[2][];
            for (int j = 0; j < 2; j++)
            {
                var kv = past[l][j] = new float[heads * m * hd];
                int g = 2 * l + j;
                for (int h = 0; h < heads; h++)
                    for (int t = 0; t < m; t++)
                        for (int e = 0; e < hd; e++)
                            kv[(h * m + t) * hd + e] = embeddings[(((t * 2 * layers) + g) * heads + h) * hd + e];
            }
        }
        return past;
    }

    /// <summary>Our prefix's layer l, key (j = 0) or value (j = 1) of token t, column h·hd + e.</summary>
    private static double Ours(float[] prefix, int m, int kvDim, int l, int j, int t, int column) => prefix[((2 * l + j) * m + t) * kvDim + column];

    /// <summary>Hugging Face's rotate_half RoPE of one head's vector at position p, in fp64.</summary>
    private static double[] Rotate(ReadOnlySpan<double> x, int p, int rotaryDim, double theta)
    {
        var y = x.ToArray();
        int half = rotaryDim / 2;
        for (int i = 0; i < half; i++)
        {
            double angle = p * Math.Pow(theta, -2.0 * i / rotaryDim);
            y[i] = x[i] * Math.Cos(angle) - x[i + half] * Math.Sin(angle);
            y[i + half] = x[i + half] * Math.Cos(angle) + x[i] * Math.Sin(angle);
        }
        return y;
    }

    private static Dictionary<string, JsonElement> ReadConfig(string dir) =>
        JsonSerializer.Deserialize<Dictionary<string, JsonElement>>(File.ReadAllText(Path.Combine(dir, PeftExporter.ConfigFileName)))!;

    private static NamedTensor PromptEmbeddings(string dir)
    {
        var file = SafeTensors.Read(Path.Combine(dir, PeftExporter.AdapterFileName));
        Assert.Equal(["prompt_embeddings"], file.Tensors.Keys);
        return file.Tensors["prompt_embeddings"];
    }

    [Fact]
    public void PrefixEmbeddingsReadBackThroughPeftsReshapeAsTheEnginePrefix()
    {
        int layers = 3, m = 2, heads = 2, hd = 4, kv = heads * hd;
        var rng = new Random(1);
        var prefix = Enumerable.Range(0, 2 * layers * m * kv).Select(_ => (float)rng.NextDouble() - 0.5f).ToArray();
        var past = PeftPastKeyValues(PeftLayout.PrefixEmbeddings(prefix, layers, m, kv), m, layers, heads, kv);
        for (int l = 0; l < layers; l++)
            for (int j = 0; j < 2; j++)
                for (int h = 0; h < heads; h++)
                    for (int t = 0; t < m; t++)
                        for (int e = 0; e < hd; e++)
                            Assert.Equal(Ours(prefix, m, kv, l, j, t, h * hd + e), past[l][j][(h * m + t) * hd + e]);
    }

    [Fact]
    public void SkPrefixOnBertExportsThePrefixAndTheHead()
    {
        using var dir = new TempDir();
        string folder = BertFolder(dir), run = Train(dir, folder, "sk-prefix"), export = Path.Combine(dir.Path, "peft");
        var model = FrozenModel.Load(folder);
        var spec = model.Spec;
        var result = PeftExporter.Export(run, export);
        Assert.Equal("PREFIX_TUNING", result.PeftType);

        var config = ReadConfig(export);
        Assert.Equal("PREFIX_TUNING", config["peft_type"].GetString());
        Assert.Equal("FEATURE_EXTRACTION", config["task_type"].GetString());
        Assert.False(config["prefix_projection"].GetBoolean());
        Assert.True(config["inference_mode"].GetBoolean());
        Assert.Equal(folder, config["base_model_name_or_path"].GetString());
        int m = config["num_virtual_tokens"].GetInt32();
        Assert.Equal(RunFolder.Open(run).ReadConfig<AdapterConfig>().SemanticTokens, m);
        Assert.Equal(spec.Layers, config["num_layers"].GetInt32());
        Assert.Equal(spec.Hidden, config["token_dim"].GetInt32());
        Assert.Equal(spec.Heads, config["num_attention_heads"].GetInt32());
        Assert.Equal(1, config["num_transformer_submodules"].GetInt32());

        var embeddings = PromptEmbeddings(export);
        Assert.Equal([m, 2 * spec.Layers * spec.Hidden], embeddings.Shape);
        var prefix = AdapterOutput(run, model);
        Assert.Contains(prefix, v => v != 0);
        var past = PeftPastKeyValues(embeddings.Data, m, spec.Layers, spec.Heads, spec.Hidden);
        for (int l = 0; l < spec.Layers; l++)
            for (int j = 0; j < 2; j++)
                for (int h = 0; h < spec.Heads; h++)
                    for (int t = 0; t < m; t++)
                        for (int e = 0; e < spec.HeadSize; e++)
                            Assert.Equal(Ours(prefix, m, spec.KvDim, l, j, t, h * spec.HeadSize + e), past[l][j][(h * m + t) * spec.HeadSize + e]);

        // The head as torch's Linear: weight [C, d] = our [d, C] transposed.
        var head = SafeTensors.Read(Path.Combine(export, PeftExporter.HeadFileName));
        var ours = RunFolder.Open(run).ReadAdapter().Tensors;
        int d = spec.Hidden, c = 2;
        Assert.Equal([c, d], head.Tensors["weight"].Shape);
        for (int i = 0; i < d; i++)
            for (int k = 0; k < c; k++)
                Assert.Equal(ours["head.weight"].Data[i * c + k], head.Tensors["weight"].Data[k * d + i]);
        Assert.Equal(ours["head.bias"].Data, head.Tensors["bias"].Data);
        Assert.Equal("mean", head.Metadata["pooling"]);
        Assert.Equal("[\"0\",\"1\"]", head.Metadata["labels"]);
        var readme = File.ReadAllText(Path.Combine(export, "README.md"));
        Assert.Contains("PeftModel.from_pretrained", readme);
        Assert.Contains("mean over the real tokens", readme);
        Assert.Contains("Encoder positions differ", readme);
    }

    [Fact]
    public void PtuningV2OnBertExportsItsTrainedTableUnchanged()
    {
        using var dir = new TempDir();
        string folder = BertFolder(dir), run = Train(dir, folder, "ptuning-v2"), export = Path.Combine(dir.Path, "peft");
        var spec = FrozenModel.Load(folder).Spec;
        PeftExporter.Export(run, export);
        var table = RunFolder.Open(run).ReadAdapter().Tensors["prefix.kv"].Data; // [2L, n, d]: the prefix itself
        int m = ReadConfig(export)["num_virtual_tokens"].GetInt32();
        var past = PeftPastKeyValues(PromptEmbeddings(export).Data, m, spec.Layers, spec.Heads, spec.Hidden);
        for (int l = 0; l < spec.Layers; l++)
            for (int j = 0; j < 2; j++)
                for (int h = 0; h < spec.Heads; h++)
                    for (int t = 0; t < m; t++)
                        for (int e = 0; e < spec.HeadSize; e++)
                            Assert.Equal(Ours(table, m, spec.Hidden, l, j, t, h * spec.HeadSize + e), past[l][j][(h * m + t) * spec.HeadSize + e]);
    }

    [Fact]
    public void SkPrefixOnLlamaWithGroupedKvHeadsExportsRotatedKeysAtKvWidth()
    {
        using var dir = new TempDir();
        string folder = DecoderTrainingTests.ModelFolder(dir, "llama"), run = Train(dir, folder, "sk-prefix"), export = Path.Combine(dir.Path, "peft");
        var model = FrozenModel.Load(folder);
        var spec = model.Spec;
        Assert.True(spec.KvHeads < spec.Heads);
        PeftExporter.Export(run, export);
        var config = ReadConfig(export);
        // PEFT's grouped-query rule: token_dim = d / heads · kv_heads, num_attention_heads = kv_heads.
        Assert.Equal(spec.KvDim, config["token_dim"].GetInt32());
        Assert.Equal(spec.KvHeads, config["num_attention_heads"].GetInt32());
        int m = config["num_virtual_tokens"].GetInt32(), hd = spec.HeadSize;
        var embeddings = PromptEmbeddings(export);
        Assert.Equal([m, 2 * spec.Layers * spec.KvDim], embeddings.Shape);

        var prefix = AdapterOutput(run, model);
        var past = PeftPastKeyValues(embeddings.Data, m, spec.Layers, spec.KvHeads, spec.KvDim);
        double worst = 0;
        for (int l = 0; l < spec.Layers; l++)
            for (int h = 0; h < spec.KvHeads; h++)
                for (int t = 0; t < m; t++)
                {
                    var key = Enumerable.Range(0, hd).Select(e => Ours(prefix, m, spec.KvDim, l, 0, t, h * hd + e)).ToArray();
                    var rotated = Rotate(key, t, spec.RotaryDim, spec.RopeTheta);
                    for (int e = 0; e < hd; e++)
                    {
                        worst = Math.Max(worst, Math.Abs(rotated[e] - past[l][0][(h * m + t) * hd + e]));
                        Assert.Equal(Ours(prefix, m, spec.KvDim, l, 1, t, h * hd + e), past[l][1][(h * m + t) * hd + e]);
                    }
                }
        Assert.True(worst < 1e-5, $"rotated keys differ by {worst}");
        Assert.True(m > 1); // position 0 does not rotate: the check needs later positions
        Assert.Contains("Keys are stored rotated", File.ReadAllText(Path.Combine(export, "README.md")));
    }

    [Theory]
    [InlineData("bert", "encoder.layer.{0}.attention.self.query", "encoder.layer.{0}.attention.self.value")]
    [InlineData("llama", "layers.{0}.self_attn.q_proj", "layers.{0}.self_attn.v_proj")]
    public void LoraExportsTransposedMatricesUnderTheBackbonesModuleNames(string family, string query, string value)
    {
        using var dir = new TempDir();
        string folder = family == "bert" ? BertFolder(dir) : DecoderTrainingTests.ModelFolder(dir, family);
        string run = Train(dir, folder, "lora"), export = Path.Combine(dir.Path, "peft");
        var spec = FrozenModel.Load(folder).Spec;
        var options = RunFolder.Open(run).ReadConfig<AdapterConfig>().Training;
        var result = PeftExporter.Export(run, export);
        Assert.Equal("LORA", result.PeftType);
        var config = ReadConfig(export);
        Assert.Equal(options.LoraRank, config["r"].GetInt32());
        Assert.Equal(options.LoraAlpha, config["lora_alpha"].GetSingle());
        Assert.Equal([query.Split('.')[^1], value.Split('.')[^1]], config["target_modules"].EnumerateArray().Select(e => e.GetString()!).ToArray());

        var ours = RunFolder.Open(run).ReadAdapter().Tensors;
        var file = SafeTensors.Read(Path.Combine(export, PeftExporter.AdapterFileName)).Tensors;
        Assert.Equal(4 * spec.Layers, file.Count);
        int r = options.LoraRank, d = spec.Hidden;
        for (int l = 0; l < spec.Layers; l++)
            foreach (var (module, ourName, width) in new[] { (query, "query", d), (value, "value", spec.KvDim) })
            {
                string key = $"base_model.model.{string.Format(System.Globalization.CultureInfo.InvariantCulture, module, l)}";
                var a = file[key + ".lora_A.weight"];
                var b = file[key + ".lora_B.weight"];
                Assert.Equal([r, d], a.Shape);
                Assert.Equal([width, r], b.Shape);
                float[] ourA = ours[$"layer{l}.lora.{ourName}.a"].Data, ourB = ours[$"layer{l}.lora.{ourName}.b"].Data; // [d, r], [r, width]
                Assert.Contains(ourB, v => v != 0); // trained away from B = 0
                for (int i = 0; i < d; i++)
                    for (int k = 0; k < r; k++)
                        Assert.Equal(ourA[i * r + k], a.Data[k * d + i]);
                for (int k = 0; k < r; k++)
                    for (int o = 0; o < width; o++)
                        Assert.Equal(ourB[k * width + o], b.Data[o * r + k]);
            }
    }

    [Theory]
    [InlineData("llama", "sk-prompt")]
    [InlineData("gpt2", "prompt")]
    public void PromptMethodsOnDecodersExportPromptTuningRows(string family, string method)
    {
        using var dir = new TempDir();
        string folder = DecoderTrainingTests.ModelFolder(dir, family), run = Train(dir, folder, method), export = Path.Combine(dir.Path, "peft");
        var model = FrozenModel.Load(folder);
        var spec = model.Spec;
        Assert.Equal("PROMPT_TUNING", PeftExporter.Export(run, export).PeftType);
        var config = ReadConfig(export);
        int m = config["num_virtual_tokens"].GetInt32(), d = spec.Hidden;
        Assert.Equal(d, config["token_dim"].GetInt32());
        var rows = PromptEmbeddings(export);
        Assert.Equal([m, d], rows.Shape);
        var prompt = AdapterOutput(run, model);
        // GPT-2 adds wpe[i] to PEFT's row i; the engine's prompt rows never get one, so the export subtracts it.
        var position = spec.Positions == PositionKind.Absolute ? model.Weights.Embeddings.Position : new float[m * d];
        for (int i = 0; i < m * d; i++) Assert.Equal(prompt[i], (double)rows.Data[i] + position[i], 1e-6);
        if (spec.Positions == PositionKind.Absolute) Assert.Contains(position.Take(m * d), v => v != 0);
    }

    [Fact]
    public void APromptOnBertIsRefusedBecauseTheEmbeddingNormComesFirstInPeft()
    {
        using var dir = new TempDir();
        string folder = BertFolder(dir), run = Train(dir, folder, "sk-prompt");
        var e = Assert.Throws<SkTuningException>(() => PeftExporter.Export(run, Path.Combine(dir.Path, "peft")));
        Assert.Contains("LayerNorm", e.Message);
        Assert.False(Directory.Exists(Path.Combine(dir.Path, "peft")));
    }

    [Fact]
    public void TheCliExportsPeftAndRefusesMethodsWithoutAPeftForm()
    {
        using var dir = new TempDir();
        string run = Path.Combine(dir.Path, "run"), export = Path.Combine(dir.Path, "peft");
        Assert.Equal(0, CliProcess.Run(CliTrainingRun.Args(dir, run, steps: 2, evalEvery: 2)).ExitCode);

        var ok = CliProcess.Run("export", "--run", run, "--format", "peft", "--out", export, "--base-model", "my/base");
        Assert.True(ok.ExitCode == 0, ok.Stderr);
        Assert.Contains("PREFIX_TUNING", ok.Stdout);
        foreach (var f in new[] { PeftExporter.AdapterFileName, PeftExporter.ConfigFileName, PeftExporter.HeadFileName, "README.md" })
            Assert.True(File.Exists(Path.Combine(export, f)), f);
        Assert.Equal("my/base", ReadConfig(export)["base_model_name_or_path"].GetString());

        var linear = CliTrainingRun.Args(dir, Path.Combine(dir.Path, "linear"), steps: 2, evalEvery: 2);
        linear[Array.IndexOf(linear, "sk-prefix")] = "linear";
        Assert.Equal(0, CliProcess.Run(linear).ExitCode);
        CliErrorTests.AssertOneLineError(CliProcess.Run("export", "--run", Path.Combine(dir.Path, "linear"), "--format", "peft", "--out", export),
            "linear", "no PEFT adapter form");
    }
}
