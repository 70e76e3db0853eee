using SkTuning.Gpu.Data;
using SkTuning.Gpu.Engine;
using SkTuning.Gpu.Import;
using SkTuning.Gpu.Kernels;
using SkTuning.Gpu.Onnx;
using SkTuning.Gpu.Training;
using static SkTuning.Gpu.Onnx.OnnxGraphBuilder;
using DataType = SkTuning.Gpu.Onnx.Proto.TensorProto.Types.DataType;

namespace SkTuning.Gpu.Export;

/// <summary>Everything a standalone graph of a tuned model bakes in.</summary>
/// <param name="Spec">The frozen model's architecture.</param>
/// <param name="Weights">The transformer's weights named as <see cref="EngineParameters.WeightTensors"/> (q|k|v and gate|up fused), LoRA merged.</param>
/// <param name="Prompt">Prompt rows [m_p, d] prepended after the embedding layer, or empty.</param>
/// <param name="Prefix">Prefix keys/values [L, 2, m, kvDim], keys already rotated to positions 0..m−1 for RoPE models, or empty.</param>
/// <param name="Kind">The task kind.</param>
/// <param name="Pooling">Sequence pooling (sequence-level tasks).</param>
/// <param name="Classes">Head outputs: classes, or 1 for regression.</param>
/// <param name="HeadWeight">Head weight [d, C].</param>
/// <param name="HeadBias">Head bias [C].</param>
public sealed record TunedGraph(ModelSpec Spec, IReadOnlyDictionary<string, float[]> Weights, float[] Prompt, float[] Prefix,
    TaskKind Kind, Pooling Pooling, int Classes, float[] HeadWeight, float[] HeadBias);

/// <summary>
/// Writes a tuned model as one ONNX graph (opset 17, standard operators only) that computes what
/// <see cref="TransformerEngine"/> and <see cref="TaskHead"/> compute: embeddings (absolute positions 0..T−1, RoBERTa's
/// count from the padding id, or causal models' offset + cumsum(mask) − 1), the embedding norm, prompt rows prepended
/// after it (attended, positions m..m+m_p−1 in causal models), the prefix keys/values before each layer's own (never
/// masked, ALiBi positions 0..m−1), post-norm / pre-norm / parallel blocks, LayerNorm or RMSNorm, GELU-erf / GELU-tanh /
/// SwiGLU, RoPE (partial rotary) or ALiBi, grouped KV heads, the causal cut, and the head with its pooling. The
/// attention bias is built once and shifted by its largest visible value per query, as the engine's kernels do.
/// </summary>
internal static class TunedGraphWriter
{
    /// <summary>The opset written: the newest whose operators every ONNX Runtime execution provider has (LayerNormalization from 17).</summary>
    public const int Opset = 17;

    /// <summary>Builds the graph of <paramref name="t"/> into <paramref name="g"/> (inputs, nodes, initializers, outputs).</summary>
    public static void Build(OnnxGraphBuilder g, TunedGraph t)
    {
        var s = t.Spec;
        int d = s.Hidden, mp = t.Prompt.Length / d, m = t.Prefix.Length / (2 * s.Layers * s.KvDim);
        var graph = g.Graph;
        graph.Name = "sktune";
        graph.Input.Add(Int64Input("input_ids"));
        graph.Input.Add(Int64Input("attention_mask"));
        bool typeInput = s.TypeVocabSize > 1;
        if (typeInput) graph.Input.Add(Int64Input("token_type_ids"));
        var w = t.Weights;

        var shape = g.Node("Shape", ["input_ids"]);
        var batch = g.Node("Slice", [shape, g.ConstInts([0]), g.ConstInts([1]), g.ConstInts([0])]);
        var seq = g.Node("Gather", [shape, g.ConstScalarInt(1)], a => a.Add(IntAttr("axis", 0)));
        var maskF = g.Node("Cast", ["attention_mask"], a => a.Add(IntAttr("to", (long)DataType.Float)));
        // A constant [1, n, …] repeated over the batch.
        string PerExample(string constant, long[] rest) =>
            g.Node("Expand", [constant, g.Node("Concat", [batch, g.ConstInts(rest)], a => a.Add(IntAttr("axis", 0)))]);

        // Token positions, as TransformerEngine.TokenPositions numbers them.
        string? tokenPositions = null;
        if (s.Causal)
        {
            var seen = g.Node("CumSum", ["attention_mask", g.ConstScalarInt(1)]);
            var fromZero = g.Node("Max", [g.Node("Sub", [seen, g.ConstScalarInt(1)]), g.ConstScalarInt(0)]);
            tokenPositions = g.Node("Add", [fromZero, g.ConstScalarInt(m + mp)]);
        }
        else if (s.PositionPaddingId is { } pad)
        {
            var seen = g.Node("CumSum", ["attention_mask", g.ConstScalarInt(1)]);
            tokenPositions = g.Node("Add", [g.Node("Mul", [seen, "attention_mask"]), g.ConstScalarInt(pad)]);
        }
        else if (s.Positions == PositionKind.Absolute)
            tokenPositions = g.Node("Range", [g.ConstScalarInt(0), seq, g.ConstScalarInt(1)]);

        // Embeddings: word + position + token type, then the embedding norm.
        var h = g.Node("Gather", [g.Initializer(EngineParameters.WordEmbeddings, [s.VocabSize, d], w[EngineParameters.WordEmbeddings]), "input_ids"]);
        if (s.Positions == PositionKind.Absolute)
            h = g.Node("Add", [h, g.Node("Gather", [g.Initializer(EngineParameters.PositionEmbeddings, [s.MaxPositions, d], w[EngineParameters.PositionEmbeddings]), tokenPositions!])]);
        if (s.TypeVocabSize > 0)
        {
            var table = g.Initializer(EngineParameters.TokenTypeEmbeddings, [s.TypeVocabSize, d], w[EngineParameters.TokenTypeEmbeddings]);
            h = g.Node("Add", [h, typeInput ? g.Node("Gather", [table, "token_type_ids"]) : g.Node("Squeeze", [table, g.ConstInts([0])])]);
        }
        if (s.EmbeddingNorm) h = Norm(g, s, w, h, EngineParameters.EmbeddingNormGamma, EngineParameters.EmbeddingNormBeta);

        // Prompt rows after the embedding layer; they are attended and (causal models) sit at positions m..m+m_p−1.
        var rowMask = maskF;
        var rowPositions = tokenPositions;
        if (mp > 0)
        {
            var prompt = PerExample(g.Initializer("prompt", [1, mp, d], t.Prompt), [mp, d]);
            h = g.Node("Concat", [prompt, h], a => a.Add(IntAttr("axis", 1)));
            rowMask = g.Node("Concat", [PerExample(g.Initializer("prompt.mask", [1, mp], Ones(mp)), [mp]), maskF], a => a.Add(IntAttr("axis", 1)));
            if (s.Causal)
            {
                var promptPositions = Enumerable.Range(m, mp).Select(p => (long)p).ToArray();
                rowPositions = g.Node("Concat", [PerExample(g.Initializer("prompt.positions", [1, mp], promptPositions), [mp]), tokenPositions!],
                    a => a.Add(IntAttr("axis", 1)));
            }
        }
        var bias = AttentionBias(g, s, rowMask, rowPositions, m, mp, seq, PerExample);
        var (cos, sin) = s.Positions == PositionKind.Rope ? RopeAngles(g, s, rowPositions!) : ((string?)null, (string?)null);

        var prefixK = new string[s.Layers];
        var prefixV = new string[s.Layers];
        if (m > 0)
        {
            int block = m * s.KvDim;
            for (int l = 0; l < s.Layers; l++)
            {
                // [m, kvDim] → [1, KV, m, dh], repeated over the batch.
                string Heads(string name, int offset) => PerExample(g.Node("Transpose",
                    [g.Initializer(name, [1, m, s.KvHeads, s.HeadSize], t.Prefix.AsSpan(offset, block).ToArray())],
                    a => a.Add(IntsAttr("perm", [0, 2, 1, 3]))), [1, 1, 1]);
                prefixK[l] = Heads($"prefix.{l}.key", 2 * l * block);
                prefixV[l] = Heads($"prefix.{l}.value", (2 * l + 1) * block);
            }
        }

        for (int l = 0; l < s.Layers; l++)
        {
            var n = EngineParameters.LayerNames(l);
            string Attend(string x) => Attention(g, s, w, n, x, bias, cos, sin, prefixK[l], prefixV[l]);
            string Ffn(string x) => FeedForward(g, s, w, n, x);
            switch (s.NormPlacement)
            {
                case NormPlacement.Post:
                    var attended = Norm(g, s, w, g.Node("Add", [Attend(h), h]), n.AttentionNormGamma, n.AttentionNormBeta);
                    h = Norm(g, s, w, g.Node("Add", [Ffn(attended), attended]), n.FfnNormGamma, n.FfnNormBeta);
                    break;
                case NormPlacement.Pre:
                    var mid = g.Node("Add", [Attend(Norm(g, s, w, h, n.AttentionNormGamma, n.AttentionNormBeta)), h]);
                    h = g.Node("Add", [Ffn(Norm(g, s, w, mid, n.FfnNormGamma, n.FfnNormBeta)), mid]);
                    break;
                default:
                    var a = Norm(g, s, w, h, n.AttentionNormGamma, n.AttentionNormBeta);
                    var b = s.SharedNorm ? a : Norm(g, s, w, h, n.FfnNormGamma, n.FfnNormBeta);
                    h = g.Node("Add", [g.Node("Add", [Attend(a), Ffn(b)]), h]);
                    break;
            }
        }
        if (s.HasFinalNorm) h = Norm(g, s, w, h, EngineParameters.FinalNormGamma, EngineParameters.FinalNormBeta);
        var tokens = mp > 0 ? g.Node("Slice", [h, g.ConstInts([mp]), g.ConstInts([long.MaxValue]), g.ConstInts([1])]) : h;
        Head(g, t, tokens, maskF, seq);
    }

    private static float[] Ones(int n)
    {
        var a = new float[n];
        Array.Fill(a, 1f);
        return a;
    }

    /// <summary>
    /// The additive attention bias [B, 1 or H, S or 1, m + S], shifted per query by its largest visible value as the
    /// engine's kernels shift it: (1 − key mask)·maskValue on token keys (prefix keys never masked), plus ALiBi's
    /// slope_h·position (prefix key j at j), −∞ past the causal cut (key j &gt; m + i).
    /// </summary>
    private static string AttentionBias(OnnxGraphBuilder g, ModelSpec s, string rowMask, string? rowPositions, int m, int mp,
        string seq, Func<string, long[], string> perExample)
    {
        var keyMask = m > 0
            ? g.Node("Concat", [perExample(g.Initializer("prefix.mask", [1, m], Ones(m)), [m]), rowMask], a => a.Add(IntAttr("axis", 1)))
            : rowMask;
        var padding = g.Node("Mul", [g.Node("Sub", [g.ConstFloat(1f), keyMask]), g.ConstFloat(s.MaskValue)]);
        var bias = g.Node("Unsqueeze", [padding, g.ConstInts([1, 2])]);
        if (s.Positions == PositionKind.Alibi)
        {
            var keyPositions = m > 0
                ? g.Node("Concat", [perExample(g.Initializer("prefix.positions", [1, m], Enumerable.Range(0, m).Select(p => (long)p).ToArray()), [m]), rowPositions!],
                    a => a.Add(IntAttr("axis", 1)))
                : rowPositions!;
            var positions = g.Node("Unsqueeze", [g.Node("Cast", [keyPositions], a => a.Add(IntAttr("to", (long)DataType.Float))), g.ConstInts([1, 2])]);
            var slopes = g.Initializer("alibi.slopes", [1, s.Heads, 1, 1], Kernels.Attention.AlibiSlopes(s.Heads));
            bias = g.Node("Add", [bias, g.Node("Mul", [positions, slopes])]);
        }
        if (s.Causal)
        {
            var rows = g.Node("Add", [seq, g.ConstScalarInt(mp)]);
            var queries = g.Node("Unsqueeze", [g.Node("Range", [g.ConstScalarInt(m), g.Node("Add", [rows, g.ConstScalarInt(m)]), g.ConstScalarInt(1)]), g.ConstInts([1])]);
            var keys = g.Node("Unsqueeze", [g.Node("Range", [g.ConstScalarInt(0), g.Node("Add", [rows, g.ConstScalarInt(m)]), g.ConstScalarInt(1)]), g.ConstInts([0])]);
            bias = g.Node("Where", [g.Node("LessOrEqual", [keys, queries]), bias, g.ConstFloat(float.NegativeInfinity)]);
        }
        var largest = g.Node("ReduceMax", [bias], a => { a.Add(IntsAttr("axes", [-1])); a.Add(IntAttr("keepdims", 1)); });
        return g.Node("Sub", [bias, largest]);
    }

    /// <summary>RoPE's cos and sin of every row [B, 1, S, r/2], gathered from <see cref="Rope.Tables"/> (the engine's tables).</summary>
    private static (string? Cos, string? Sin) RopeAngles(OnnxGraphBuilder g, ModelSpec s, string rowPositions)
    {
        var (cos, sin) = Rope.Tables(s.MaxPositions, s.RotaryDim, s.RopeTheta);
        string Gathered(string name, float[] table) => g.Node("Unsqueeze",
            [g.Node("Gather", [g.Initializer(name, [s.MaxPositions, s.RotaryDim / 2], table), rowPositions]), g.ConstInts([1])]);
        return (Gathered("rope.cos", cos), Gathered("rope.sin", sin));
    }

    /// <summary>Rotates the first r dimensions of every head [B, heads, S, dh] (pairs i ↔ i + r/2), as the engine's RoPE kernel.</summary>
    private static string Rotate(OnnxGraphBuilder g, ModelSpec s, string x, string cos, string sin)
    {
        int r = s.RotaryDim, half = r / 2;
        string Cut(string v, long from, long to) => g.Node("Slice", [v, g.ConstInts([from]), g.ConstInts([to]), g.ConstInts([3])]);
        var x1 = Cut(x, 0, half);
        var x2 = Cut(x, half, r);
        var o1 = g.Node("Sub", [g.Node("Mul", [x1, cos]), g.Node("Mul", [x2, sin])]);
        var o2 = g.Node("Add", [g.Node("Mul", [x2, cos]), g.Node("Mul", [x1, sin])]);
        string[] parts = r < s.HeadSize ? [o1, o2, Cut(x, r, s.HeadSize)] : [o1, o2];
        return g.Node("Concat", parts, a => a.Add(IntAttr("axis", 3)));
    }

    /// <summary>x·W (+ b) with the engine's [in, out] matrix.</summary>
    private static string Linear(OnnxGraphBuilder g, IReadOnlyDictionary<string, float[]> w, string x, string weight, string? bias, int inputs, int outputs)
    {
        var y = g.Node("MatMul", [x, g.Initializer(weight, [inputs, outputs], w[weight])]);
        return bias is null ? y : g.Node("Add", [y, g.Initializer(bias, [outputs], w[bias])]);
    }

    private static string Attention(OnnxGraphBuilder g, ModelSpec s, IReadOnlyDictionary<string, float[]> w, LayerTensorNames n, string x,
        string bias, string? cos, string? sin, string? prefixK, string? prefixV)
    {
        int d = s.Hidden, H = s.Heads, kv = s.KvHeads, dh = s.HeadSize, width = EngineParameters.QkvWidth(s);
        var qkv = Linear(g, w, x, n.QkvWeight, s.QkvBias ? n.QkvBias : null, d, width);
        var parts = g.Node("Split", [qkv, g.ConstInts([d, s.KvDim, s.KvDim])], 3, a => a.Add(IntAttr("axis", 2)));
        string Heads(string v, int heads) =>
            g.Node("Transpose", [g.Node("Reshape", [v, g.ConstInts([0, 0, heads, dh])])], a => a.Add(IntsAttr("perm", [0, 2, 1, 3])));
        var q = Heads(parts[0], H);
        var k = Heads(parts[1], kv);
        var v = Heads(parts[2], kv);
        if (cos is not null)
        {
            q = Rotate(g, s, q, cos, sin!);
            k = Rotate(g, s, k, cos, sin!);
        }
        if (prefixK is not null)
        {
            k = g.Node("Concat", [prefixK, k], a => a.Add(IntAttr("axis", 2)));
            v = g.Node("Concat", [prefixV!, v], a => a.Add(IntAttr("axis", 2)));
        }
        if (kv != H)
        {
            // Query head h reads KV head h / (H/KV), as Hugging Face's repeat_kv.
            string Repeat(string y) => g.Node("Reshape",
                [g.Node("Expand", [g.Node("Unsqueeze", [y, g.ConstInts([2])]), g.ConstInts([1, 1, H / kv, 1, 1])]), g.ConstInts([0, H, -1, dh])]);
            k = Repeat(k);
            v = Repeat(v);
        }
        var kT = g.Node("Transpose", [k], a => a.Add(IntsAttr("perm", [0, 1, 3, 2])));
        var scores = g.Node("Add", [g.Node("Mul", [g.Node("MatMul", [q, kT]), g.ConstFloat(1f / MathF.Sqrt(dh))]), bias]);
        var probs = g.Node("Softmax", [scores], a => a.Add(IntAttr("axis", -1)));
        var context = g.Node("Transpose", [g.Node("MatMul", [probs, v])], a => a.Add(IntsAttr("perm", [0, 2, 1, 3])));
        context = g.Node("Reshape", [context, g.ConstInts([0, 0, d])]);
        return Linear(g, w, context, n.AttentionOutputWeight, s.OtherBiases ? n.AttentionOutputBias : null, d, d);
    }

    private static string FeedForward(OnnxGraphBuilder g, ModelSpec s, IReadOnlyDictionary<string, float[]> w, LayerTensorNames n, string x)
    {
        int d = s.Hidden, f = s.FfnSize;
        string inner;
        if (s.Activation == ActivationKind.SwiGlu)
        {
            var up2 = Linear(g, w, x, n.FfnUpWeight, null, d, 2 * f);
            var halves = g.Node("Split", [up2, g.ConstInts([f, f])], 2, a => a.Add(IntAttr("axis", 2)));
            inner = g.Node("Mul", [g.Node("Mul", [halves[0], g.Node("Sigmoid", [halves[0]])]), halves[1]]);
        }
        else
        {
            var up = Linear(g, w, x, n.FfnUpWeight, s.OtherBiases ? n.FfnUpBias : null, d, f);
            var half = g.Node("Mul", [up, g.ConstFloat(0.5f)]);
            if (s.Activation == ActivationKind.GeluErf)
                inner = g.Node("Mul", [half, g.Node("Add", [g.Node("Erf", [g.Node("Mul", [up, g.ConstFloat(1f / MathF.Sqrt(2f))])]), g.ConstFloat(1f)])]);
            else
            {
                var cube = g.Node("Mul", [g.Node("Mul", [g.Node("Mul", [up, up]), up]), g.ConstFloat(0.044715f)]);
                var arg = g.Node("Mul", [g.Node("Add", [up, cube]), g.ConstFloat((float)Math.Sqrt(2 / Math.PI))]);
                inner = g.Node("Mul", [half, g.Node("Add", [g.Node("Tanh", [arg]), g.ConstFloat(1f)])]);
            }
        }
        return Linear(g, w, inner, n.FfnDownWeight, s.OtherBiases ? n.FfnDownBias : null, f, d);
    }

    /// <summary>LayerNorm (LayerNormalization) or RMSNorm (x·1/√(mean(x²) + ε)·γ) over the last axis.</summary>
    private static string Norm(OnnxGraphBuilder g, ModelSpec s, IReadOnlyDictionary<string, float[]> w, string x, string gamma, string beta)
    {
        int d = s.Hidden;
        if (s.Norm == NormKind.LayerNorm)
            return g.Node("LayerNormalization", [x, g.Initializer(gamma, [d], w[gamma]), g.Initializer(beta, [d], w[beta])], a =>
            {
                a.Add(IntAttr("axis", -1));
                a.Add(new Onnx.Proto.AttributeProto { Name = "epsilon", F = s.Epsilon, Type = Onnx.Proto.AttributeProto.Types.AttributeType.Float });
            });
        var meanSquare = g.Node("ReduceMean", [g.Node("Mul", [x, x])], a => { a.Add(IntsAttr("axes", [-1])); a.Add(IntAttr("keepdims", 1)); });
        var rstd = g.Node("Div", [g.ConstFloat(1f), g.Node("Sqrt", [g.Node("Add", [meanSquare, g.ConstFloat(s.Epsilon)])])]);
        return g.Node("Mul", [g.Node("Mul", [x, rstd]), g.Initializer(gamma, [d], w[gamma])]);
    }

    /// <summary>
    /// The head on the token rows [B, T, d]: per token (token classification), or on the pooled sequence — mean over the
    /// real tokens, the first row (cls), or the last real token (last) — as <see cref="TaskHead"/>; outputs logits and
    /// probabilities, or value for regression.
    /// </summary>
    private static void Head(OnnxGraphBuilder g, TunedGraph t, string tokens, string maskF, string seq)
    {
        int d = t.Spec.Hidden, C = t.Classes;
        var weight = g.Initializer("head.weight", [d, C], t.HeadWeight);
        var headBias = g.Initializer("head.bias", [C], t.HeadBias);
        var graph = g.Graph;
        if (t.Kind == TaskKind.TokenClassification)
        {
            var tokenLogits = g.Node("Add", [g.Node("MatMul", [tokens, weight]), headBias], output: "logits");
            g.Node("Softmax", [tokenLogits], a => a.Add(IntAttr("axis", -1)), output: "probabilities");
            graph.Output.Add(FloatOutput("logits", [new("batch"), new("sequence"), new(C)]));
            graph.Output.Add(FloatOutput("probabilities", [new("batch"), new("sequence"), new(C)]));
            return;
        }
        var steps = g.Node("Range", [g.ConstScalarInt(0), seq, g.ConstScalarInt(1)]);
        var pool = t.Pooling switch
        {
            Pooling.Mean => maskF,
            Pooling.Cls => g.Node("Unsqueeze", [g.Node("Cast", [g.Node("Equal", [steps, g.ConstScalarInt(0)])], a => a.Add(IntAttr("to", (long)DataType.Float))), g.ConstInts([0])]),
            _ => LastRealToken(g, steps, maskF),
        };
        var weighted = g.Node("Mul", [tokens, g.Node("Unsqueeze", [pool, g.ConstInts([2])])]);
        var sum = g.Node("ReduceSum", [weighted, g.ConstInts([1])], a => a.Add(IntAttr("keepdims", 0)));
        var count = g.Node("ReduceSum", [pool, g.ConstInts([1])], a => a.Add(IntAttr("keepdims", 1)));
        var pooled = g.Node("Div", [sum, count]);
        if (t.Kind == TaskKind.Regression)
        {
            var y = g.Node("Add", [g.Node("MatMul", [pooled, weight]), headBias]);
            g.Node("Squeeze", [y, g.ConstInts([1])], output: "value");
            graph.Output.Add(FloatOutput("value", [new("batch")]));
            return;
        }
        var logits = g.Node("Add", [g.Node("MatMul", [pooled, weight]), headBias], output: "logits");
        g.Node("Softmax", [logits], a => a.Add(IntAttr("axis", -1)), output: "probabilities");
        graph.Output.Add(FloatOutput("logits", [new("batch"), new(C)]));
        graph.Output.Add(FloatOutput("probabilities", [new("batch"), new(C)]));
    }

    /// <summary>One-hot [B, T] of each example's last real token: ArgMax of mask·(1..T) (right or left padding alike).</summary>
    private static string LastRealToken(OnnxGraphBuilder g, string steps, string maskF)
    {
        var ranks = g.Node("Cast", [g.Node("Add", [steps, g.ConstScalarInt(1)])], a => a.Add(IntAttr("to", (long)DataType.Float)));
        var last = g.Node("ArgMax", [g.Node("Mul", [maskF, ranks])], a => { a.Add(IntAttr("axis", 1)); a.Add(IntAttr("keepdims", 1)); });
        var hit = g.Node("Equal", [g.Node("Unsqueeze", [steps, g.ConstInts([0])]), last]);
        return g.Node("Cast", [hit], a => a.Add(IntAttr("to", (long)DataType.Float)));
    }
}
