using SkTuning.Gpu.Data;
using SkTuning.Gpu.Engine;
using SkTuning.Gpu.Import;
using SkTuning.Gpu.Kernels;
using SkTuning.Gpu.Kernels.Gpu;
using SkTuning.Gpu.Onnx;
using SkTuning.Gpu.Tests.Engine;
using SkTuning.Gpu.Tests.Support;
using SkTuning.Gpu.Training;
using SkTuning.Gpu.Training.Baselines;

namespace SkTuning.Gpu.Tests.Training;

/// <summary>
/// The baselines (prompt tuning, prefix tuning, P-tuning v2, linear probe) in the same engine as SK-Tuning: gradients of
/// every trainable tensor through the whole tiny fixture model against finite differences of an fp64 reference, the
/// catalog's parameter-count formulas against the tensors, and the init variants.
/// </summary>
public class BaselineTests
{
    private static readonly BertFixtureOptions Tiny = new(Layers: 2, Hidden: 16, Heads: 2, FfnSize: 32, VocabSize: 40, MaxPositions: 12, Seed: 9);
    private static readonly Lazy<ModelWeights> TinyWeights = new(() => FixtureModels.RandomBertWeights(Tiny));
    // MiniLM's sizes (L = 6, d = 384) with a token FFN and vocabulary: only L and d matter to the counts.
    private static readonly Lazy<ModelWeights> MiniLmSized = new(() =>
        FixtureModels.RandomBertWeights(new BertFixtureOptions(Layers: 6, Hidden: 384, Heads: 12, FfnSize: 8, VocabSize: 8, MaxPositions: 4, Seed: 1)));

    /// <summary>fp64 forward of a baseline adapter: the prompt [n, d] or the prefix [L, 2, n, d].</summary>
    private static (double[] Prompt, double[] Prefix) ReferenceAdapter(string method, IReadOnlyDictionary<string, double[]> p, int n, int d, int layers, int h)
    {
        switch (method)
        {
            case "prompt":
                return (p["prompt.embedding"], []);
            case "ptuning-v2":
                return ([], p["prefix.kv"]);
            case "prefix":
                var pre = new double[n * h];
                Gemm.NNReference(n, h, d, p["prefix.embedding"], p["prefix.mlp1.weight"], pre, p["prefix.mlp1.bias"]);
                var act = new double[n * h];
                Tanh.ForwardReference(pre, act);
                var prefix = new double[2 * layers * n * d];
                for (int g = 0; g < 2 * layers; g++)
                {
                    var block = new double[n * d];
                    Gemm.NNReference(n, d, h, act, p[$"prefix.mlp2.{g}.weight"], block, p[$"prefix.mlp2.{g}.bias"]);
                    block.CopyTo(prefix, g * n * d);
                }
                return ([], prefix);
            default:
                return ([], []);
        }
    }

    [Theory]
    [InlineData("prompt", TaskKind.Classification)]
    [InlineData("prompt", TaskKind.TokenClassification)]
    [InlineData("prefix", TaskKind.Classification)]
    [InlineData("prefix", TaskKind.TokenClassification)]
    [InlineData("ptuning-v2", TaskKind.Regression)]
    [InlineData("ptuning-v2", TaskKind.Classification)]
    [InlineData("linear", TaskKind.Classification)]
    public void GradientsOfEveryTrainableTensorMatchFiniteDifferences(string method, TaskKind task)
    {
        var weights = TinyWeights.Value;
        var rng = new Random(method.Length * 10 + (int)task);
        int n = 3, d = Tiny.Hidden, classes = 3, h = 8;
        var batch = TransformerEngineTests.RandomBatch(rng, 3, 5, Tiny.VocabSize);
        var targets = task switch
        {
            TaskKind.Regression => new HeadTargets(Values: [0.5f, -1.2f, 2f]),
            TaskKind.TokenClassification => new HeadTargets(TokenLabels: batch.Mask.Select((mk, i) => mk == 0 || i % 4 == 0 ? -100 : rng.Next(classes)).ToArray()),
            _ => new HeadTargets(Classes: [0, 2, 1]),
        };

        using var backend = new CpuBackend();
        var adapter = MethodCatalog.CreateAdapter(method, backend, weights, n, new MethodOptions { Dropout = 0f, PrefixHidden = h });
        Assert.Equal(method == "linear", adapter is null);
        var head = new TaskHead(backend, task, Pooling.Mean, d, classes, dropout: 0f);
        using var model = new SkTuningModel(backend, weights.Spec, weights, adapter, head);
        model.Initialize(3);
        foreach (var info in model.Parameters.Infos) model.Parameters.Set(info, TestData.Random(rng, info.Length, 0.5f));
        float loss = model.ForwardBackward(batch, targets, seed: 1).Read();
        var grads = model.Parameters.Export(model.Parameters.Gradients);
        var values = model.Parameters.Export(model.Parameters.Values).ToDictionary(kv => kv.Key, kv => TestData.ToDouble(kv.Value));

        double Loss()
        {
            var (prompt, prefix) = ReferenceAdapter(method, values, n, d, Tiny.Layers, h);
            return SkModelReference.Loss(weights, batch, prompt, prefix, task, classes, targets, values);
        }
        double reference = Loss();
        Assert.True(Math.Abs(reference - loss) <= 1e-4 * Math.Max(1, Math.Abs(reference)), $"loss {loss} vs reference {reference}");
        foreach (var info in model.Parameters.Infos)
            TestData.AssertSampledGradient($"{method} {info.Name}", values[info.Name], grads[info.Name], Loss, rng);
    }

    public static TheoryData<string, AdapterMode> Methods()
    {
        var data = new TheoryData<string, AdapterMode>();
        foreach (var m in MethodCatalog.All.Where(m => m.Supported))
            foreach (var mode in m.Name switch { "sk-prefix" => [AdapterMode.Token, AdapterMode.Pooled, AdapterMode.PerLayer], "sk-prompt" => [AdapterMode.Token, AdapterMode.Pooled], _ => new[] { AdapterMode.Token } })
                data.Add(m.Name, mode);
        return data;
    }

    [Theory]
    [MemberData(nameof(Methods))]
    public void FormulaCountsEqualTheTensorSizes(string method, AdapterMode mode)
    {
        using var backend = new CpuBackend();
        foreach (var (weights, n, classes, hidden) in new[] { (TinyWeights.Value, 3, 3, 8), (MiniLmSized.Value, 13, 2, PrefixTuningAdapter.DefaultHidden), (MiniLmSized.Value, 5, 1, 384) })
        {
            var spec = weights.Spec;
            var options = new MethodOptions { Mode = mode, PrefixHidden = hidden };
            var states = Enumerable.Range(0, mode == AdapterMode.PerLayer ? spec.Layers : 1).Select(_ => new float[n * spec.Hidden]).ToArray();
            using var adapter = MethodCatalog.CreateAdapter(method, backend, weights, n, options, states);
            using var head = new TaskHead(backend, classes == 1 ? TaskKind.Regression : TaskKind.Classification, Pooling.Mean, spec.Hidden, classes);
            var engineTensors = method switch
            {
                "lora" => EngineParameters.LoraTensors(spec, options.LoraRank),
                "full" => EngineParameters.WeightTensors(spec),
                _ => [],
            };
            long tensors = (adapter?.Tensors() ?? []).Concat(head.Tensors()).Concat(engineTensors).Sum(t => t.Shape.Aggregate(1L, (a, b) => a * b));
            Assert.Equal(tensors, MethodCatalog.TrainableParameterCount(method, spec, n, classes, options));
            Assert.Equal(MethodCatalog.Get(method).Kind, adapter?.Kind);
            if (adapter is not null)
                Assert.Equal(adapter.OutputLength, adapter.Kind == AdapterKind.Prompt ? n * spec.Hidden : 2 * spec.Layers * n * spec.Hidden);
        }
    }

    /// <summary>Counts on MiniLM's sizes (L = 6, d = 384), n = 13, two classes (head 384·2 + 2 = 770), worked out by hand.</summary>
    [Theory]
    [InlineData("prompt", 4_992 + 770)]
    [InlineData("prefix", 13 * 384 + 384 * 512 + 512 + 12 * (512 * 384 + 384) + 770)]
    [InlineData("ptuning-v2", 59_904 + 770)]
    [InlineData("sk-prefix", 1_774_080 + 770)]
    [InlineData("sk-prompt", 147_840 + 770)]
    [InlineData("linear", 770)]
    [InlineData("lora", 2 * 6 * 2 * 8 * 384 + 770)] // LoRA = 2·L·2·r·d + head, r = 8
    public void MiniLmCountsAreAsWorkedOut(string method, long expected) =>
        Assert.Equal(expected, MethodCatalog.TrainableParameterCount(method, MiniLmSized.Value.Spec, 13, 2));

    [Fact]
    public void FullFineTuningCountsEveryWeightOfTheRealMiniLmButItsPooler() =>
        Assert.Equal(22_713_216 - (384 * 384 + 384) + 770,
            MethodCatalog.TrainableParameterCount("full", SkTuning.Gpu.Import.FrozenModel.Load("minilm").Spec, 13, 2));

    [Fact]
    public void UnknownMethodsFailClearly()
    {
        using var backend = new CpuBackend();
        Assert.All(MethodCatalog.All, m => Assert.True(m.Supported, m.Name));
        var unknown = Assert.Throws<SkTuningException>(() => MethodCatalog.Get("adapters"));
        Assert.Contains("sk-prefix", unknown.Message);
        Assert.Equal(["sk-prefix", "sk-prompt", "prompt", "prefix", "ptuning-v2", "linear", "lora", "full"], MethodCatalog.Names);
        var missing = Assert.Throws<SkTuningException>(() =>
            MethodCatalog.CreateAdapter("prompt", backend, TinyWeights.Value, 3, new MethodOptions { PromptInit = PromptInit.Text }));
        Assert.Contains("Text", missing.Message);
    }

    private static float[] InitialPrompt(PromptInit init, int n, float[]? rows, int seed = 5)
    {
        using var backend = new CpuBackend();
        var weights = TinyWeights.Value;
        var adapter = MethodCatalog.CreateAdapter("prompt", backend, weights, n, new MethodOptions { PromptInit = init }, rows is null ? null : [rows]);
        using var model = new SkTuningModel(backend, weights.Spec, weights, adapter, new TaskHead(backend, TaskKind.Classification, Pooling.Mean, Tiny.Hidden, 2));
        model.Initialize(seed);
        return model.Parameters.Export(model.Parameters.Values)["prompt.embedding"];
    }

    [Fact]
    public void TextInitRepeatsTheTextRowsToNAndTruncatesBeyond()
    {
        int d = Tiny.Hidden, m = 3;
        var rows = TestData.Random(new Random(2), m * d);
        var seven = InitialPrompt(PromptInit.Text, 7, rows);
        for (int i = 0; i < 7; i++) Assert.Equal(rows.AsSpan(i % m * d, d).ToArray(), seven.AsSpan(i * d, d).ToArray());
        var two = InitialPrompt(PromptInit.Text, 2, rows);
        Assert.Equal(rows.AsSpan(0, 2 * d).ToArray(), two);
        Assert.Equal(rows, InitialPrompt(PromptInit.Text, m, rows));
    }

    [Fact]
    public void VocabularyInitCopiesTheGivenRows()
    {
        int d = Tiny.Hidden, n = 4;
        var rows = TestData.Random(new Random(4), n * d);
        Assert.Equal(rows, InitialPrompt(PromptInit.Vocabulary, n, rows));
        Assert.Throws<ArgumentException>(() => new PromptTuningAdapter(new CpuBackend(), n, d, new float[d + 1]));
    }

    [Fact]
    public void RandomInitsAreDeterministicWithTheirStatedScale()
    {
        var a = InitialPrompt(PromptInit.Random, 40, null, seed: 5);
        Assert.Equal(a, InitialPrompt(PromptInit.Random, 40, null, seed: 5));
        Assert.NotEqual(a, InitialPrompt(PromptInit.Random, 40, null, seed: 6));
        double std = Math.Sqrt(a.Average(x => (double)x * x));
        Assert.InRange(std, 0.018, 0.022);   // 640 draws of N(0, 0.02²)

        using var backend = new CpuBackend();
        using var deep = new DeepPrefixAdapter(backend, 10, Tiny.Hidden, Tiny.Layers);
        using var p = new TrainableParameters(backend, deep.Tensors());
        deep.Initialize(p, new Random(1));
        var kv = p.Export(p.Values)["prefix.kv"];
        Assert.InRange(Math.Sqrt(kv.Average(x => (double)x * x)), 0.9, 1.1);   // 640 draws of N(0, 1)
    }

    [Fact]
    public void DropoutOnTheOutputMasksTheGradientAlike()
    {
        using var backend = new CpuBackend();
        const float rate = 0.5f;
        foreach (IAdapter adapter in new IAdapter[]
                 {
                     new PromptTuningAdapter(backend, 6, Tiny.Hidden, dropout: rate),
                     new DeepPrefixAdapter(backend, 3, Tiny.Hidden, Tiny.Layers, dropout: rate),
                     new PrefixTuningAdapter(backend, 3, Tiny.Hidden, Tiny.Layers, hidden: 8, dropout: rate),
                 })
        {
            using var _ = adapter;
            using var p = new TrainableParameters(backend, adapter.Tensors());
            adapter.Initialize(p, new Random(2));
            var clean = backend.ToHost(adapter.Forward(p, training: false, seed: 9));
            var dropped = backend.ToHost(adapter.Forward(p, training: true, seed: 9));
            int zeros = dropped.Count(v => v == 0);
            Assert.InRange(zeros, dropped.Length / 4, dropped.Length * 3 / 4);
            for (int i = 0; i < clean.Length; i++)
                Assert.True(dropped[i] == 0 || Math.Abs(dropped[i] - clean[i] / (1 - rate)) <= 1e-5 * Math.Max(1, Math.Abs(dropped[i])), $"{adapter.GetType().Name} [{i}]");
            if (adapter is PrefixTuningAdapter) continue;
            // Identity adapters: the gradient is dOutput through the same mask.
            using var dOut = backend.UploadNew(Enumerable.Repeat(1f, adapter.OutputLength).ToArray());
            adapter.Backward(p, dOut.All);
            var g = backend.ToHost(p.Gradients.All);
            for (int i = 0; i < g.Length; i++) Assert.Equal(dropped[i] == 0 ? 0f : 1 / (1 - rate), g[i], 1e-6f);
        }
    }

    /// <summary>Prefix tuning on the ILGPU backend (CPU simulator) — its Tanh and GEMM kernels — matches the CPU backend.</summary>
    [Fact]
    public void PrefixTuningOnTheGpuBackendMatchesTheCpuBackend()
    {
        int n = 3, d = Tiny.Hidden, L = Tiny.Layers, h = 8;
        float[] Run(Backend backend, out float[] gradients)
        {
            using var adapter = new PrefixTuningAdapter(backend, n, d, L, h, dropout: 0f);
            using var p = new TrainableParameters(backend, adapter.Tensors());
            adapter.Initialize(p, new Random(7));
            var output = backend.ToHost(adapter.Forward(p, training: true, seed: 1));
            using var dOut = backend.UploadNew(TestData.Random(new Random(8), adapter.OutputLength));
            adapter.Backward(p, dOut.All);
            gradients = backend.ToHost(p.Gradients.All);
            return output;
        }
        using var cpu = new CpuBackend();
        using var gpu = new GpuBackend(GpuDevice.CreateCpuSimulator());
        var yc = Run(cpu, out var gc);
        var yg = Run(gpu, out var gg);
        double ey = TestData.MaxRelError(yg, TestData.ToDouble(yc));
        Assert.True(ey <= 1e-4, $"prefix: max rel error {ey:g3}");
        using var p = new TrainableParameters(cpu, new PrefixTuningAdapter(cpu, n, d, L, h).Tensors());
        foreach (var info in p.Infos)
        {
            double eg = TestData.MaxRelError(gg.AsSpan(info.Offset, info.Length), TestData.ToDouble(gc.AsSpan(info.Offset, info.Length).ToArray()));
            Assert.True(eg <= 1e-4, $"{info.Name}: max rel error {eg:g3}");
        }
    }
}
