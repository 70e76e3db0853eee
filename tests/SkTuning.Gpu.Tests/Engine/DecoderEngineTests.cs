using SkTuning.Gpu.Engine;
using SkTuning.Gpu.Import;
using SkTuning.Gpu.Kernels.Gpu;
using SkTuning.Gpu.Tests.Support;
using SkTuning.Gpu.Training;
using Xunit.Abstractions;

namespace SkTuning.Gpu.Tests.Engine;

/// <summary>
/// The engine on tiny random causal decoders (GPT-2-like; LLaMA-like with GQA 4 heads / 2 KV heads, with and without
/// q/k/v biases; BLOOM-like with ALiBi over 6 heads and an embedding LayerNorm; parallel blocks: Falcon-like with one KV
/// head and a shared norm or 2 KV groups and a norm per branch, Phi-like with partial rotary) against the fp64 reference:
/// forward on left- and right-padded batches with a prefix and prompt rows,
/// the reference's own backward against its central differences, the engine's prompt / prefix / full-fine-tuning /
/// LoRA gradients against the reference's, the ILGPU simulator against the CPU backend, and left padding = no padding.
/// </summary>
public class DecoderEngineTests(ITestOutputHelper output)
{
    internal static DecoderOptions Options(string variant) => variant switch
    {
        "gpt2" => DecoderOptions.Gpt2(seed: 3),
        "llama" => DecoderOptions.Llama(seed: 4),
        "llama-bias" => DecoderOptions.Llama(qkvBias: true, seed: 5),
        "falcon" => DecoderOptions.Falcon(newArchitecture: false, seed: 6),
        "falcon-new" => DecoderOptions.Falcon(newArchitecture: true, seed: 7),
        "phi" => DecoderOptions.Phi(seed: 8),
        "bloom" => DecoderOptions.Bloom(seed: 6),
        _ => throw new ArgumentException(variant),
    };

    private static readonly int[] Lengths = [5, 3, 4];

    private sealed record Case(ModelWeights Weights, TokenBatch Batch, float[] Prompt, float[] Prefix, float[] LossWeights)
    {
        public ModelSpec Spec => Weights.Spec;
    }

    private static Case MakeCase(string variant, bool left, int promptLen, int prefixLen, int seed)
    {
        var o = Options(variant);
        var weights = DecoderModels.Random(o);
        var rng = new Random(seed);
        var batch = DecoderModels.Batch(rng, Lengths, o.VocabSize, left);
        var spec = weights.Spec;
        var prompt = TestData.Random(rng, promptLen * spec.Hidden);
        var prefix = TestData.Random(rng, 2 * spec.Layers * prefixLen * spec.KvDim);
        var lossWeights = TestData.Random(rng, batch.Batch * (promptLen + batch.SeqLen) * spec.Hidden);
        return new Case(weights, batch, prompt, prefix, lossWeights);
    }

    private sealed record Run(float[] Hidden, float[] DPrompt, float[] DPrefix);

    /// <summary>Frozen engine forward + backward of Σ w∘hidden; the gradients start at g0 ≠ 0 and come back minus g0 (accumulation checked).</summary>
    private static Run FrozenForwardBackward(Backend backend, Case c)
    {
        using var engine = new TransformerEngine(backend, c.Spec, c.Weights);
        return FrozenForwardBackward(backend, engine, c);
    }

    private static Run FrozenForwardBackward(Backend backend, TransformerEngine engine, Case c)
    {
        using var p = backend.UploadNew(c.Prompt);
        using var k = backend.UploadNew(c.Prefix);
        using var dh = backend.UploadNew(c.LossWeights);
        var g0p = TestData.Random(new Random(1), c.Prompt.Length, 0.1f);
        var g0k = TestData.Random(new Random(2), c.Prefix.Length, 0.1f);
        using var dp = backend.UploadNew(g0p);
        using var dk = backend.UploadNew(g0k);
        var hidden = backend.ToHost(engine.Forward(c.Batch, p.Slice(0, c.Prompt.Length), k.Slice(0, c.Prefix.Length)));
        engine.Backward(dh.All, dp.Slice(0, c.Prompt.Length), dk.Slice(0, c.Prefix.Length));
        var gp = backend.ToHost(dp.Slice(0, c.Prompt.Length)).Select((g, i) => g - g0p[i]).ToArray();
        var gk = backend.ToHost(dk.Slice(0, c.Prefix.Length)).Select((g, i) => g - g0k[i]).ToArray();
        return new Run(hidden, gp, gk);
    }

    [Theory]
    [InlineData("gpt2", false, 0, 0)]
    [InlineData("gpt2", true, 0, 0)]
    [InlineData("gpt2", false, 2, 3)]
    [InlineData("gpt2", true, 2, 3)]
    [InlineData("llama", false, 0, 3)]
    [InlineData("llama", true, 0, 3)]
    [InlineData("llama", false, 2, 0)]
    [InlineData("llama", true, 2, 3)]
    [InlineData("llama-bias", true, 2, 3)]
    [InlineData("llama-bias", false, 2, 3)]
    [InlineData("falcon", true, 2, 3)]
    [InlineData("falcon-new", false, 2, 3)]
    [InlineData("phi", true, 2, 3)]
    [InlineData("phi", false, 0, 0)]
    [InlineData("bloom", true, 0, 0)]
    [InlineData("bloom", false, 0, 3)]
    [InlineData("bloom", true, 2, 3)]
    public void ForwardMatchesTheFp64Reference(string variant, bool left, int promptLen, int prefixLen)
    {
        var c = MakeCase(variant, left, promptLen, prefixLen, seed: 10 + promptLen * 3 + prefixLen + (left ? 1 : 0));
        using var backend = new CpuBackend();
        var got = FrozenForwardBackward(backend, c).Hidden;
        var expected = EngineReference.Forward(c.Weights, c.Batch, TestData.ToDouble(c.Prompt), TestData.ToDouble(c.Prefix));
        Assert.Equal(expected.Length, got.Length);
        // Every row, padding included: both sides apply the same position and mask rules to them.
        // fp32 vs fp64 through 2 layers: normwise ≤ 1e-5 measured ~2e-6; element-wise (floor 1e-3·max) up to ~1e-4.
        double err = TestData.MaxRelError(got, expected), norm = TestData.Normwise(got, expected);
        output.WriteLine($"{variant} {(left ? "left" : "right")} m_p={promptLen} m={prefixLen}: normwise {norm:E2}, element-wise {err:E2}");
        Assert.True(norm <= 1e-5 && err <= 3e-4, $"normwise {norm:E2}, element-wise {err:E2}");
    }

    [Theory]
    [InlineData("gpt2")]
    [InlineData("llama")]
    [InlineData("llama-bias")]
    [InlineData("falcon")]
    [InlineData("falcon-new")]
    [InlineData("phi")]
    [InlineData("bloom")]
    public void ReferenceBackwardMatchesCentralDifferencesOfItsForward(string variant)
    {
        // The fp64 reference's analytic backward (the kernels' BackwardReference composed) against central differences
        // of its own forward: every prompt and prefix entry, sampled entries of every weight and LoRA tensor (r = 2).
        var c = MakeCase(variant, left: true, promptLen: 2, prefixLen: 2, seed: 40);
        var spec = c.Spec;
        var rng = new Random(41);
        var tensors = EngineReference.Tensors(c.Weights);
        const int rank = 2;
        var loraTensors = EngineParameters.LoraTensors(spec, rank)
            .ToDictionary(t => t.Name, t => TestData.ToDouble(TestData.Random(rng, t.Shape[0] * t.Shape[1], 0.3f)));
        var lora = new LoraReference(loraTensors, rank, Scale: 1.5);
        double[] w64 = TestData.ToDouble(c.LossWeights), prompt64 = TestData.ToDouble(c.Prompt), prefix64 = TestData.ToDouble(c.Prefix);
        var (_, g) = EngineReference.ForwardBackward(spec, tensors, c.Batch, prompt64, prefix64, w64, lora);
        double Loss() => TestData.Dot(w64, EngineReference.Forward(spec, tensors, c.Batch, prompt64, prefix64, lora));
        var fdPrompt = TestData.FiniteDifference(prompt64, Loss);
        var fdPrefix = TestData.FiniteDifference(prefix64, Loss);
        double ePrompt = TestData.MaxRelError(g.Prompt, fdPrompt), ePrefix = TestData.MaxRelError(g.Prefix, fdPrefix), worst = 0;
        var failures = new List<string>();
        foreach (var (name, values, grad) in tensors.Select(kv => (kv.Key, kv.Value, g.Weights[kv.Key]))
                     .Concat(loraTensors.Select(kv => (kv.Key, kv.Value, g.Lora[kv.Key]))))
        {
            var idx = Enumerable.Range(0, 6).Select(_ => rng.Next(values.Length)).Distinct().ToArray();
            if (name == EngineParameters.WordEmbeddings) idx = [.. idx, c.Batch.Ids[0] * spec.Hidden + 1, c.Batch.Ids[^1] * spec.Hidden + 2];
            var fd = idx.Select(i => TestData.CentralDifference(values, i, Loss)).ToArray();
            double e = TestData.MaxRelError(idx.Select(i => grad[i]).ToArray(), fd);
            worst = Math.Max(worst, e);
            if (!(e <= 1e-5)) failures.Add($"{name}: {e:E2}");
        }
        output.WriteLine($"{variant}: prompt {ePrompt:E2}, prefix {ePrefix:E2}, worst weight/LoRA {worst:E2}");
        // Central differences with h = 1e-6 in fp64 carry ~1e-6 relative noise on the smaller entries.
        Assert.True(ePrompt <= 1e-5 && ePrefix <= 1e-5, $"prompt {ePrompt:E2}, prefix {ePrefix:E2}");
        Assert.True(failures.Count == 0, "reference gradient vs FD: " + string.Join("; ", failures));
    }

    [Theory]
    [InlineData("gpt2", false)]
    [InlineData("gpt2", true)]
    [InlineData("llama", false)]
    [InlineData("llama", true)]
    [InlineData("llama-bias", true)]
    [InlineData("falcon", true)]
    [InlineData("falcon-new", false)]
    [InlineData("phi", true)]
    [InlineData("bloom", true)]
    [InlineData("bloom", false)]
    public void PromptAndPrefixGradientsMatchTheReference(string variant, bool left)
    {
        var c = MakeCase(variant, left, promptLen: 2, prefixLen: 3, seed: 60 + (left ? 1 : 0));
        using var backend = new CpuBackend();
        var got = FrozenForwardBackward(backend, c);
        var (_, g) = EngineReference.ForwardBackward(c.Spec, EngineReference.Tensors(c.Weights), c.Batch, TestData.ToDouble(c.Prompt),
            TestData.ToDouble(c.Prefix), TestData.ToDouble(c.LossWeights));
        double ePrompt = TestData.MaxRelError(got.DPrompt, g.Prompt), ePrefix = TestData.MaxRelError(got.DPrefix, g.Prefix);
        output.WriteLine($"{variant} {(left ? "left" : "right")}: prompt gradient {ePrompt:E2}, prefix gradient {ePrefix:E2} (element-wise)");
        // fp32 engine vs the fp64 reference's exact gradient (itself checked against FD above).
        Assert.True(ePrompt <= 3e-4, $"prompt gradient {ePrompt:E2}");
        Assert.True(ePrefix <= 3e-4, $"prefix gradient {ePrefix:E2}");
    }

    [Theory]
    [InlineData("gpt2")]
    [InlineData("llama")]
    [InlineData("llama-bias")]
    [InlineData("falcon")]
    [InlineData("falcon-new")]
    [InlineData("phi")]
    [InlineData("bloom")]
    public void FullFineTuningWeightGradientsMatchTheReference(string variant)
    {
        var c = MakeCase(variant, left: true, promptLen: 2, prefixLen: 3, seed: 70);
        using var backend = new CpuBackend();
        var got = WeightGradientTests.RunFull(backend, c.Weights, c.Batch, c.Prompt, c.Prefix, c.LossWeights, seed: 3);
        var (hidden, g) = EngineReference.ForwardBackward(c.Spec, EngineReference.Tensors(c.Weights), c.Batch, TestData.ToDouble(c.Prompt),
            TestData.ToDouble(c.Prefix), TestData.ToDouble(c.LossWeights));
        Assert.True(TestData.MaxRelError(got.Hidden, hidden) <= 1e-4);
        var rng = new Random(71);
        var failures = new List<string>();
        double worstNorm = 0, worstSampled = 0;
        foreach (var (name, _) in EngineParameters.WeightTensors(c.Spec))
        {
            // Whole tensor normwise; sampled entries (embedding tables: rows the batch uses) element-wise.
            double norm = TestData.Normwise(got.Gradients[name], g.Weights[name]);
            var idx = SampleIndices(rng, name, g.Weights[name].Length, c, promptLen: 2, prefixLen: 3);
            double sampled = TestData.MaxRelError(idx.Select(i => got.Gradients[name][i]).ToArray(), idx.Select(i => g.Weights[name][i]).ToArray());
            Assert.Contains(idx, i => g.Weights[name][i] != 0);
            (worstNorm, worstSampled) = (Math.Max(worstNorm, norm), Math.Max(worstSampled, sampled));
            if (!(norm <= 1e-4 && sampled <= 1e-3)) failures.Add($"{name}: {norm:E2} normwise, {sampled:E2} sampled");
        }
        output.WriteLine($"{variant}: worst weight gradient {worstNorm:E2} normwise, {worstSampled:E2} sampled element-wise");
        Assert.True(failures.Count == 0, "weight gradient errors: " + string.Join("; ", failures));
        Assert.True(TestData.MaxRelError(got.DPrompt, g.Prompt) <= 3e-4 && TestData.MaxRelError(got.DPrefix, g.Prefix) <= 3e-4);
    }

    /// <summary>
    /// ~10 indices of a tensor; for the embedding tables, entries of the rows the batch reads (word rows of its ids,
    /// position rows m + m_p.. of a causal model: the prefix and prompt positions read no table row).
    /// </summary>
    private static int[] SampleIndices(Random rng, string name, int length, Case c, int promptLen, int prefixLen)
    {
        int d = c.Spec.Hidden;
        int[] rows = name switch
        {
            EngineParameters.WordEmbeddings => c.Batch.Ids.Distinct().ToArray(),
            EngineParameters.PositionEmbeddings => EngineReference.Positions(c.Spec, c.Batch, prefixLen, promptLen).Tokens.Distinct().ToArray(),
            _ => [],
        };
        var result = new HashSet<int>();
        while (result.Count < Math.Min(10, length))
            result.Add(rows.Length > 0 ? rows[rng.Next(rows.Length)] * d + rng.Next(d) : rng.Next(length));
        return result.Order().ToArray();
    }

    [Theory]
    [InlineData("gpt2", 0f, 2)]
    [InlineData("llama", 0f, 2)]
    [InlineData("llama", 0f, 0)] // prefix only: the engine skips d(loss)/d(layer-0 input), LoRA's gradients must not
    [InlineData("llama-bias", 0.25f, 2)]
    [InlineData("falcon", 0f, 0)]
    [InlineData("phi", 0f, 2)]
    [InlineData("bloom", 0f, 2)]
    public void LoraGradientsMatchTheReference(string variant, float dropout, int promptLen)
    {
        var c = MakeCase(variant, left: true, promptLen, prefixLen: 3, seed: 80);
        var spec = c.Spec;
        const int rank = 2;
        const ulong seed = 99;
        var options = new LoraOptions(rank, Alpha: 4, Dropout: dropout);
        using var backend = new CpuBackend();
        using var p = new TrainableParameters(backend, EngineParameters.LoraTensors(spec, rank));
        var rng = new Random(81);
        EngineParameters.InitializeLora(spec, rank, p, rng);
        foreach (var info in p.Infos.Where(i => i.Name.EndsWith(".b", StringComparison.Ordinal))) p.Set(info, TestData.Random(rng, info.Length, 0.3f));
        var g0 = TestData.Random(rng, p.Count, 0.1f);
        backend.Upload(g0, p.Gradients.All);
        using var engine = new TransformerEngine(backend, spec, c.Weights, p, options);
        var got = WeightGradientTests.ForwardBackward(backend, engine, c.Batch, c.Prompt, c.Prefix, c.LossWeights, p, g0, training: true, seed);

        var lora = new LoraReference(p.Export(p.Values).ToDictionary(kv => kv.Key, kv => TestData.ToDouble(kv.Value)), rank, options.Scale, dropout, seed);
        var (hidden, g) = EngineReference.ForwardBackward(spec, EngineReference.Tensors(c.Weights), c.Batch, TestData.ToDouble(c.Prompt),
            TestData.ToDouble(c.Prefix), TestData.ToDouble(c.LossWeights), lora);
        Assert.True(TestData.MaxRelError(got.Hidden, hidden) <= 1e-4, $"forward {TestData.MaxRelError(got.Hidden, hidden):E2}");
        double worst = 0;
        foreach (var (name, _) in EngineParameters.LoraTensors(spec, rank))
        {
            double e = TestData.MaxRelError(got.Gradients[name], g.Lora[name]);
            worst = Math.Max(worst, e);
            Assert.True(e <= 1e-3, $"{name}: {e:E2}");
        }
        double ePrompt = TestData.MaxRelError(got.DPrompt, g.Prompt), ePrefix = TestData.MaxRelError(got.DPrefix, g.Prefix);
        output.WriteLine($"{variant} dropout {dropout}: worst LoRA gradient {worst:E2}, prompt {ePrompt:E2}, prefix {ePrefix:E2}");
        Assert.True(ePrompt <= 3e-4 && ePrefix <= 3e-4, $"prompt {ePrompt:E2}, prefix {ePrefix:E2}");
    }

    [Fact]
    public void PositionsPastTheModelsTableAreNamed()
    {
        // Causal models number the prefix, prompt and tokens in one sequence: together they must fit the table.
        var weights = DecoderModels.Random(DecoderOptions.Gpt2());
        using var backend = new CpuBackend();
        using var engine = new TransformerEngine(backend, weights.Spec, weights);
        var batch = DecoderModels.Batch(new Random(1), [10], 40, left: false);
        using var prefix = backend.Allocate(2 * weights.Spec.Layers * 20 * weights.Spec.KvDim);
        using var prompt = backend.Allocate(3 * weights.Spec.Hidden);
        var e = Assert.Throws<ArgumentException>(() => engine.Forward(batch, prompt.All, prefix.All));
        Assert.Equal("prefix 20 + prompt 3 + sequence 10 = 33 positions, more than the model's 32", e.Message);
        engine.Forward(batch, default, prefix.All); // 30 positions fit
    }

    [Fact]
    public void SimulatorGivesTheCpuWeightGradientsOnADecoder()
    {
        // The GPU kernels only full fine-tuning reaches (RMSNorm γ, q/k/v bias and SwiGLU weight gradients, RoPE'd
        // embeddings) on ILGPU's CPU simulator against the CPU backend.
        var c = MakeCase("llama-bias", left: true, promptLen: 2, prefixLen: 3, seed: 110);
        using var cpu = new CpuBackend();
        var expected = WeightGradientTests.RunFull(cpu, c.Weights, c.Batch, c.Prompt, c.Prefix, c.LossWeights, seed: 4);
        using var gpu = new GpuBackend(GpuDevice.CreateCpuSimulator());
        var actual = WeightGradientTests.RunFull(gpu, c.Weights, c.Batch, c.Prompt, c.Prefix, c.LossWeights, seed: 4);
        var failures = new List<string>();
        double worst = 0;
        foreach (var (name, g) in expected.Gradients)
        {
            double err = TestData.Normwise(actual.Gradients[name], TestData.ToDouble(g));
            worst = Math.Max(worst, err);
            if (!(err <= 1e-4)) failures.Add($"{name}: {err:E2}");
        }
        double ePrefix = TestData.MaxRelError(actual.DPrefix, TestData.ToDouble(expected.DPrefix));
        double nPrefix = TestData.Normwise(actual.DPrefix, TestData.ToDouble(expected.DPrefix));
        output.WriteLine($"simulator vs CPU: worst weight gradient {worst:E2} normwise; prefix gradient {nPrefix:E2} normwise, {ePrefix:E2} element-wise");
        Assert.True(failures.Count == 0, "simulator vs CPU: " + string.Join("; ", failures));
        Assert.True(nPrefix <= 1e-5 && ePrefix <= 1e-3, $"prefix gradient {nPrefix:E2} normwise, {ePrefix:E2} element-wise");
    }

    [Theory]
    [InlineData("gpt2")]
    [InlineData("llama")]
    [InlineData("phi")]
    [InlineData("bloom")]
    public void LeftPaddedExamplesGiveTheUnpaddedExamplesOutputs(string variant)
    {
        // Positions skip padding (cumsum(mask) − 1 after the prefix and prompt): a left-padded example's real tokens
        // read exactly like the same example alone without padding — hidden states and gradients.
        var c = MakeCase(variant, left: true, promptLen: 2, prefixLen: 3, seed: 90);
        int d = c.Spec.Hidden, mp = 2, T = c.Batch.SeqLen;
        using var backend = new CpuBackend();
        // One engine for all the runs: the single examples reuse the padded batch's (larger) activation buffers.
        using var engine = new TransformerEngine(backend, c.Spec, c.Weights);
        var padded = FrozenForwardBackward(backend, engine, c).Hidden;
        var prompt64 = TestData.ToDouble(c.Prompt);
        var prefix64 = TestData.ToDouble(c.Prefix);
        var paddedReference = EngineReference.Forward(c.Weights, c.Batch, prompt64, prefix64);
        double worst = 0, worstReference = 0;
        for (int b = 0; b < c.Batch.Batch; b++)
        {
            int n = Lengths[b];
            var ids = c.Batch.Ids.AsSpan(b * T + T - n, n).ToArray();
            var alone = new TokenBatch(1, n, ids, new int[n], Enumerable.Repeat(1f, n).ToArray());
            Assert.All(c.Batch.Mask.AsSpan(b * T + T - n, n).ToArray(), v => Assert.Equal(1f, v));
            var single = FrozenForwardBackward(backend, engine, c with { Batch = alone, LossWeights = new float[(mp + n) * d] }).Hidden;
            var rows = Enumerable.Range(0, mp).Select(i => b * (mp + T) + i).Concat(DecoderModels.RealRows(c.Batch, mp, b)).ToArray();
            Assert.Equal(mp + n, rows.Length);
            var got = rows.SelectMany(r => padded.AsSpan(r * d, d).ToArray()).ToArray();
            double e = TestData.MaxRelError(got, TestData.ToDouble(single));
            worst = Math.Max(worst, e);
            var reference = rows.SelectMany(r => paddedReference.AsSpan(r * d, d).ToArray()).ToArray();
            var singleReference = EngineReference.Forward(c.Weights, alone, prompt64, prefix64);
            worstReference = Math.Max(worstReference, TestData.MaxRelError(reference, singleReference));
        }
        output.WriteLine($"{variant}: left-padded vs unpadded, engine {worst:E2}, fp64 reference {worstReference:E2}");
        // Exact in fp64 (the semantics); the fp32 engine differs only by summation order (other row counts).
        Assert.True(worstReference <= 1e-12, $"reference: left-padded vs unpadded {worstReference:E2}");
        Assert.True(worst <= 5e-5, $"left-padded vs unpadded: {worst:E2}");
    }

    [Theory]
    [InlineData("gpt2")]
    [InlineData("llama-bias")]
    [InlineData("falcon-new")]
    [InlineData("phi")]
    [InlineData("bloom")]
    public void SimulatorMatchesTheCpuEngine(string variant)
    {
        var c = MakeCase(variant, left: true, promptLen: 2, prefixLen: 3, seed: 100);
        using var cpu = new CpuBackend();
        var expected = FrozenForwardBackward(cpu, c);
        using var gpu = new GpuBackend(GpuDevice.CreateCpuSimulator());
        var actual = FrozenForwardBackward(gpu, c);
        var reference = EngineReference.Forward(c.Weights, c.Batch, TestData.ToDouble(c.Prompt), TestData.ToDouble(c.Prefix));
        double vsReference = TestData.Normwise(actual.Hidden, reference);
        output.WriteLine($"{variant} hidden: simulator vs fp64 reference {vsReference:E2} normwise");
        Assert.True(vsReference <= 1e-5, $"simulator vs fp64 reference: {vsReference:E2} normwise");
        foreach (var (what, a, e) in new[] { ("hidden", actual.Hidden, expected.Hidden), ("prompt gradient", actual.DPrompt, expected.DPrompt),
                     ("prefix gradient", actual.DPrefix, expected.DPrefix) })
        {
            // Normwise: both are fp32 with different summation orders (the GPU norms reduce by warp trees), so single small
            // elements may differ by more relative to themselves; the simulator's own accuracy is checked against fp64 above.
            double err = TestData.Normwise(a, TestData.ToDouble(e));
            output.WriteLine($"{variant} {what}: simulator vs CPU {err:E2} normwise");
            Assert.True(err <= 1e-5, $"{what}: simulator vs CPU {err:E2} normwise");
        }
    }
}
