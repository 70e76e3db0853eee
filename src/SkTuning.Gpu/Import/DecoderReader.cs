using System.Globalization;
using SkTuning.Gpu.Onnx;

namespace SkTuning.Gpu.Import;

/// <summary>
/// Reads a pre-norm causal decoder (GPT-2, LLaMA family, BLOOM) on top of <see cref="GraphWalker"/>: the embedding Gather
/// (plus a learned position table for GPT-2, a LayerNorm for BLOOM), then per layer h₁ = h + Attn(Norm₁(h))·Wo (+ bo),
/// h₂ = h₁ + FFN(Norm₂(h₁)), then the final norm. Positions are a table, rotary embeddings or an ALiBi term on the
/// scores. The family-specific checks (which norm, activation and position kind the family must have) are left to
/// <see cref="Gpt2Importer"/>, <see cref="LlamaImporter"/> and <see cref="BloomImporter"/>, which share this one walk.
/// </summary>
internal static class DecoderReader
{
    /// <summary>What the walk found beyond the weights, for the family checks.</summary>
    internal sealed record Result(ImportedModel Imported, OnnxNode FirstSoftmax, (string Cos, string Sin)? Rope);

    /// <summary>Imports <paramref name="model"/> as a decoder of <paramref name="family"/>.</summary>
    public static Result Read(OnnxModel model, ModelFamily family)
    {
        var g = new GraphWalker(model);
        var (word, positionGather, typeGather, h0) = g.Embeddings();
        var wordTable = g.FloatMatrix(word.Inputs[0])!;
        int vocab = checked((int)wordTable.Dims[0]), d = checked((int)wordTable.Dims[1]);
        var embeddingNorm = g.ConsumersThrough(h0).Any(n => n.OpType == "Add") ? null : g.EmbeddingNorm(h0);
        if (embeddingNorm is not null) h0 = embeddingNorm.Output;
        // Pre-norm: the residual stream entering layer 0 is read by the norm and by the residual Add.
        if (!g.ConsumersThrough(h0).Any(n => n.OpType == "Add"))
            throw g.Fail("an encoder-only graph (post-norm, the embeddings go straight into a norm) where a decoder is required",
                model.Producer(h0) ?? word);
        if (typeGather is not null) throw g.Fail("token-type embeddings in a decoder", typeGather);

        var layers = new List<LayerWeights>();
        var hidden = new List<string> { h0 };
        var past = new List<string>();
        (string Cos, string Sin)? rope = null;
        float[]? alibi = null;
        OnnxNode? firstSoftmax = null;
        string? maskOperand = null;
        int heads = 0, kvHeads = 0, headSize = 0, ffnSize = 0;
        float? maskValue = null, epsilon = null;
        NormKind? normKind = null;
        ActivationKind? activation = null;
        bool? qkvBias = null, otherBiases = null;
        var h = h0;
        ParsedNorm? final = null;
        while (true)
        {
            var where = $"layer {layers.Count}";
            var norm1 = g.TryParseNorm(h, where) ?? throw g.Fail($"{where}: no norm reading the residual stream '{h}'", model.Producer(h) ?? word);
            var projections = g.Projections(norm1.Output, d, where);
            if (projections.Count == 0 || g.FindForward(projections.Select(p => p.Output), n => n.OpType == "Softmax", 32) is null)
            {
                final = norm1; // the final norm: what reads it (if anything) is the LM head, not attention
                break;
            }
            var a = g.ParseAttention(projections, d, where);
            firstSoftmax ??= a.Softmax;
            maskValue ??= a.MaskValue;
            maskOperand ??= a.MaskOperand;
            if (a.Rope is { } r) rope ??= r;
            else if (rope is not null) throw g.Fail($"{where}: no rotary embedding where layer 0 has one", a.Softmax);
            if (layers.Count == 0) alibi = a.AlibiSlopes;
            else if ((alibi is null) != (a.AlibiSlopes is null) || alibi is not null && !alibi.SequenceEqual(a.AlibiSlopes!))
                throw g.Fail($"{where}: its ALiBi term differs from layer 0's", a.Softmax);
            past.AddRange(a.PastInputs);

            var o = g.FindLinearForward(a.Context.Outputs[0], 6) ?? throw g.Fail($"{where}: no attention output projection", a.Context);
            if (o.In != a.Q.Out || o.Out != d) throw g.Fail($"{where}: attention output projection is [{o.In},{o.Out}], expected [{a.Q.Out},{d}]", o.Node);
            var res1 = ResidualAdd(g, o.Output, h, where, "attention");
            var norm2 = g.ParseNorm(res1.Outputs[0], $"{where} FFN");
            var ffn = g.ParseFfn(norm2.Output, d, where);
            var res2 = ResidualAdd(g, ffn.Down.Output, res1.Outputs[0], where, "FFN");

            bool layerQkvBias = a.Q.HasBias || a.K.HasBias || a.V.HasBias;
            bool layerOtherBiases = o.HasBias || ffn.Up.HasBias || ffn.Down.HasBias || norm1.Kind == NormKind.LayerNorm;
            if (layers.Count == 0)
                (heads, kvHeads, headSize, ffnSize, activation, normKind, epsilon, qkvBias, otherBiases) =
                    (a.Heads, a.KvHeads, a.HeadSize, ffn.Up.Out, ffn.Activation, norm1.Kind, norm1.Epsilon, layerQkvBias, layerOtherBiases);
            else if (heads != a.Heads || kvHeads != a.KvHeads || headSize != a.HeadSize || ffnSize != ffn.Up.Out
                     || activation != ffn.Activation || normKind != norm1.Kind || qkvBias != layerQkvBias || otherBiases != layerOtherBiases)
                throw g.Fail($"{where}: differs from layer 0 (heads {a.Heads}/{a.KvHeads} × {a.HeadSize}, FFN {ffn.Up.Out}, {ffn.Activation}, {norm1.Kind}, biases)", a.Softmax);
            if (norm2.Kind != norm1.Kind) throw g.Fail($"{where}: the attention norm is {norm1.Kind}, the FFN norm {norm2.Kind}", ffn.Up.Node);

            layers.Add(new LayerWeights
            {
                Wq = a.Q.W, Bq = a.Q.BiasOrEmpty, Wk = a.K.W, Bk = a.K.BiasOrEmpty, Wv = a.V.W, Bv = a.V.BiasOrEmpty,
                Wo = o.W, Bo = o.BiasOrEmpty,
                AttentionNormGamma = norm1.Gamma, AttentionNormBeta = norm1.Beta,
                WGate = ffn.Gate?.W ?? [],
                W1 = ffn.Up.W, B1 = ffn.Up.BiasOrEmpty, W2 = ffn.Down.W, B2 = ffn.Down.BiasOrEmpty,
                FfnNormGamma = norm2.Gamma, FfnNormBeta = norm2.Beta,
            });
            h = res2.Outputs[0];
            hidden.Add(h);
        }
        if (layers.Count == 0) throw g.Fail("no transformer layer (query/key/value projections) after the embeddings", word);
        if (final.Kind != normKind) throw g.Fail($"the final norm is {final.Kind}, the layers' {normKind}");
        hidden[^1] = final.Output; // the last layer's output is not a layer input: the final hidden state is after the norm
        if (!g.HasCausalMask())
            throw g.Fail("no causal mask: an encoder-only graph where a decoder is required", firstSoftmax!);

        double theta = 0;
        int rotaryDim = 0, maxPositions;
        string? positionIds = null;
        if (alibi is not null)
        {
            if (positionGather is not null) throw g.Fail("both a position-embedding table and ALiBi", positionGather);
            var expected = Kernels.Attention.AlibiSlopes(heads);
            if (alibi.Length != heads || alibi.Zip(expected).Any(p => Math.Abs(p.First - p.Second) > 1e-6 * p.Second))
                throw g.Fail($"ALiBi slopes [{string.Join(", ", alibi.Select(v => v.ToString("G4", CultureInfo.InvariantCulture)))}] " +
                             $"are not BLOOM's for {heads} heads [{string.Join(", ", expected.Select(v => v.ToString("G4", CultureInfo.InvariantCulture)))}]",
                    firstSoftmax!);
            // ALiBi has no table: 4096 is the context the engine sizes for unless told otherwise (positions come from the mask).
            maxPositions = 4096;
        }
        else if (rope is { } rp)
        {
            var (t, r, rows, inputs) = g.ReadRope(rp, "rotary embedding", firstSoftmax!);
            if (r != headSize) throw g.Fail($"rotary embedding over {r} of {headSize} dimensions per head (partial rotary is not supported)", firstSoftmax!);
            (theta, rotaryDim) = (t, r);
            // Computed frequencies have no table: 4096 is the context the engine sizes for unless told otherwise.
            maxPositions = rows ?? 4096;
            positionIds = inputs.FirstOrDefault(i => i != word.Inputs[1]);
        }
        else
        {
            if (positionGather is null) throw g.Fail("neither a position-embedding table nor rotary embeddings nor ALiBi", word);
            maxPositions = checked((int)g.FloatMatrix(positionGather.Inputs[0])!.Dims[0]);
            positionIds = g.InputsBehind(positionGather.Inputs[1], 1).FirstOrDefault();
        }

        var embeddings = new EmbeddingWeights
        {
            Word = wordTable.ToFloats(),
            Position = positionGather is null ? [] : g.FloatMatrix(positionGather.Inputs[0])!.ToFloats(),
            TokenType = [],
            NormGamma = embeddingNorm?.Gamma ?? [],
            NormBeta = embeddingNorm?.Beta ?? [],
        };
        var spec = new ModelSpec
        {
            Family = family,
            Layers = layers.Count,
            Hidden = d,
            Heads = heads,
            KvHeads = kvHeads,
            HeadSize = headSize,
            FfnSize = ffnSize,
            Norm = normKind!.Value,
            NormPlacement = NormPlacement.Pre,
            Epsilon = epsilon!.Value,
            Activation = activation!.Value,
            Positions = rope is not null ? PositionKind.Rope : alibi is not null ? PositionKind.Alibi : PositionKind.Absolute,
            Causal = true,
            VocabSize = vocab,
            MaxPositions = maxPositions,
            TypeVocabSize = 0,
            MaskValue = maskValue ?? throw g.Fail("no additive attention mask", firstSoftmax!),
            EmbeddingNorm = embeddingNorm is not null,
            RopeTheta = (float)theta,
            RotaryDim = rotaryDim,
            QkvBias = qkvBias!.Value,
            OtherBiases = otherBiases!.Value,
            ParameterCount = embeddings.Count + layers.Sum(l => l.Count) + final.Gamma.Length + final.Beta.Length,
        };
        var weights = new ModelWeights
        {
            Spec = spec, Embeddings = embeddings, Layers = layers, FinalNormGamma = final.Gamma, FinalNormBeta = final.Beta,
        };
        var maskInput = maskOperand is null ? null : g.InputsBehind(maskOperand, 24).FirstOrDefault(i => i != word.Inputs[1] && i != positionIds);
        var inputOrder = model.Inputs.Select(i => i.Name).ToList();
        var imported = new ImportedModel(model.FilePath, spec, weights, hidden, word.Inputs[1], maskInput, null)
        {
            PositionIdsName = positionIds,
            PastInputNames = past.Distinct().OrderBy(inputOrder.IndexOf).ToList(),
        };
        return new Result(imported, firstSoftmax!, rope);
    }

    /// <summary>
    /// The residual Add of a pre-norm branch: the branch output's only consumer must be an Add with the branch input.
    /// A scale on the branch, or an Add with something else, is a model the engine does not compute.
    /// </summary>
    private static OnnxNode ResidualAdd(GraphWalker g, string branch, string input, string where, string what)
    {
        var consumers = g.ConsumersThrough(branch);
        if (consumers.FirstOrDefault(n => n.OpType is "Mul" or "Div") is { } scale)
            throw g.Fail($"{where}: an extra scale on the {what} residual branch", scale);
        var add = consumers.FirstOrDefault(n => n.OpType == "Add")
                  ?? throw g.Fail($"{where}: the {what} output is not added to the residual stream", g.Model.Producer(branch)!);
        if (!g.Same(GraphWalker.Other(add, branch), input))
            throw g.Fail($"{where}: the {what} residual Add is fed by '{GraphWalker.Other(add, branch)}', not the layer's residual stream '{input}'", add);
        return add;
    }
}
