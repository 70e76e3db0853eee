using Google.Protobuf;
using SkTuning.Gpu.Import;
using SkTuning.Gpu.Kernels;
using static SkTuning.Gpu.Onnx.OnnxGraphBuilder;

namespace SkTuning.Gpu.Onnx;

/// <summary>Sizes and seed of a random causal-decoder fixture (GPT-2 or LLaMA family).</summary>
public sealed record DecoderFixtureOptions
{
    /// <summary><see cref="ModelFamily.Gpt2"/> or <see cref="ModelFamily.Llama"/>.</summary>
    public ModelFamily Family { get; init; } = ModelFamily.Llama;

    /// <summary>Number of layers.</summary>
    public int Layers { get; init; } = 2;

    /// <summary>Hidden size d.</summary>
    public int Hidden { get; init; } = 64;

    /// <summary>Query heads.</summary>
    public int Heads { get; init; } = 4;

    /// <summary>Key/value heads (grouped-query attention; must divide <see cref="Heads"/>); 0 = <see cref="Heads"/>. GPT-2: 0 or Heads.</summary>
    public int KvHeads { get; init; }

    /// <summary>Head size; 0 = <see cref="Hidden"/> / <see cref="Heads"/>.</summary>
    public int HeadSize { get; init; }

    /// <summary>Feed-forward inner size F (SwiGLU's gate/up width for LLaMA).</summary>
    public int FfnSize { get; init; } = 128;

    /// <summary>Vocabulary size V.</summary>
    public int VocabSize { get; init; } = 256;

    /// <summary>
    /// GPT-2: rows of the position table. LLaMA with <see cref="RopeCache"/>: rows of the cos/sin caches. LLaMA with
    /// computed frequencies has no table, and the importer (hence the written spec) says 4096.
    /// </summary>
    public int MaxPositions { get; init; } = 128;

    /// <summary>RoPE base θ (LLaMA).</summary>
    public float RopeTheta { get; init; } = 10000f;

    /// <summary>Biases on the q/k/v projections (LLaMA; Qwen2 has them). GPT-2 always has every bias.</summary>
    public bool QkvBias { get; init; }

    /// <summary>Norm ε.</summary>
    public float Epsilon { get; init; } = 1e-5f;

    /// <summary>
    /// LLaMA: older HF's cos/sin caches [MaxPositions, head size] gathered by position_ids, instead of newer HF's
    /// inverse frequencies multiplied by position_ids in the graph. (With MaxPositions 4096 the two import alike and
    /// the computed form is written.)
    /// </summary>
    public bool RopeCache { get; init; }

    /// <summary>Random seed of the weights.</summary>
    public int Seed { get; init; } = 1;

    /// <summary>SmolLM2-135M's shape: 30 layers, d 576, 9 heads / 3 KV heads × 64, SwiGLU 1536, vocabulary 49152, θ 10000.</summary>
    public static DecoderFixtureOptions SmolLM2_135M { get; } = new()
    {
        Family = ModelFamily.Llama, Layers = 30, Hidden = 576, Heads = 9, KvHeads = 3, HeadSize = 64, FfnSize = 1536,
        VocabSize = 49152, RopeTheta = 10000f, Epsilon = 1e-5f,
    };

    /// <summary>
    /// Llama-3.2-1B's shape: 16 layers, d 2048, 32 heads / 8 KV heads × 64, SwiGLU 8192, vocabulary 128256, θ 500000
    /// (1.24B parameters, 4.9 GB of fp32 weights in external data).
    /// </summary>
    public static DecoderFixtureOptions Llama32_1B { get; } = new()
    {
        Family = ModelFamily.Llama, Layers = 16, Hidden = 2048, Heads = 32, KvHeads = 8, HeadSize = 64, FfnSize = 8192,
        VocabSize = 128256, RopeTheta = 500000f, Epsilon = 1e-5f,
    };

    /// <summary>GPT-2 small's shape: 12 layers, d 768, 12 heads, FFN 3072, vocabulary 50257, 1024 positions.</summary>
    public static DecoderFixtureOptions Gpt2Small { get; } = new()
    {
        Family = ModelFamily.Gpt2, Layers = 12, Hidden = 768, Heads = 12, FfnSize = 3072, VocabSize = 50257, MaxPositions = 1024,
    };

    /// <summary>The presets by name: <c>llama:smollm2-135m</c>, <c>llama:llama-3.2-1b</c> and <c>gpt2:small</c> (the family prefix is optional).</summary>
    public static IReadOnlyDictionary<string, DecoderFixtureOptions> Presets { get; } = new Dictionary<string, DecoderFixtureOptions>
    {
        ["llama:smollm2-135m"] = SmolLM2_135M,
        ["llama:llama-3.2-1b"] = Llama32_1B,
        ["gpt2:small"] = Gpt2Small,
    };

    /// <summary>A preset by name (<see cref="Presets"/>; <c>smollm2-135m</c> alone also works).</summary>
    /// <exception cref="SkTuningException">No such preset.</exception>
    public static DecoderFixtureOptions Named(string name) =>
        Presets.TryGetValue(name.ToLowerInvariant(), out var o) ? o
        : Presets.Where(p => p.Key.EndsWith(":" + name.ToLowerInvariant(), StringComparison.Ordinal)).Select(p => p.Value).FirstOrDefault()
          ?? throw new SkTuningException($"unknown model shape '{name}' (known: {string.Join(", ", Presets.Keys)})");

    internal int Kv => KvHeads == 0 ? Heads : KvHeads;
    internal int Dh => HeadSize == 0 ? Hidden / Math.Max(Heads, 1) : HeadSize;
}

/// <summary>
/// Writes random GPT-2-style and LLaMA-style decoder graphs in the form torch.onnx exports of Hugging Face's
/// GPT2Model / LlamaModel take (tests/fixtures/make_decoder_fixtures.py has the torch side), so the decoder importers
/// read them: inputs input_ids, attention_mask, position_ids (int64 [batch, sequence]), output last_hidden_state.
/// <para>GPT-2: wte + wpe Gathers; per layer decomposed LayerNorm (ln_1), Conv1D c_attn as Reshape→Gemm→Reshape split
/// in three, heads by Reshape/Transpose, Q·Kᵀ/√dh, <c>where(tril, scores, finfo.min)</c>, + (1 − mask)·finfo.min,
/// Softmax, ·V, c_proj, residual, ln_2, c_fc, GELU-tanh, c_proj, residual; ln_f.</para>
/// <para>LLaMA: embed_tokens Gather; the 4-D mask (Range/Greater causal part, attention_mask == 0 padding, both as
/// masked_fill with finfo.min); rotary cos/sin from an inv_freq constant times position_ids (or cached tables);
/// per layer RMSNorm (Pow, ReduceMean, Add ε, Sqrt, 1/·, Mul x, Mul γ), q/k/v MatMuls (+ biases), rotate-half RoPE,
/// repeat_kv (Unsqueeze, Expand, Reshape) for grouped KV heads, Q·Kᵀ/√dh + mask, Softmax, ·V, o_proj, residual,
/// RMSNorm, SwiGLU (gate·Sigmoid(gate) ⊙ up, down), residual; final RMSNorm.</para>
/// Large models go to an external-data file <c>&lt;name&gt;.data</c> beside the graph (ONNX's external-data
/// convention), so a model past protobuf's 2 GB limit can be written.
/// </summary>
public static class DecoderFixtures
{
    /// <summary>Weights above this many bytes go to an external-data file unless the caller says otherwise.</summary>
    public const long ExternalDataThresholdBytes = 512L << 20;

    private const int Opset = 14;

    /// <summary>The context DecoderReader gives RoPE graphs without a cos/sin table.</summary>
    private const int ComputedRopeContext = 4096;

    /// <summary>Random weights of the given sizes (deterministic in the seed), with the <see cref="ModelSpec"/> the importer reads back.</summary>
    /// <exception cref="ArgumentException">Inconsistent sizes.</exception>
    public static ModelWeights RandomWeights(DecoderFixtureOptions o)
    {
        int d = o.Hidden, h = o.Heads, kv = o.Kv, dh = o.Dh, f = o.FfnSize;
        bool gpt2 = o.Family == ModelFamily.Gpt2;
        if (o.Family is not (ModelFamily.Gpt2 or ModelFamily.Llama)) throw new ArgumentException($"family {o.Family}: only Gpt2 and Llama decoders are written");
        if (o.Layers < 1 || d < 1 || h < 1 || kv < 1 || h % kv != 0 || dh < 2 || f < 1 || o.VocabSize < 1 || o.MaxPositions < 1
            || (gpt2 && (kv != h || h * dh != d)) || (!gpt2 && (dh % 2 != 0 || !(o.RopeTheta > 1))))
            throw new ArgumentException($"invalid decoder fixture sizes {o}");
        var rng = new Random(o.Seed);
        float[] U(int n, double scale, double center = 0) => FixtureModels.Uniform(rng, n, scale, center);
        float[] Bias(int n) => gpt2 || o.QkvBias ? U(n, 0.1) : [];
        int dq = h * dh, dkv = kv * dh;
        double sd = 1 / Math.Sqrt(d), sq = 1 / Math.Sqrt(dq), sf = 1 / Math.Sqrt(f);
        var layers = new List<LayerWeights>();
        for (int l = 0; l < o.Layers; l++)
            layers.Add(new LayerWeights
            {
                Wq = U(d * dq, 2 * sd), Bq = Bias(dq),
                Wk = U(d * dkv, 2 * sd), Bk = Bias(dkv),
                Wv = U(d * dkv, sd), Bv = Bias(dkv),
                Wo = U(dq * d, sq), Bo = gpt2 ? U(d, 0.1) : [],
                AttentionNormGamma = U(d, 0.2, 1), AttentionNormBeta = gpt2 ? U(d, 0.2) : [],
                WGate = gpt2 ? [] : U(d * f, 2 * sd),
                W1 = U(d * f, 2 * sd), B1 = gpt2 ? U(f, 0.1) : [],
                W2 = U(f * d, sf), B2 = gpt2 ? U(d, 0.1) : [],
                FfnNormGamma = U(d, 0.2, 1), FfnNormBeta = gpt2 ? U(d, 0.2) : [],
            });
        var embeddings = new EmbeddingWeights
        {
            Word = U(o.VocabSize * d, 1),
            Position = gpt2 ? U(o.MaxPositions * d, 0.5) : [],
            TokenType = [], NormGamma = [], NormBeta = [],
        };
        float[] finalGamma = U(d, 0.2, 1), finalBeta = gpt2 ? U(d, 0.2) : [];
        var spec = new ModelSpec
        {
            Family = o.Family,
            Layers = o.Layers,
            Hidden = d,
            Heads = h,
            KvHeads = kv,
            HeadSize = dh,
            FfnSize = f,
            Norm = gpt2 ? NormKind.LayerNorm : NormKind.RmsNorm,
            NormPlacement = NormPlacement.Pre,
            Epsilon = o.Epsilon,
            Activation = gpt2 ? ActivationKind.GeluTanh : ActivationKind.SwiGlu,
            Positions = gpt2 ? PositionKind.Absolute : PositionKind.Rope,
            Causal = true,
            VocabSize = o.VocabSize,
            // Computed RoPE frequencies have no table: the importer's default context (DecoderReader).
            MaxPositions = gpt2 || o.RopeCache ? o.MaxPositions : ComputedRopeContext,
            TypeVocabSize = 0,
            MaskValue = float.MinValue,
            EmbeddingNorm = false,
            RopeTheta = gpt2 ? 0 : o.RopeTheta,
            RotaryDim = gpt2 ? 0 : dh,
            QkvBias = gpt2 || o.QkvBias,
            OtherBiases = gpt2,
            ParameterCount = 0,
        };
        var weights = new ModelWeights { Spec = spec, Embeddings = embeddings, Layers = layers, FinalNormGamma = finalGamma, FinalNormBeta = finalBeta };
        return new ModelWeights
        {
            Spec = spec with { ParameterCount = weights.Count }, Embeddings = embeddings, Layers = layers,
            FinalNormGamma = finalGamma, FinalNormBeta = finalBeta,
        };
    }

    /// <summary>The decoder graph of <paramref name="weights"/>, serialized with every tensor inline (small models).</summary>
    public static byte[] Bytes(ModelWeights weights)
    {
        var g = new OnnxGraphBuilder();
        Build(g, weights);
        return g.Model(Opset).ToByteArray();
    }

    /// <summary>Writes random weights of <paramref name="options"/> to <paramref name="path"/>; returns the weights written.</summary>
    /// <param name="path">The .onnx file.</param>
    /// <param name="options">Sizes and seed.</param>
    /// <param name="externalData">Tensor data in <c>&lt;file&gt;.data</c> beside the graph; null: when the weights exceed <see cref="ExternalDataThresholdBytes"/>.</param>
    public static ModelWeights Write(string path, DecoderFixtureOptions options, bool? externalData = null)
    {
        var weights = RandomWeights(options);
        Write(path, weights, externalData);
        return weights;
    }

    /// <summary>
    /// Writes <paramref name="weights"/> as a decoder graph to <paramref name="path"/> (atomically; with external data,
    /// the data file first, then the graph that points into it).
    /// </summary>
    public static void Write(string path, ModelWeights weights, bool? externalData = null)
    {
        bool external = externalData ?? weights.Count * 4L > ExternalDataThresholdBytes;
        if (!external)
        {
            AtomicFile.WriteAllBytes(path, Bytes(weights));
            return;
        }
        var location = Path.GetFileName(path) + ".data";
        byte[]? graph = null;
        AtomicFile.Write(Path.Combine(Path.GetDirectoryName(Path.GetFullPath(path))!, location), stream =>
        {
            var g = new OnnxGraphBuilder(new OnnxGraphBuilder.ExternalData(stream, location));
            Build(g, weights);
            graph = g.Model(Opset).ToByteArray();
        });
        AtomicFile.WriteAllBytes(path, graph!);
    }

    private static void Build(OnnxGraphBuilder g, ModelWeights w)
    {
        var spec = w.Spec;
        g.Graph.Name = "torch_jit";
        g.Graph.Input.Add(Int64Input("input_ids"));
        g.Graph.Input.Add(Int64Input("attention_mask"));
        g.Graph.Input.Add(Int64Input("position_ids"));
        if (spec.Family == ModelFamily.Gpt2) Gpt2(g, w);
        else if (spec.Family == ModelFamily.Llama) Llama(g, w);
        else throw new ArgumentException($"only Gpt2 and Llama decoder weights can be written, not {spec.Family}");
        g.Graph.Output.Add(FloatOutput("last_hidden_state", [new("batch"), new("sequence"), new(spec.Hidden)]));
    }

    // ---------------------------------------------------------------- GPT-2

    private static void Gpt2(OnnxGraphBuilder g, ModelWeights w)
    {
        var s = w.Spec;
        int d = s.Hidden, P = s.MaxPositions, f = s.FfnSize;
        // (1 − mask)·finfo.min, [batch, 1, 1, seq].
        var m1 = g.Node("Unsqueeze", ["attention_mask", g.ConstInts([1])]);
        var m2 = g.Node("Unsqueeze", [m1, g.ConstInts([2])]);
        var m3 = g.Node("Cast", [m2], a => a.Add(IntAttr("to", (long)Proto.TensorProto.Types.DataType.Float)));
        var mask = g.Node("Mul", [g.Node("Sub", [g.ConstFloat(1f), m3]), g.ConstFloat(float.MinValue)]);

        var word = g.Node("Gather", [g.Initializer("wte.weight", [s.VocabSize, d], w.Embeddings.Word), "input_ids"]);
        var pos = g.Node("Gather", [g.Initializer("wpe.weight", [P, d], w.Embeddings.Position), "position_ids"]);
        var h = g.Node("Add", [word, pos]);

        // GPT2Attention's bias buffer tril(ones(P, P)) [1, 1, P, P], sliced to the sequence (shared by the layers).
        var tril = new bool[P * P];
        for (int i = 0; i < P; i++)
            for (int j = 0; j <= i; j++) tril[i * P + j] = true;
        g.Initializer("attn.bias", [1, 1, P, P], tril);
        var seqLen = g.Node("Unsqueeze", [g.Node("Gather", [g.Node("Shape", ["input_ids"]), g.ConstScalarInt(1)], a => a.Add(IntAttr("axis", 0))), g.ConstInts([0])]);
        var rowsCut = g.Node("Slice", ["attn.bias", g.ConstInts([0]), seqLen, g.ConstInts([2]), g.ConstInts([1])]);
        var causal = g.Node("Slice", [rowsCut, g.ConstInts([0]), seqLen, g.ConstInts([3]), g.ConstInts([1])]);

        for (int l = 0; l < s.Layers; l++)
        {
            var lw = w.Layers[l];
            var p = $"h.{l}.";
            var x = g.LayerNorm(h, p + "ln_1", lw.AttentionNormGamma, lw.AttentionNormBeta, s.Epsilon);
            var qkv = Conv1D(g, x, p + "attn.c_attn", lw.FusedQkvWeight(d), lw.FusedQkvBias(), d, 3 * d);
            var parts = g.Node("Split", [qkv, g.ConstInts([d, d, d])], 3, a => a.Add(IntAttr("axis", 2)));
            var q = Heads(g, parts[0], s.Heads, s.HeadSize, [0, 2, 1, 3]);
            var kT = Heads(g, parts[1], s.Heads, s.HeadSize, [0, 2, 3, 1]);
            var v = Heads(g, parts[2], s.Heads, s.HeadSize, [0, 2, 1, 3]);
            var scores = g.Node("Div", [g.Node("MatMul", [q, kT]), g.ConstFloat(MathF.Sqrt(s.HeadSize))]);
            scores = g.Node("Where", [causal, scores, g.ConstFloat(float.MinValue)]);
            scores = g.Node("Add", [scores, mask]);
            var o = Conv1D(g, Context(g, scores, v, d), p + "attn.c_proj", lw.Wo, lw.Bo, d, d);
            var h1 = g.Node("Add", [o, h]);
            var x2 = g.LayerNorm(h1, p + "ln_2", lw.FfnNormGamma, lw.FfnNormBeta, s.Epsilon);
            var up = Conv1D(g, x2, p + "mlp.c_fc", lw.W1, lw.B1, d, f);
            // NewGELUActivation: 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))).
            var half = g.Node("Mul", [up, g.ConstFloat(0.5f)]);
            var cube = g.Node("Mul", [g.Node("Pow", [up, g.ConstFloat(3f)]), g.ConstFloat(0.044715f)]);
            var inner = g.Node("Mul", [g.Node("Add", [up, cube]), g.ConstFloat((float)Math.Sqrt(2 / Math.PI))]);
            var gelu = g.Node("Mul", [half, g.Node("Add", [g.Node("Tanh", [inner]), g.ConstFloat(1f)])]);
            var down = Conv1D(g, gelu, p + "mlp.c_proj", lw.W2, lw.B2, f, d);
            h = g.Node("Add", [h1, down]);
        }
        g.LayerNorm(h, "ln_f", w.FinalNormGamma, w.FinalNormBeta, s.Epsilon, "last_hidden_state");
    }

    /// <summary>HF's Conv1D: addmm(b, x.view(−1, in), W[in, out]).view(batch, seq, out) — Reshape, Gemm, Reshape.</summary>
    private static string Conv1D(OnnxGraphBuilder g, string x, string name, float[] weight, float[] bias, int inputs, int outputs)
    {
        var flat = g.Node("Reshape", [x, g.ConstInts([-1, inputs])]);
        var gemm = g.Node("Gemm", [flat, g.Initializer(name + ".weight", [inputs, outputs], weight), g.Initializer(name + ".bias", [outputs], bias)]);
        var batchSeq = g.Node("Slice", [g.Node("Shape", [x]), g.ConstInts([0]), g.ConstInts([2]), g.ConstInts([0])]);
        return g.Node("Reshape", [gemm, g.Node("Concat", [batchSeq, g.ConstInts([outputs])], a => a.Add(IntAttr("axis", 0)))]);
    }

    /// <summary>view(batch, seq, heads, headSize) then permute.</summary>
    private static string Heads(OnnxGraphBuilder g, string x, int heads, int headSize, long[] perm) =>
        g.Node("Transpose", [g.Node("Reshape", [x, g.ConstInts([0, 0, heads, headSize])])], a => a.Add(IntsAttr("perm", perm)));

    /// <summary>Softmax over keys, ·V, heads merged back to [batch, seq, width].</summary>
    private static string Context(OnnxGraphBuilder g, string scores, string v, int width)
    {
        var probs = g.Node("Softmax", [scores], a => a.Add(IntAttr("axis", -1)));
        var ctx = g.Node("Transpose", [g.Node("MatMul", [probs, v])], a => a.Add(IntsAttr("perm", [0, 2, 1, 3])));
        return g.Node("Reshape", [ctx, g.ConstInts([0, 0, width])]);
    }

    // ---------------------------------------------------------------- LLaMA

    private static void Llama(OnnxGraphBuilder g, ModelWeights w)
    {
        var s = w.Spec;
        int d = s.Hidden, H = s.Heads, kv = s.KvHeads, dh = s.HeadSize, dq = H * dh, dkv = s.KvDim, f = s.FfnSize;
        var h = g.Node("Gather", [g.Initializer("model.embed_tokens.weight", [s.VocabSize, d], w.Embeddings.Word), "input_ids"]);

        // AttentionMaskConverter's 4-D mask: finfo.min where key > query (Range/Greater) or the key is padding.
        var seq = g.Node("Gather", [g.Node("Shape", ["input_ids"]), g.ConstScalarInt(1)], a => a.Add(IntAttr("axis", 0)));
        var range = g.Node("Range", [g.ConstScalarInt(0), seq, g.ConstScalarInt(1)]);
        var future = g.Node("Greater", [g.Node("Unsqueeze", [range, g.ConstInts([0])]), g.Node("Unsqueeze", [range, g.ConstInts([1])])]);
        var causal = g.Node("Where", [future, g.ConstFloat(float.MinValue), g.ConstFloat(0f)]);
        var causal4 = g.Node("Unsqueeze", [causal, g.ConstInts([0, 1])]);
        var padding = g.Node("Equal", [g.Node("Unsqueeze", ["attention_mask", g.ConstInts([1, 2])]), g.ConstScalarInt(0)]);
        var mask = g.Node("Where", [padding, g.ConstFloat(float.MinValue), causal4]);

        // The spec is all the writer sees: a context other than what computed frequencies import as needs cos/sin tables.
        var (cos, sin) = s.MaxPositions != ComputedRopeContext ? RopeCached(g, s) : RopeComputed(g, s);

        for (int l = 0; l < s.Layers; l++)
        {
            var lw = w.Layers[l];
            var p = $"model.layers.{l}.";
            var x = RmsNorm(g, h, p + "input_layernorm", lw.AttentionNormGamma, s.Epsilon);
            var q = Linear(g, x, p + "self_attn.q_proj", lw.Wq, lw.Bq, d, dq);
            var k = Linear(g, x, p + "self_attn.k_proj", lw.Wk, lw.Bk, d, dkv);
            var v = Linear(g, x, p + "self_attn.v_proj", lw.Wv, lw.Bv, d, dkv);
            var qh = Rotate(g, Heads(g, q, H, dh, [0, 2, 1, 3]), cos, sin, dh);
            var kh = RepeatKv(g, Rotate(g, Heads(g, k, kv, dh, [0, 2, 1, 3]), cos, sin, dh), kv, H / kv, dh);
            var vh = RepeatKv(g, Heads(g, v, kv, dh, [0, 2, 1, 3]), kv, H / kv, dh);
            var kT = g.Node("Transpose", [kh], a => a.Add(IntsAttr("perm", [0, 1, 3, 2])));
            var scores = g.Node("Div", [g.Node("MatMul", [qh, kT]), g.ConstFloat(MathF.Sqrt(dh))]);
            scores = g.Node("Add", [scores, mask]);
            var o = Linear(g, Context(g, scores, vh, dq), p + "self_attn.o_proj", lw.Wo, [], dq, d);
            var h1 = g.Node("Add", [h, o]);
            var x2 = RmsNorm(g, h1, p + "post_attention_layernorm", lw.FfnNormGamma, s.Epsilon);
            var gate = Linear(g, x2, p + "mlp.gate_proj", lw.WGate, [], d, f);
            var silu = g.Node("Mul", [gate, g.Node("Sigmoid", [gate])]);
            var up = Linear(g, x2, p + "mlp.up_proj", lw.W1, [], d, f);
            var down = Linear(g, g.Node("Mul", [silu, up]), p + "mlp.down_proj", lw.W2, [], f, d);
            h = g.Node("Add", [h1, down]);
        }
        RmsNorm(g, h, "model.norm", w.FinalNormGamma, s.Epsilon, "last_hidden_state");
    }

    /// <summary>nn.Linear as torch exports it: MatMul with the transposed weight [in, out] (+ Add of the bias).</summary>
    private static string Linear(OnnxGraphBuilder g, string x, string name, float[] weight, float[] bias, int inputs, int outputs)
    {
        var y = g.Node("MatMul", [x, g.Initializer(name + ".weight", [inputs, outputs], weight)]);
        return bias.Length == 0 ? y : g.Node("Add", [g.Initializer(name + ".bias", [outputs], bias), y]);
    }

    /// <summary>LlamaRMSNorm: x·(1/√(mean(x²) + ε)), then γ·.</summary>
    private static string RmsNorm(OnnxGraphBuilder g, string x, string name, float[] gamma, float eps, string? output = null)
    {
        var meanSquare = g.Node("ReduceMean", [g.Node("Pow", [x, g.ConstFloat(2f)])], a => { a.Add(IntsAttr("axes", [-1])); a.Add(IntAttr("keepdims", 1)); });
        var rsqrt = g.Node("Div", [g.ConstFloat(1f), g.Node("Sqrt", [g.Node("Add", [meanSquare, g.ConstFloat(eps)])])]);
        var normalized = g.Node("Mul", [x, rsqrt]);
        return g.Node("Mul", [g.Initializer(name + ".weight", [gamma.Length], gamma), normalized], output: output);
    }

    /// <summary>Newer HF: cos/sin of cat(f, f) with f = (inv_freq [1, r/2, 1] @ position_ids [B, 1, T])ᵀ, unsqueezed to [B, 1, T, r].</summary>
    private static (string Cos, string Sin) RopeComputed(OnnxGraphBuilder g, ModelSpec s)
    {
        int r = s.RotaryDim;
        var inv = g.Initializer("model.rotary_emb.inv_freq", [1, r / 2, 1], Rope.InverseFrequencies(r, s.RopeTheta));
        var positions = g.Node("Cast", [g.Node("Unsqueeze", ["position_ids", g.ConstInts([1])])], a => a.Add(IntAttr("to", (long)Proto.TensorProto.Types.DataType.Float)));
        var freqs = g.Node("Transpose", [g.Node("MatMul", [inv, positions])], a => a.Add(IntsAttr("perm", [0, 2, 1])));
        var emb = g.Node("Concat", [freqs, freqs], a => a.Add(IntAttr("axis", -1)));
        return (g.Node("Unsqueeze", [g.Node("Cos", [emb]), g.ConstInts([1])]), g.Node("Unsqueeze", [g.Node("Sin", [emb]), g.ConstInts([1])]));
    }

    /// <summary>Older HF: cos/sin caches [P, r] (cat(f, f) per position, <see cref="Rope.Tables"/>' values) gathered by position_ids.</summary>
    private static (string Cos, string Sin) RopeCached(OnnxGraphBuilder g, ModelSpec s)
    {
        int r = s.RotaryDim, half = r / 2, P = s.MaxPositions;
        var (cosHalf, sinHalf) = Rope.Tables(P, r, s.RopeTheta);
        float[] Full(float[] t)
        {
            var full = new float[P * r];
            for (int p = 0; p < P; p++)
            {
                t.AsSpan(p * half, half).CopyTo(full.AsSpan(p * r));
                t.AsSpan(p * half, half).CopyTo(full.AsSpan(p * r + half));
            }
            return full;
        }
        string Gathered(string name, float[] table) =>
            g.Node("Unsqueeze", [g.Node("Gather", [g.Initializer(name, [P, r], Full(table)), "position_ids"]), g.ConstInts([1])]);
        return (Gathered("model.rotary_emb.cos_cached", cosHalf), Gathered("model.rotary_emb.sin_cached", sinHalf));
    }

    /// <summary>apply_rotary_pos_emb: x·cos + cat(−x[…, r/2:], x[…, :r/2])·sin.</summary>
    private static string Rotate(OnnxGraphBuilder g, string x, string cos, string sin, int headSize)
    {
        int half = headSize / 2;
        var first = g.Node("Slice", [x, g.ConstInts([0]), g.ConstInts([half]), g.ConstInts([3]), g.ConstInts([1])]);
        var second = g.Node("Slice", [x, g.ConstInts([half]), g.ConstInts([long.MaxValue]), g.ConstInts([3]), g.ConstInts([1])]);
        var rotated = g.Node("Concat", [g.Node("Neg", [second]), first], a => a.Add(IntAttr("axis", -1)));
        return g.Node("Add", [g.Node("Mul", [x, cos]), g.Node("Mul", [rotated, sin])]);
    }

    /// <summary>repeat_kv: [B, kv, T, dh] → Unsqueeze(2) → Expand to [B, kv, n, T, dh] → Reshape [B, kv·n, T, dh]; identity for n = 1.</summary>
    private static string RepeatKv(OnnxGraphBuilder g, string x, int kvHeads, int repeats, int headSize)
    {
        if (repeats == 1) return x;
        var expanded = g.Node("Expand", [g.Node("Unsqueeze", [x, g.ConstInts([2])]), g.ConstInts([1, kvHeads, repeats, 1, headSize])]);
        return g.Node("Reshape", [expanded, g.ConstInts([0, kvHeads * repeats, -1, headSize])]);
    }
}
