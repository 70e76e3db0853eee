using System.Globalization;
using SkTuning.Gpu.Engine;
using SkTuning.Gpu.Import;
using SkTuning.Gpu.Kernels;
using SkTuning.Gpu.Onnx;
using SkTuning.Gpu.Tokenization;
using SkTuning.Gpu.ZeroShot;

namespace SkTuning.Gpu.Verification;

/// <summary>One compared value: where, the error relative to the reference's scale, and the tolerance it must meet.</summary>
/// <param name="What">e.g. "layer 3 input, right-padded".</param>
/// <param name="Error">max |engine − reference| / max |reference| over real tokens.</param>
/// <param name="Tolerance">The bound.</param>
public sealed record VerifyLine(string What, double Error, double Tolerance)
{
    /// <summary>Whether the error is within tolerance (NaN fails).</summary>
    public bool Passed => Error <= Tolerance;
}

/// <summary>The outcome of <see cref="ModelVerifier.Run"/>.</summary>
/// <param name="Architecture">The detected architecture (one line).</param>
/// <param name="Inputs">What the texts were (tokenizer or random ids) and the batch shape.</param>
/// <param name="Lines">Every comparison.</param>
public sealed record VerifyReport(string Architecture, string Inputs, IReadOnlyList<VerifyLine> Lines)
{
    /// <summary>Whether every line passed.</summary>
    public bool Passed => Lines.All(l => l.Passed);
}

/// <summary>
/// What a user runs on their own export before training (<c>sktune verify</c>): imports the graph, runs ONNX Runtime and
/// the engine on the same few texts (the model's tokenizer; random ids without one), right-padded and — where the graph
/// takes position ids, numbers positions per token or counts them from the mask (ALiBi) — left-padded, and compares every layer's input and the final
/// states; then checks the engine's prefix gradient against central finite differences of its own forward. A graph
/// that computes something the engine does not model either fails to import (an input error) or fails here.
/// </summary>
public static class ModelVerifier
{
    /// <summary>Documented tolerance of the hidden states: fp32 engine vs fp32 ONNX Runtime, relative to the states' scale.</summary>
    public const double StateTolerance = 1e-4;

    /// <summary>
    /// Tolerance of the hidden states with bf16 frozen weights (<see cref="WeightPrecision.Bf16"/>) against ONNX Runtime's
    /// fp32: bf16 keeps 8 significant bits, so each weight moves by up to 2⁻⁸ ≈ 3.9e-3 relative; in a dot product of
    /// K terms those errors mostly cancel (~2⁻⁸/√3 typical), but they compound through the layers and the max over all
    /// states is taken, so the bound is 3e-2. The <c>vdpbf16ps</c> GEMM rounds the activations it multiplies to bf16 as
    /// well (measured: MiniLM-L6 4.3e-3, the decoder fixtures 3.4e-3 … 9.9e-3; widening, fp32 activations: 2.3e-3 and
    /// 2.1e-3 … 6.2e-3; benchmarks/RESULTS.md).
    /// </summary>
    public const double Bf16StateTolerance = 3e-2;

    /// <summary>The hidden-state tolerance for a backend's frozen-weight precision.</summary>
    public static double StateToleranceFor(WeightPrecision precision) =>
        precision == WeightPrecision.Bf16 ? Bf16StateTolerance : StateTolerance;

    /// <summary>Tolerance of the gradient check: fp32 central differences of the loss are good to about 1e-3.</summary>
    public const double GradientTolerance = 1e-2;

    private static readonly string[] Texts =
    [
        "The quick brown fox jumps over the lazy dog.",
        "a gripping, funny film",
        "It's not that I dislike it; I just expected more from a 2-hour movie!",
        "ok",
    ];

    /// <summary>Verifies the model at <paramref name="model"/> (catalog name, .onnx file or folder) on <paramref name="backend"/>.</summary>
    /// <exception cref="SkTuningException">The model cannot be read or imported (an input error).</exception>
    public static VerifyReport Run(string model, Backend backend, Action<string>? log = null)
    {
        var source = ModelCatalog.Resolve(model);
        var onnx = OnnxModel.Load(source.OnnxPath);
        var imported = ModelImporter.Import(onnx);
        var spec = imported.Spec;
        TextTokenizer? tokenizer = null;
        if (TextTokenizer.HasFiles(source.TokenizerDirectory))
        {
            tokenizer = TextTokenizer.Load(source.TokenizerDirectory);
            FrozenModel.CheckTokenizer(spec, tokenizer, source.TokenizerDirectory);
        }
        var sequences = Sequences(spec, tokenizer);
        var lines = new List<VerifyLine>();
        // RoBERTa graphs tell padding by its id: pad with the graph's padding id.
        int padId = spec.PositionPaddingId ?? 0;
        var right = Batch(sequences, spec, padId, leftPad: false);
        var names = imported.HiddenStateNames;
        using var runner = new OrtModelRunner(imported, onnx.WithExtraOutputs(names), names, log);
        using var engine = new TransformerEngine(backend, spec, imported.Weights);
        Compare(engine, runner, right, "right-padded", lines);
        // Encoders' graphs number positions themselves as the engine does (BERT 0..T−1, RoBERTa from the padding id), on
        // either side; causal models need the graph to take position ids for left padding, or to count them from the mask
        // itself (BLOOM's ALiBi).
        if (!spec.Causal || runner.TakesPositions || spec.Positions == PositionKind.Alibi)
            Compare(engine, runner, Batch(sequences, spec, padId, leftPad: true), "left-padded", lines);
        lines.Add(GradientCheck(engine, right, spec));
        string inputs = (tokenizer is null ? "random ids (no tokenizer files beside the model)" : $"{Texts.Length} texts through the {tokenizer.Kind} tokenizer")
                        + $", batch {right.Batch} × {right.SeqLen}"
                        + (backend.FrozenWeights == WeightPrecision.Bf16 ? ", frozen weight matrices in bf16 (vs ONNX Runtime's fp32)" : "");
        return new VerifyReport(spec.Describe(), inputs, lines);
    }

    private static List<int[]> Sequences(ModelSpec spec, TextTokenizer? tokenizer)
    {
        if (tokenizer is not null) return Texts.Select(t => tokenizer.Encode(t).Ids).ToList();
        var rng = new Random(1234);
        int Token()
        {
            if (spec.PositionPaddingId is not { } pad) return rng.Next(spec.VocabSize);
            // A graph that counts positions from the padding id reads that id as padding wherever it is: real tokens avoid it.
            int id = rng.Next(spec.VocabSize - 1);
            return id >= pad ? id + 1 : id;
        }
        return [.. new[] { 9, 6, 12, 3 }.Select(n => Enumerable.Range(0, n).Select(_ => Token()).ToArray())];
    }

    private static TokenBatch Batch(List<int[]> sequences, ModelSpec spec, int padId, bool leftPad)
    {
        int B = sequences.Count, T = sequences.Max(s => s.Length);
        var ids = new int[B * T];
        Array.Fill(ids, padId);
        var mask = new float[B * T];
        for (int b = 0; b < B; b++)
        {
            var s = sequences[b];
            int start = leftPad ? T - s.Length : 0;
            s.CopyTo(ids, b * T + start);
            mask.AsSpan(b * T + start, s.Length).Fill(1f);
        }
        return new TokenBatch(B, T, ids, new int[B * T], mask);
    }

    private static void Compare(TransformerEngine engine, OrtModelRunner runner, TokenBatch batch, string label, List<VerifyLine> lines)
    {
        var reference = runner.Run(batch);
        var final = engine.Forward(batch);
        int L = engine.Spec.Layers;
        for (int l = 0; l <= L; l++)
        {
            var mine = engine.Backend.ToHost(l < L ? engine.LayerInput(l) : final);
            string what = l == 0 ? "embedding output" : l < L ? $"layer {l} input" : "final hidden states";
            lines.Add(new VerifyLine($"{what}, {label}", RelativeError(mine, reference[l], batch, engine.Spec.Hidden),
                StateToleranceFor(engine.Backend.FrozenWeights)));
        }
    }

    /// <summary>max |a − ref| / max |ref| over the real tokens' rows.</summary>
    internal static double RelativeError(float[] actual, float[] reference, TokenBatch batch, int dim)
    {
        double diff = 0, scale = 0;
        for (int r = 0; r < batch.Batch * batch.SeqLen; r++)
        {
            if (batch.Mask[r] == 0) continue;
            for (int c = 0; c < dim; c++)
            {
                double a = actual[r * dim + c], e = reference[r * dim + c];
                diff = Math.Max(diff, Math.Abs(a - e));
                if (double.IsNaN(a)) diff = double.NaN;
                scale = Math.Max(scale, Math.Abs(e));
            }
        }
        return diff / Math.Max(scale, 1e-30);
    }

    /// <summary>
    /// d(loss)/d(prefix) from the engine's backward against central differences of its forward, along two random
    /// directions; loss = Σ w ⊙ final states over the real tokens, prefix of 2 keys per layer.
    /// </summary>
    private static VerifyLine GradientCheck(TransformerEngine engine, TokenBatch batch, ModelSpec spec)
    {
        // Central differences need a smooth forward: the vdpbf16ps GEMM rounds its activations to bf16, a step function at
        // this scale. The backward's math is the same on either path, so the check runs on the widening one.
        if (engine.Backend is not CpuBackend { Bf16Path: not Bf16GemmPath.Widening } cpu) return GradientCheckOn(engine, batch, spec);
        var path = cpu.Bf16Path;
        cpu.Bf16Path = Bf16GemmPath.Widening;
        try
        {
            return GradientCheckOn(engine, batch, spec);
        }
        finally
        {
            cpu.Bf16Path = path;
        }
    }

    private static VerifyLine GradientCheckOn(TransformerEngine engine, TokenBatch batch, ModelSpec spec)
    {
        var backend = engine.Backend;
        var rng = new Random(99);
        int m = 2, n = 2 * spec.Layers * m * spec.KvDim, rows = batch.Batch * batch.SeqLen, d = spec.Hidden;
        float[] R(int count, double scale) => Enumerable.Range(0, count).Select(_ => (float)((rng.NextDouble() * 2 - 1) * scale)).ToArray();
        var prefix = R(n, 1.0);
        var w = R(rows * d, 1.0);
        for (int r = 0; r < rows; r++) if (batch.Mask[r] == 0) Array.Clear(w, r * d, d);
        using var p = backend.UploadNew(prefix);
        using var dHidden = backend.UploadNew(w);
        using var dPrefix = backend.Allocate(n);
        double Loss(float[] values)
        {
            backend.Upload(values, p.All);
            var h = backend.ToHost(engine.Forward(batch, prefix: p.All));
            double s = 0;
            for (int i = 0; i < h.Length; i++) s += (double)w[i] * h[i];
            return s;
        }
        Loss(prefix);
        engine.Backward(dHidden.All, dPrefix: dPrefix.All);
        var grad = backend.ToHost(dPrefix.All);
        double worst = 0;
        for (int k = 0; k < 2; k++)
        {
            var v = R(n, 1.0);
            double eps = 1e-2, analytic = 0;
            for (int i = 0; i < n; i++) analytic += (double)grad[i] * v[i];
            var plus = prefix.Select((x, i) => (float)(x + eps * v[i])).ToArray();
            var minus = prefix.Select((x, i) => (float)(x - eps * v[i])).ToArray();
            double numeric = (Loss(plus) - Loss(minus)) / (2 * eps);
            worst = Math.Max(worst, Math.Abs(analytic - numeric) / Math.Max(Math.Abs(numeric), 1e-6));
        }
        return new VerifyLine("prefix gradient vs finite differences", worst, GradientTolerance);
    }

    /// <summary>The report as the lines <c>sktune verify</c> prints.</summary>
    public static IEnumerable<string> Format(VerifyReport report)
    {
        var ic = CultureInfo.InvariantCulture;
        yield return $"architecture  {report.Architecture}";
        yield return $"inputs        {report.Inputs}";
        foreach (var l in report.Lines)
            yield return string.Create(ic, $"{(l.Passed ? "ok  " : "FAIL")}  {l.Error,10:E2}  (≤ {l.Tolerance:G2})  {l.What}");
        yield return report.Passed ? "verify: passed" : $"verify: FAILED ({report.Lines.Count(l => !l.Passed)} of {report.Lines.Count} above tolerance)";
    }
}
