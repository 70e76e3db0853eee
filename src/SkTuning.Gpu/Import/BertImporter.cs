using SkTuning.Gpu.Onnx;

namespace SkTuning.Gpu.Import;

/// <summary>
/// Recognizes a BERT-family encoder (BERT, MiniLM, ArcticXs…) in an ONNX graph <b>by its structure</b> and
/// reads its architecture and weights. Torch exports rename the ParsedLinear weights (MiniLM's are initializers
/// '927', '928', …), so nothing relies on names: the importer starts at the word-embedding Gather (a 2-D float
/// table indexed by a graph input), follows the Add chain of the embeddings into a (decomposed or fused)
/// LayerNorm, and then, layer by layer, finds the three Linears reading the hidden state and the attention core
/// (<see cref="GraphWalker"/>), follows the context through the output Linear, the residual Add and LayerNorm,
/// the FFN (Linear, GELU erf or tanh, Linear), residual and LayerNorm.
/// RoBERTa / XLM-R exports (<see cref="ModelFamily.Roberta"/>) are the same layers; they are told apart by their
/// position ids, which the graph computes from input_ids (<see cref="GraphWalker.PositionPaddingId"/>: padding_idx +
/// cumsum of the non-padding tokens), and may have no token_type_ids input (HF's zeros buffer indexes the one-row table).
/// Graphs that do not fit are a <see cref="SkTuningException"/> "&lt;file&gt;: unsupported graph: …".
/// </summary>
public static class BertImporter
{
    /// <summary>Loads and imports an .onnx file.</summary>
    public static ImportedModel Import(string path) => Import(OnnxModel.Load(path));

    /// <summary>Imports a loaded model.</summary>
    public static ImportedModel Import(OnnxModel model)
    {
        var g = new GraphWalker(model);
        var (word, positionGather, typeGather, sum) = g.Embeddings();
        var wordTable = g.FloatMatrix(word.Inputs[0])!;
        int vocab = checked((int)wordTable.Dims[0]), d = checked((int)wordTable.Dims[1]);
        if (positionGather is null) throw g.Fail("no position-embedding Gather added to the word embeddings", word);
        var embNorm = g.ParseNorm(sum, "the embeddings");
        if (embNorm.Kind != NormKind.LayerNorm) throw g.Fail("the embeddings are followed by an RMSNorm, not a BERT LayerNorm");
        var positionTable = g.FloatMatrix(positionGather.Inputs[0])!;
        var typeTable = typeGather is null ? null : g.FloatMatrix(typeGather.Inputs[0])!;
        var paddingId = g.PositionPaddingId(positionGather, word.Inputs[1]);
        if (paddingId >= positionTable.Dims[0] - 1)
            throw g.Fail($"position table '{positionGather.Inputs[0]}' has {positionTable.Dims[0]} rows, none left for tokens after padding id {paddingId}", positionGather);
        // token_type_ids is fed only where it is an input; HF's zeros buffer otherwise selects type 0 in the graph.
        var typeInput = typeGather is not null && g.GraphInputs.Contains(typeGather.Inputs[1]) ? typeGather.Inputs[1] : null;

        var layers = new List<LayerWeights>();
        var hidden = new List<string> { embNorm.Output };
        int heads = 0, headSize = 0, ffnSize = 0;
        float? maskValue = null;
        ActivationKind? activation = null;
        var h = embNorm.Output;
        while (g.Projections(h, d, $"layer {layers.Count}") is { Count: > 0 } projections)
        {
            var where = $"layer {layers.Count}";
            var a = g.ParseAttention(projections, d, where);
            if (a.Rope is not null || a.KvHeads != a.Heads || a.PastInputs.Count > 0)
                throw g.Fail($"{where}: rotary embeddings, grouped KV heads or past keys in a BERT encoder", a.Softmax);
            maskValue ??= a.MaskValue;

            // Output projection, residual, LayerNorm.
            var o = g.FindLinearForward(a.Context.Outputs[0], 6) ?? throw g.Fail($"{where}: no attention output projection", a.Context);
            if (o.In != a.Q.Out || o.Out != d) throw g.Fail($"{where}: attention output projection is [{o.In},{o.Out}], expected [{a.Q.Out},{d}]", o.Node);
            var res1 = model.Consumers(o.Output).FirstOrDefault(n => n.OpType == "Add" && GraphWalker.Other(n, o.Output) == h)
                       ?? throw g.Fail($"{where}: the attention output is not added to the layer input (only post-norm BERT layers are supported)", o.Node);
            var norm1 = g.ParseNorm(res1.Outputs[0], $"{where} attention output");

            // FFN: Linear, GELU, Linear, residual, LayerNorm.
            var ffn = g.ParseFfn(norm1.Output, d, where);
            if (ffn.Activation is not (ActivationKind.GeluErf or ActivationKind.GeluTanh))
                throw g.Fail($"{where}: activation {ffn.Activation} is not a BERT activation", ffn.Up.Node);
            var res2 = model.Consumers(ffn.Down.Output).FirstOrDefault(n => n.OpType == "Add" && GraphWalker.Other(n, ffn.Down.Output) == norm1.Output)
                       ?? throw g.Fail($"{where}: the FFN output is not added to its input", ffn.Down.Node);
            var norm2 = g.ParseNorm(res2.Outputs[0], $"{where} output");
            if (layers.Count == 0) (heads, headSize, ffnSize, activation) = (a.Heads, a.HeadSize, ffn.Up.Out, ffn.Activation);
            else if (heads != a.Heads || headSize != a.HeadSize || ffnSize != ffn.Up.Out || activation != ffn.Activation)
                throw g.Fail($"{where}: sizes differ from layer 0 (heads {a.Heads}, head size {a.HeadSize}, FFN {ffn.Up.Out}, {ffn.Activation})", a.Softmax);

            layers.Add(new LayerWeights
            {
                Wq = a.Q.W, Bq = a.Q.B, Wk = a.K.W, Bk = a.K.B, Wv = a.V.W, Bv = a.V.B, Wo = o.W, Bo = o.B,
                AttentionNormGamma = norm1.Gamma, AttentionNormBeta = norm1.Beta,
                W1 = ffn.Up.W, B1 = ffn.Up.B, W2 = ffn.Down.W, B2 = ffn.Down.B,
                FfnNormGamma = norm2.Gamma, FfnNormBeta = norm2.Beta,
            });
            h = norm2.Output;
            hidden.Add(h);
        }
        if (layers.Count == 0) throw g.Fail("no transformer layer (query/key/value projections) after the embedding LayerNorm");

        var pooler = ParsePooler(g, h, d);
        var embeddings = new EmbeddingWeights
        {
            Word = wordTable.ToFloats(),
            Position = positionTable.ToFloats(),
            TokenType = typeTable?.ToFloats() ?? [],
            NormGamma = embNorm.Gamma,
            NormBeta = embNorm.Beta,
        };
        long count = embeddings.Count + layers.Sum(l => l.Count) + (pooler is null ? 0 : pooler.W.Length + pooler.B.Length);
        var spec = new ModelSpec
        {
            Family = paddingId is null ? ModelFamily.Bert : ModelFamily.Roberta,
            EmbeddingNorm = true,
            Layers = layers.Count,
            Hidden = d,
            Heads = heads,
            KvHeads = heads,
            HeadSize = headSize,
            FfnSize = ffnSize,
            Norm = NormKind.LayerNorm,
            NormPlacement = NormPlacement.Post,
            Epsilon = embNorm.Epsilon,
            Activation = activation!.Value,
            Positions = PositionKind.Absolute,
            Causal = false,
            VocabSize = vocab,
            MaxPositions = checked((int)positionTable.Dims[0]),
            PositionPaddingId = paddingId,
            TypeVocabSize = typeTable is null ? 0 : checked((int)typeTable.Dims[0]),
            MaskValue = maskValue ?? throw g.Fail("no additive attention mask ((1 − mask)·value added to the scores)"),
            HasPooler = pooler is not null,
            ParameterCount = count,
        };
        var weights = new ModelWeights { Spec = spec, Embeddings = embeddings, Layers = layers, Pooler = pooler };
        var maskInput = model.Inputs.Select(i => i.Name)
            .Where(n => n != word.Inputs[1] && n != typeInput)
            .OrderByDescending(n => n.Contains("mask", StringComparison.OrdinalIgnoreCase))
            .FirstOrDefault();
        return new ImportedModel(model.FilePath, spec, weights, hidden, word.Inputs[1], maskInput, typeInput);
    }

    /// <summary>Gather(h, 0, axis 1) → Gemm/MatMul+Add → Tanh: the BERT pooler; null when absent.</summary>
    private static PoolerWeights? ParsePooler(GraphWalker g, string h, int d)
    {
        var m = g.Model;
        var first = m.Consumers(h).FirstOrDefault(n => n.OpType == "Gather" && n.GetInt("axis", 0) == 1
                                                      && m.TryGetTensor(n.Inputs[1]) is { ElementCount: 1 } i && i.ToInt64s()[0] == 0);
        if (first is null) return null;
        var linear = m.Consumers(first.Outputs[0]).Select(g.TryLinear).OfType<ParsedLinear>().FirstOrDefault();
        if (linear is null || linear.In != d || linear.Out != d) return null;
        if (!m.Consumers(linear.Output).Any(n => n.OpType == "Tanh")) return null;
        return new PoolerWeights { W = linear.W, B = linear.B };
    }
}
