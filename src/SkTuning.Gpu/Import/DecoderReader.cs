using System.Globalization;
using SkTuning.Gpu.Onnx;

namespace SkTuning.Gpu.Import;

/// <summary>
/// Reads a causal decoder (GPT-2, LLaMA family, BLOOM, Falcon, Phi) on top of <see cref="GraphWalker"/>: the embedding
/// Gather (plus a learned position table for GPT-2, a LayerNorm for BLOOM), then per layer either pre-norm,
/// h₁ = h + Attn(Norm₁(h))·Wo (+ bo), h₂ = h₁ + FFN(Norm₂(h₁)), or parallel, h₂ = h + Attn(Norm₁(h))·Wo + FFN(Norm₂(h))
/// with Norm₂ = Norm₁ or its own, then the final norm. Positions are a table, rotary embeddings or an ALiBi term on the
/// scores. The family-specific checks (which norm, activation, block and position kind the family must have) are left
/// to the importers (<see cref="Gpt2Importer"/>, <see cref="LlamaImporter"/>, <see cref="BloomImporter"/>,
/// <see cref="FalconImporter"/>, <see cref="PhiImporter"/>), which share this one walk.
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
        NormPlacement? placement = null;
        bool? sharedNorm = null;
        int? rotaryDim = null;
        var h = h0;
        ParsedNorm? final = null;
        while (true)
        {
            var where = $"layer {layers.Count}";
            var norms = g.NormsReading(h, where);
            if (norms.Count == 0) throw g.Fail($"{where}: no norm reading the residual stream '{h}'", model.Producer(h) ?? word);
            if (norms.Count > 2) throw g.Fail($"{where}: {norms.Count} norms read the residual stream '{h}'", model.Producer(h) ?? word);
            // The attention norm is the one whose projections lead to a Softmax; a parallel block's second norm feeds the FFN.
            var (norm1, projections) = norms.Select(n => (Norm: n, Projections: g.Projections(n.Output, d, where)))
                .FirstOrDefault(c => c.Projections.Count >= 3 && g.FindForward(c.Projections.Select(p => p.Output), n => n.OpType == "Softmax", 32) is not null);
            if (norm1 is null)
            {
                if (norms.Count > 1) throw g.Fail($"{where}: two norms read the residual stream '{h}' and neither feeds attention", model.Producer(h) ?? word);
                final = norms[0]; // the final norm: what reads it (if anything) is the LM head, not attention
                break;
            }
            var a = g.ParseAttention(projections, d, where);
            firstSoftmax ??= a.Softmax;
            maskValue ??= a.MaskValue;
            maskOperand ??= a.MaskOperand;
            if (a.Rope is { } r) rope ??= r;
            else if (rope is not null) throw g.Fail($"{where}: no rotary embedding where layer 0 has one", a.Softmax);
            if (rotaryDim is not null && a.RotaryDim != rotaryDim) throw g.Fail($"{where}: rotates {a.RotaryDim} dimensions per head, layer 0 {rotaryDim}", a.Softmax);
            rotaryDim = a.RotaryDim;
            if (layers.Count == 0) alibi = a.AlibiSlopes;
            else if ((alibi is null) != (a.AlibiSlopes is null) || alibi is not null && !alibi.SequenceEqual(a.AlibiSlopes!))
                throw g.Fail($"{where}: its ALiBi term differs from layer 0's", a.Softmax);
            past.AddRange(a.PastInputs);

            var o = g.FindLinearForward(a.Context.Outputs[0], 6) ?? throw g.Fail($"{where}: no attention output projection", a.Context);
            if (o.In != a.Q.Out || o.Out != d) throw g.Fail($"{where}: attention output projection is [{o.In},{o.Out}], expected [{a.Q.Out},{d}]", o.Node);
            // What the attention norm feeds besides q/k/v is a parallel block's FFN (one shared norm); a second norm reading
            // the layer input is a parallel FFN's own; otherwise the FFN follows the attention residual (pre-norm).
            var attentionNodes = new[] { a.Q.Node, a.K.Node, a.V.Node };
            var sharedUps = projections.Where(p => !attentionNodes.Contains(p.Node)).ToList();
            var layerPlacement = sharedUps.Count > 0 || norms.Count == 2 ? NormPlacement.Parallel : NormPlacement.Pre;
            ParsedNorm? norm2;
            ParsedFfn ffn;
            string next;
            if (layerPlacement == NormPlacement.Parallel)
            {
                norm2 = norms.FirstOrDefault(n => n != norm1);
                if (norm2 is not null && sharedUps.Count > 0)
                    throw g.Fail($"{where}: the attention norm feeds another projection while a second norm reads the layer input", sharedUps[0].Node);
                ffn = norm2 is null ? g.ParseFfn(sharedUps, d, where) : g.ParseFfn(norm2.Output, d, where);
                next = ParallelResidual(g, o.Output, ffn.Down.Output, h, where).Outputs[0];
            }
            else
            {
                var res1 = ResidualAdd(g, o.Output, h, where, "attention");
                norm2 = g.ParseNorm(res1.Outputs[0], $"{where} FFN");
                ffn = g.ParseFfn(norm2.Output, d, where);
                next = ResidualAdd(g, ffn.Down.Output, res1.Outputs[0], where, "FFN").Outputs[0];
            }

            bool layerQkvBias = a.Q.HasBias || a.K.HasBias || a.V.HasBias;
            bool layerOtherBiases = o.HasBias || ffn.Up.HasBias || ffn.Down.HasBias;
            if (layers.Count == 0)
                (heads, kvHeads, headSize, ffnSize, activation, normKind, epsilon, qkvBias, otherBiases, placement, sharedNorm) =
                    (a.Heads, a.KvHeads, a.HeadSize, ffn.Up.Out, ffn.Activation, norm1.Kind, norm1.Epsilon, layerQkvBias, layerOtherBiases,
                        layerPlacement, norm2 is null);
            else if (heads != a.Heads || kvHeads != a.KvHeads || headSize != a.HeadSize || ffnSize != ffn.Up.Out
                     || activation != ffn.Activation || normKind != norm1.Kind || qkvBias != layerQkvBias || otherBiases != layerOtherBiases
                     || placement != layerPlacement || sharedNorm != (norm2 is null))
                throw g.Fail($"{where}: differs from layer 0 (heads {a.Heads}/{a.KvHeads} × {a.HeadSize}, FFN {ffn.Up.Out}, {ffn.Activation}, {norm1.Kind} {layerPlacement}, biases)", a.Softmax);
            if (norm2 is not null && norm2.Kind != norm1.Kind) throw g.Fail($"{where}: the attention norm is {norm1.Kind}, the FFN norm {norm2.Kind}", ffn.Up.Node);

            // A bias one projection of a group lacks is a zero bias (the engine fuses q | k | v, and o with the FFN's).
            layers.Add(new LayerWeights
            {
                Wq = a.Q.W, Bq = layerQkvBias ? a.Q.B : [], Wk = a.K.W, Bk = layerQkvBias ? a.K.B : [], Wv = a.V.W, Bv = layerQkvBias ? a.V.B : [],
                Wo = o.W, Bo = layerOtherBiases ? o.B : [],
                AttentionNormGamma = norm1.Gamma, AttentionNormBeta = norm1.Beta,
                WGate = ffn.Gate?.W ?? [],
                W1 = ffn.Up.W, B1 = layerOtherBiases ? ffn.Up.B : [], W2 = ffn.Down.W, B2 = layerOtherBiases ? ffn.Down.B : [],
                FfnNormGamma = norm2?.Gamma ?? [], FfnNormBeta = norm2?.Beta ?? [],
            });
            h = next;
            hidden.Add(h);
        }
        if (layers.Count == 0) throw g.Fail("no transformer layer (query/key/value projections) after the embeddings", word);
        if (final.Kind != normKind) throw g.Fail($"the final norm is {final.Kind}, the layers' {normKind}");
        hidden[^1] = final.Output; // the last layer's output is not a layer input: the final hidden state is after the norm
        if (!g.HasCausalMask())
            throw g.Fail("no causal mask: an encoder-only graph where a decoder is required", firstSoftmax!);

        double theta = 0;
        int maxPositions;
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
            if (r != rotaryDim) throw g.Fail($"rotary frequencies for {r} dimensions where attention rotates {rotaryDim} of {headSize} per head", firstSoftmax!);
            theta = t;
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
            NormPlacement = placement!.Value,
            SharedNorm = sharedNorm!.Value,
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
            RotaryDim = rotaryDim ?? 0,
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
    /// The residual Add of a parallel block: the attention and FFN outputs added to each other (Falcon's
    /// mlp_output += attention_output, Phi's attn + ffn), then to the layer input. A scale on either branch is refused.
    /// </summary>
    private static OnnxNode ParallelResidual(GraphWalker g, string attention, string ffn, string input, string where)
    {
        foreach (var (branch, what) in new[] { (attention, "attention"), (ffn, "FFN") })
            if (g.ConsumersThrough(branch).FirstOrDefault(n => n.OpType is "Mul" or "Div") is { } scale)
                throw g.Fail($"{where}: an extra scale on the {what} branch of the parallel block", scale);
        var sum = g.ConsumersThrough(attention).FirstOrDefault(n => n.OpType == "Add" && g.Same(GraphWalker.Other(n, attention), ffn))
                  ?? throw g.Fail($"{where}: the attention output is not added to the FFN output (a parallel block sums them)", g.Model.Producer(attention)!);
        return ResidualAdd(g, sum.Outputs[0], input, where, "attention + FFN");
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
