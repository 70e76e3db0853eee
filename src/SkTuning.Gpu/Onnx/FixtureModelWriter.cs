using Google.Protobuf;
using SkTuning.Gpu.Import;
using SkTuning.Gpu.Onnx.Proto;
using static SkTuning.Gpu.Onnx.OnnxGraphBuilder;

namespace SkTuning.Gpu.Onnx;

/// <summary>Sizes and seed of a random BERT-family fixture model.</summary>
/// <param name="Layers">Number of layers.</param>
/// <param name="Hidden">Hidden size d.</param>
/// <param name="Heads">Attention heads (must divide <paramref name="Hidden"/>).</param>
/// <param name="FfnSize">Feed-forward inner size.</param>
/// <param name="VocabSize">Vocabulary size.</param>
/// <param name="MaxPositions">Rows of the position table.</param>
/// <param name="Seed">Random seed of the weights.</param>
/// <param name="TypeVocabSize">Token-type vocabulary size.</param>
/// <param name="Pooler">Whether to add BERT's pooler (Gather first token, Gemm, Tanh).</param>
/// <param name="Epsilon">LayerNorm epsilon.</param>
/// <param name="MaskValue">The additive mask value: (1 − mask)·MaskValue.</param>
public sealed record BertFixtureOptions(
    int Layers = 2,
    int Hidden = 32,
    int Heads = 4,
    int FfnSize = 64,
    int VocabSize = 50,
    int MaxPositions = 16,
    int Seed = 1,
    int TypeVocabSize = 2,
    bool Pooler = true,
    float Epsilon = 1e-12f,
    float MaskValue = -10000f);

/// <summary>
/// Writes small BERT-family ONNX graphs with the node structure of a PyTorch (1.10, opset 13) export such
/// as MiniLM's: Gather embeddings (word, position through a Slice of a <c>position_ids</c> initializer,
/// token type) summed by Adds, decomposed LayerNorms (ReduceMean/Sub/Pow/ReduceMean/Add ε/Sqrt/Div/Mul/Add),
/// Linears as MatMul with renamed weight initializers ('100', '101', …, stored [in, out]) plus Add of a named
/// bias, heads by Shape/Gather/Unsqueeze/Concat/Reshape and Transpose, Q·Kᵀ / √dh + (1 − mask)·−10000
/// computed in-graph from the int64 attention_mask, Softmax, ·V, output Linear, residual, LayerNorm, Erf GELU
/// FFN, residual, LayerNorm; optional pooler. Inputs input_ids, attention_mask, token_type_ids (int64
/// [batch, sequence]); output last_hidden_state. Used by tests, benchmarks and the CLI's self-checks.
/// </summary>
public static class FixtureModels
{
    /// <summary>Random weights of the given sizes (deterministic in the seed), with their <see cref="ModelSpec"/>.</summary>
    public static ModelWeights RandomBertWeights(BertFixtureOptions o)
    {
        if (o.Layers < 1 || o.Hidden < 1 || o.Heads < 1 || o.Hidden % o.Heads != 0 || o.FfnSize < 1 || o.VocabSize < 1
            || o.MaxPositions < 1 || o.TypeVocabSize < 1)
            throw new ArgumentException($"invalid fixture sizes {o}");
        var rng = new Random(o.Seed);
        int d = o.Hidden, f = o.FfnSize;
        float[] Rand(int n, double scale, double center = 0) => Uniform(rng, n, scale, center);
        var embeddings = new EmbeddingWeights
        {
            Word = Rand(o.VocabSize * d, 1),
            Position = Rand(o.MaxPositions * d, 0.5),
            TokenType = Rand(o.TypeVocabSize * d, 0.5),
            NormGamma = Rand(d, 0.2, 1),
            NormBeta = Rand(d, 0.2),
        };
        var layers = new List<LayerWeights>();
        double sd = 1 / Math.Sqrt(d), sf = 1 / Math.Sqrt(f);
        for (int l = 0; l < o.Layers; l++)
            layers.Add(new LayerWeights
            {
                Wq = Rand(d * d, 2 * sd), Bq = Rand(d, 0.1),
                Wk = Rand(d * d, 2 * sd), Bk = Rand(d, 0.1),
                Wv = Rand(d * d, sd), Bv = Rand(d, 0.1),
                Wo = Rand(d * d, sd), Bo = Rand(d, 0.1),
                AttentionNormGamma = Rand(d, 0.2, 1), AttentionNormBeta = Rand(d, 0.2),
                W1 = Rand(d * f, 2 * sd), B1 = Rand(f, 0.1),
                W2 = Rand(f * d, sf), B2 = Rand(d, 0.1),
                FfnNormGamma = Rand(d, 0.2, 1), FfnNormBeta = Rand(d, 0.2),
            });
        var pooler = o.Pooler ? new PoolerWeights { W = Rand(d * d, sd), B = Rand(d, 0.1) } : null;
        var spec = new ModelSpec
        {
            Family = ModelFamily.Bert,
            EmbeddingNorm = true,
            Layers = o.Layers,
            Hidden = d,
            Heads = o.Heads,
            KvHeads = o.Heads,
            HeadSize = d / o.Heads,
            FfnSize = f,
            Norm = NormKind.LayerNorm,
            NormPlacement = NormPlacement.Post,
            Epsilon = o.Epsilon,
            Activation = ActivationKind.GeluErf,
            Positions = PositionKind.Absolute,
            Causal = false,
            VocabSize = o.VocabSize,
            MaxPositions = o.MaxPositions,
            TypeVocabSize = o.TypeVocabSize,
            MaskValue = o.MaskValue,
            HasPooler = o.Pooler,
            ParameterCount = 0,
        };
        var weights = new ModelWeights { Spec = spec, Embeddings = embeddings, Layers = layers, Pooler = pooler };
        return new ModelWeights { Spec = spec with { ParameterCount = weights.Count }, Embeddings = embeddings, Layers = layers, Pooler = pooler };
    }

    /// <summary>n values uniform in [center − scale, center + scale] (the fixtures' weight initializer).</summary>
    internal static float[] Uniform(Random rng, int n, double scale, double center = 0)
    {
        var a = new float[n];
        for (int i = 0; i < n; i++) a[i] = (float)(center + (rng.NextDouble() * 2 - 1) * scale);
        return a;
    }

    /// <summary>A random BERT fixture, serialized.</summary>
    public static byte[] BertBytes(BertFixtureOptions options) => BertBytes(RandomBertWeights(options));

    /// <summary>Writes a random BERT fixture to <paramref name="path"/> (atomically); returns the weights written.</summary>
    public static ModelWeights WriteBert(string path, BertFixtureOptions options)
    {
        var weights = RandomBertWeights(options);
        AtomicFile.WriteAllBytes(path, BertBytes(weights));
        return weights;
    }

    /// <summary>
    /// Serializes BERT-family <paramref name="weights"/> (post-LayerNorm, GELU-erf, absolute positions) as an
    /// opset-13 ONNX graph in the torch-export form described on <see cref="FixtureModels"/>.
    /// </summary>
    public static byte[] BertBytes(ModelWeights weights)
    {
        var spec = weights.Spec;
        if (spec.Family != ModelFamily.Bert) throw new ArgumentException($"only BERT weights can be written, not {spec.Family}");
        int d = spec.Hidden, heads = spec.Heads, dh = spec.HeadSize, f = spec.FfnSize;
        var g = new OnnxGraphBuilder();
        var graph = g.Graph;
        graph.Name = "torch-jit-export";
        graph.Input.Add(Int64Input("input_ids"));
        graph.Input.Add(Int64Input("attention_mask"));
        graph.Input.Add(Int64Input("token_type_ids"));

        // Additive mask (1 − mask)·value, [batch, 1, 1, seq].
        var m1 = g.Node("Unsqueeze", ["attention_mask", g.ConstInts([1])]);
        var m2 = g.Node("Unsqueeze", [m1, g.ConstInts([2])]);
        var m3 = g.Node("Cast", [m2], a => a.Add(IntAttr("to", (long)TensorProto.Types.DataType.Float)));
        var m4 = g.Node("Sub", [g.ConstFloat(1f), m3]);
        var mask = g.Node("Mul", [m4, g.ConstFloat(spec.MaskValue)]);

        // Embeddings.
        var emb = weights.Embeddings;
        var shape = g.Node("Shape", ["input_ids"]);
        var seqLen = g.Node("Gather", [shape, g.ConstScalarInt(1)], a => a.Add(IntAttr("axis", 0)));
        var seqLen0 = g.Node("Add", [seqLen, g.ConstScalarInt(0)]);
        var ends = g.Node("Unsqueeze", [seqLen0, g.ConstInts([0])]);
        g.Initializer("embeddings.position_ids", [1, spec.MaxPositions], Enumerable.Range(0, spec.MaxPositions).Select(i => (long)i).ToArray());
        var positionIds = g.Node("Slice", ["embeddings.position_ids", g.ConstInts([0]), ends, g.ConstInts([1]), g.ConstInts([1])]);
        g.Initializer("embeddings.word_embeddings.weight", [spec.VocabSize, d], emb.Word);
        g.Initializer("embeddings.position_embeddings.weight", [spec.MaxPositions, d], emb.Position);
        g.Initializer("embeddings.token_type_embeddings.weight", [spec.TypeVocabSize, d], emb.TokenType);
        var word = g.Node("Gather", ["embeddings.word_embeddings.weight", "input_ids"]);
        var type = g.Node("Gather", ["embeddings.token_type_embeddings.weight", "token_type_ids"]);
        var sum = g.Node("Add", [word, type]);
        var pos = g.Node("Gather", ["embeddings.position_embeddings.weight", positionIds]);
        sum = g.Node("Add", [sum, pos]);
        var h = g.LayerNorm(sum, "embeddings.LayerNorm", emb.NormGamma, emb.NormBeta, spec.Epsilon);

        int weightName = 100;
        string Linear(string x, float[] w, int rows, int cols, float[] b, string biasName)
        {
            var name = (weightName++).ToString(System.Globalization.CultureInfo.InvariantCulture);
            g.Initializer(name, [rows, cols], w);
            g.Initializer(biasName, [cols], b);
            var mm = g.Node("MatMul", [x, name]);
            return g.Node("Add", [biasName, mm]);
        }
        string ToHeads(string x, long[] perm)
        {
            var s0 = g.Node("Shape", [x]);
            var b = g.Node("Gather", [s0, g.ConstScalarInt(0)], a => a.Add(IntAttr("axis", 0)));
            var s1 = g.Node("Shape", [x]);
            var t = g.Node("Gather", [s1, g.ConstScalarInt(1)], a => a.Add(IntAttr("axis", 0)));
            var bu = g.Node("Unsqueeze", [b, g.ConstInts([0])]);
            var tu = g.Node("Unsqueeze", [t, g.ConstInts([0])]);
            var target = g.Node("Concat", [bu, tu, g.ConstInts([heads]), g.ConstInts([dh])], a => a.Add(IntAttr("axis", 0)));
            var r = g.Node("Reshape", [x, target]);
            return g.Node("Transpose", [r], a => a.Add(IntsAttr("perm", perm)));
        }

        for (int l = 0; l < spec.Layers; l++)
        {
            var w = weights.Layers[l];
            var p = $"encoder.layer.{l}.";
            var q = Linear(h, w.Wq, d, d, w.Bq, p + "attention.self.query.bias");
            var k = Linear(h, w.Wk, d, d, w.Bk, p + "attention.self.key.bias");
            var kt = ToHeads(k, [0, 2, 3, 1]);
            var v = Linear(h, w.Wv, d, d, w.Bv, p + "attention.self.value.bias");
            var vt = ToHeads(v, [0, 2, 1, 3]);
            var qt = ToHeads(q, [0, 2, 1, 3]);
            var scores = g.Node("MatMul", [qt, kt]);
            var scaled = g.Node("Div", [scores, g.ConstFloat(MathF.Sqrt(dh))]);
            var masked = g.Node("Add", [scaled, mask]);
            var probs = g.Node("Softmax", [masked], a => a.Add(IntAttr("axis", -1)));
            var ctx = g.Node("MatMul", [probs, vt]);
            var ctxT = g.Node("Transpose", [ctx], a => a.Add(IntsAttr("perm", [0, 2, 1, 3])));
            var merged = g.Node("Reshape", [ctxT, g.ConstInts([0, 0, d])]);
            var o = Linear(merged, w.Wo, d, d, w.Bo, p + "attention.output.dense.bias");
            var r1 = g.Node("Add", [o, h]);
            var h1 = g.LayerNorm(r1, p + "attention.output.LayerNorm", w.AttentionNormGamma, w.AttentionNormBeta, spec.Epsilon);
            var up = Linear(h1, w.W1, d, f, w.B1, p + "intermediate.dense.bias");
            var e1 = g.Node("Div", [up, g.ConstFloat(1.4142135f)]);
            var e2 = g.Node("Erf", [e1]);
            var e3 = g.Node("Add", [e2, g.ConstFloat(1f)]);
            var e4 = g.Node("Mul", [up, e3]);
            var gelu = g.Node("Mul", [e4, g.ConstFloat(0.5f)]);
            var down = Linear(gelu, w.W2, f, d, w.B2, p + "output.dense.bias");
            var r2 = g.Node("Add", [down, h1]);
            h = g.LayerNorm(r2, p + "output.LayerNorm", w.FfnNormGamma, w.FfnNormBeta, spec.Epsilon,
                l == spec.Layers - 1 ? "last_hidden_state" : null);
        }
        graph.Output.Add(FloatOutput("last_hidden_state", [new("batch"), new("sequence"), new(d)]));

        if (weights.Pooler is { } pooler)
        {
            var first = g.Node("Gather", [h, g.ConstScalarInt(0)], a => a.Add(IntAttr("axis", 1)));
            // torch's Linear weight is [out, in]: Gemm with transB = 1.
            var wt = new float[d * d];
            for (int i = 0; i < d; i++)
                for (int j = 0; j < d; j++) wt[j * d + i] = pooler.W[i * d + j];
            g.Initializer("pooler.dense.weight", [d, d], wt);
            g.Initializer("pooler.dense.bias", [d], pooler.B);
            var dense = g.Node("Gemm", [first, "pooler.dense.weight", "pooler.dense.bias"], a =>
            {
                a.Add(new AttributeProto { Name = "alpha", F = 1, Type = AttributeProto.Types.AttributeType.Float });
                a.Add(new AttributeProto { Name = "beta", F = 1, Type = AttributeProto.Types.AttributeType.Float });
                a.Add(IntAttr("transB", 1));
            });
            g.Node("Tanh", [dense], output: "pooler_output");
            graph.Output.Add(FloatOutput("pooler_output", [new("batch"), new(d)]));
        }
        return g.Model().ToByteArray();
    }

    /// <summary>A model that is valid ONNX but not a transformer: y = MatMul(x, W).</summary>
    public static byte[] LoneMatMulBytes()
    {
        var g = new OnnxGraphBuilder();
        g.Graph.Name = "lone-matmul";
        g.Graph.Input.Add(new ValueInfoProto { Name = "x", Type = TensorType(TensorProto.Types.DataType.Float, [new("batch"), new(3)]) });
        g.Initializer("W", [3, 4], new float[12]);
        g.Node("MatMul", ["x", "W"], output: "y");
        g.Graph.Output.Add(FloatOutput("y", [new("batch"), new(4)]));
        return g.Model().ToByteArray();
    }

    /// <summary>Writes <see cref="LoneMatMulBytes"/> to <paramref name="path"/>.</summary>
    public static void WriteLoneMatMul(string path) => AtomicFile.WriteAllBytes(path, LoneMatMulBytes());
}
