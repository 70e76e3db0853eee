using SkTuning.Gpu.Data;
using SkTuning.Gpu.Engine;
using SkTuning.Gpu.Import;
using SkTuning.Gpu.Tests.Data;
using SkTuning.Gpu.Tests.Support;
using Xunit.Abstractions;

namespace SkTuning.Gpu.Tests.Engine;

/// <summary>The engine's forward on the real pretrained MiniLM against ONNX Runtime's on real data.</summary>
public class MiniLmParityTests(ITestOutputHelper output)
{
    [DataFact]
    public void CpuEngineMatchesOnnxRuntimeOn32RealSst2Sentences()
    {
        var model = FrozenModel.Load("minilm");
        var dev = TaskCatalog.Get("sst2").Load(SharedData.Root!, TaskCatalog.DefaultSeed).Dev;
        var encoded = dev.Take(32).Select(e => model.Tokenizer.Encode(e.Text)).Select(e => (e.Ids, e.TypeIds)).ToList();
        var batch = TokenBatch.FromSequences(encoded, model.Tokenizer.PadId);
        Assert.True(batch.Mask.Contains(0f), "the batch must be padded");

        using var backend = new CpuBackend();
        using var engine = new TransformerEngine(backend, model.Spec, model.Weights);
        var hidden = engine.Forward(batch);
        var ours = new float[hidden.Length];
        backend.Download(hidden, ours);

        int b = batch.Batch, t = batch.SeqLen, d = model.Spec.Hidden;
        long[,] L(Func<int, long> f) { var a = new long[b, t]; for (int i = 0; i < b * t; i++) a[i / t, i % t] = f(i); return a; }
        var ort = OrtRunner.LastHiddenState(File.ReadAllBytes(model.Source.OnnxPath),
            L(i => batch.Ids[i]), L(i => (long)batch.Mask[i]), L(i => batch.Types[i])).Data;

        // Compare the real tokens only: padded positions are defined by neither side's contract.
        var got = new List<float>(); var want = new List<double>();
        for (int i = 0; i < b * t; i++)
            if (batch.Mask[i] == 1f)
                for (int j = 0; j < d; j++) { got.Add(ours[i * d + j]); want.Add(ort[i * d + j]); }
        double maxAbs = 0, maxRef = 0;
        for (int i = 0; i < got.Count; i++) { maxAbs = Math.Max(maxAbs, Math.Abs(got[i] - want[i])); maxRef = Math.Max(maxRef, Math.Abs(want[i])); }
        double normwise = maxAbs / maxRef, elementwise = TestData.MaxRelError(got.ToArray(), want.ToArray());
        output.WriteLine($"B={b} T={t}: max |diff| {maxAbs:E2}, max |ref| {maxRef:F3}, normwise {normwise:E2}, elementwise(floor 1e-3·max) {elementwise:E2}");
        Assert.True(normwise <= 1e-4, $"max |diff| / max |ref| = {normwise:E2}");
    }
}

/// <summary>ArcticXs masks padding with float.MinValue instead of −10000: the engine must still match ONNX Runtime.</summary>
public class ArcticXsParityTests
{
    [Fact]
    public void CpuEngineMatchesOnnxRuntimeWithAFloatMinValueMask()
    {
        var model = FrozenModel.Load("arctic-xs");
        Assert.Equal(float.MinValue, model.Spec.MaskValue);
        var texts = new[] { "A man is playing a guitar.", "The stock market fell sharply today after the announcement.", "Hi." };
        var batch = TokenBatch.FromSequences(texts.Select(t => model.Tokenizer.Encode(t)).Select(e => (e.Ids, e.TypeIds)).ToList(), model.Tokenizer.PadId);
        using var backend = new CpuBackend();
        using var engine = new TransformerEngine(backend, model.Spec, model.Weights);
        var ours = backend.ToHost(engine.Forward(batch));
        int b = batch.Batch, t = batch.SeqLen, d = model.Spec.Hidden;
        long[,] L(Func<int, long> f) { var a = new long[b, t]; for (int i = 0; i < b * t; i++) a[i / t, i % t] = f(i); return a; }
        var ort = OrtRunner.LastHiddenState(File.ReadAllBytes(model.Source.OnnxPath),
            L(i => batch.Ids[i]), L(i => (long)batch.Mask[i]), L(i => batch.Types[i])).Data;
        double maxAbs = 0, maxRef = 0;
        for (int i = 0; i < b * t; i++)
            if (batch.Mask[i] == 1f)
                for (int j = 0; j < d; j++)
                {
                    Assert.True(float.IsFinite(ours[i * d + j]));
                    maxAbs = Math.Max(maxAbs, Math.Abs(ours[i * d + j] - ort[i * d + j]));
                    maxRef = Math.Max(maxRef, Math.Abs(ort[i * d + j]));
                }
        Assert.True(maxAbs / maxRef <= 1e-4, $"max |diff| / max |ref| = {maxAbs / maxRef:E2}");
    }
}
