using SkTuning.Gpu.Onnx;
using SkTuning.Gpu.Tokenization;
using SkTuning.Gpu.ZeroShot;

namespace SkTuning.Gpu.Import;

/// <summary>
/// A frozen model ready to use: where it came from, its ONNX graph, architecture and weights (imported from
/// the graph structure), its tokenizer and its hash. Everything downstream — zero-shot encoder, engine,
/// trainer — starts here.
/// </summary>
public sealed class FrozenModel
{
    private FrozenModel(ModelSource source, OnnxModel onnx, ImportedModel imported, TextTokenizer tokenizer)
    {
        Source = source;
        Onnx = onnx;
        Imported = imported;
        Tokenizer = tokenizer;
    }

    /// <summary>Where the files are.</summary>
    public ModelSource Source { get; }

    /// <summary>The parsed ONNX graph.</summary>
    public OnnxModel Onnx { get; }

    /// <summary>Architecture, weights and tensor names read from the graph.</summary>
    public ImportedModel Imported { get; }

    /// <summary>The architecture.</summary>
    public ModelSpec Spec => Imported.Spec;

    /// <summary>The frozen weights.</summary>
    public ModelWeights Weights => Imported.Weights;

    /// <summary>The model's tokenizer.</summary>
    public TextTokenizer Tokenizer { get; }

    /// <summary>SHA-256 of the ONNX file.</summary>
    public string Hash => ModelHash.Of(Source.OnnxPath);

    /// <summary>Resolves, parses and imports <paramref name="model"/> (a catalog name, .onnx file or folder).</summary>
    /// <exception cref="SkTuningException">A missing, truncated, non-ONNX or unsupported model, or a missing vocabulary.</exception>
    public static FrozenModel Load(string model)
    {
        var source = ModelCatalog.Resolve(model);
        var onnx = OnnxModel.Load(source.OnnxPath);
        var imported = ModelImporter.Import(onnx);
        var tokenizer = TextTokenizer.Load(source.TokenizerDirectory);
        CheckTokenizer(imported.Spec, tokenizer, source.TokenizerDirectory);
        return new FrozenModel(source, onnx, imported, tokenizer);
    }

    /// <summary>
    /// Refuses a tokenizer the model cannot read: a vocabulary larger than the embedding table, or — where the graph
    /// counts positions from the padding id (RoBERTa) — another padding id, which would shift every position.
    /// </summary>
    /// <exception cref="SkTuningException">The mismatch, naming the tokenizer folder.</exception>
    public static void CheckTokenizer(ModelSpec spec, TextTokenizer tokenizer, string directory)
    {
        if (tokenizer.VocabularySize > spec.VocabSize)
            throw new SkTuningException(
                $"{directory}: vocabulary of {tokenizer.VocabularySize} tokens is larger than the model's embedding table ({spec.VocabSize})");
        if (spec.PositionPaddingId is { } pad && (!tokenizer.HasPadToken || tokenizer.PadId != pad))
            throw new SkTuningException(
                $"{directory}: the tokenizer's padding id is {(tokenizer.HasPadToken ? tokenizer.PadId : "missing")}, the model counts positions from padding id {pad}");
    }

    /// <summary>A zero-shot encoder over this model (ONNX Runtime), caching results under the catalog cache folder.</summary>
    public ZeroShotEncoder CreateEncoder(Action<string>? log = null, bool cache = true)
    {
        return new ZeroShotEncoder(Imported, Tokenizer, Onnx.Outputs.Select(o => o.Name), Hash,
            () => Onnx.WithExtraOutputs(Imported.HiddenStateNames), cache ? Path.Combine(ModelCatalog.CacheRoot, "zeroshot") : null, log);
    }
}
