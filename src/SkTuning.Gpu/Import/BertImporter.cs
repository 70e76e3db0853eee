using SkTuning.Gpu.Onnx;

namespace SkTuning.Gpu.Import;

/// <summary>
/// Recognizes a BERT-family encoder (BERT, MiniLM, ArcticXs…) in an ONNX graph <b>by its structure</b> and
/// reads its architecture and weights. Torch exports rename the Linear weights (MiniLM's are initializers
/// '927', '928', …), so nothing relies on names: the importer starts at the word-embedding Gather (a 2-D float
/// table indexed by a graph input), follows the Add chain of the embeddings into a (decomposed or fused)
/// LayerNorm, and then, layer by layer, finds the three Linears (MatMul with a 2-D weight + Add of a bias)
/// reading the hidden state, tells query, key and value apart by where they enter attention (Q·Kᵀ and
/// Softmax·V), reads heads from the Reshape-to-heads shape (or the √dh scale), follows the context through
/// the output Linear, the residual Add and LayerNorm, the FFN (Linear, GELU, Linear), residual and LayerNorm.
/// Graphs that do not fit are a <see cref="SkTuningException"/> "&lt;file&gt;: unsupported graph: …".
/// </summary>
public static class BertImporter
{
    /// <summary>Loads and imports an .onnx file.</summary>
    public static ImportedModel Import(string path) => Import(OnnxModel.Load(path));

    /// <summary>Imports a loaded model.</summary>
    public static ImportedModel Import(OnnxModel model) => new Reader(model).Run();

    private sealed record Linear(float[] W, float[] B, int In, int Out, string Output, OnnxNode MatMul);

    private sealed record Norm(float[] Gamma, float[] Beta, float Epsilon, string Output);

    private sealed class Reader(OnnxModel m)
    {
        private readonly string _file = m.FilePath;
        private readonly HashSet<string> _graphInputs = m.Inputs.Select(i => i.Name).ToHashSet(StringComparer.Ordinal);

        private SkTuningException Fail(string problem) => new($"{_file}: unsupported graph: {problem}");

        public ImportedModel Run()
        {
            // ---- Embeddings: Gathers of 2-D float tables, summed by Adds, then a LayerNorm.
            var tables = m.Nodes.Where(n => n.OpType == "Gather" && n.GetInt("axis", 0) == 0 && n.Inputs.Count == 2
                                            && FloatMatrix(n.Inputs[0]) is not null).ToList();
            var byInput = tables.Where(n => _graphInputs.Contains(n.Inputs[1])).ToList();
            var word = byInput.FirstOrDefault(n => n.Inputs[1].Contains("input_ids", StringComparison.OrdinalIgnoreCase))
                       ?? byInput.OrderByDescending(n => FloatMatrix(n.Inputs[0])!.Dims[0]).FirstOrDefault()
                       ?? throw Fail("no embedding Gather (a Gather of a 2-D float table by a graph input such as input_ids)");
            var wordTable = FloatMatrix(word.Inputs[0])!;
            int vocab = checked((int)wordTable.Dims[0]), d = checked((int)wordTable.Dims[1]);
            OnnxNode? typeGather = null, positionGather = null;
            var sum = word.Outputs[0];
            while (true)
            {
                var add = m.Consumers(sum).FirstOrDefault(n => n.OpType == "Add");
                if (add is null) break;
                var otherName = Other(add, sum);
                var other = m.Producer(otherName);
                if (other is null || !tables.Contains(other)) break;
                if (FloatMatrix(other.Inputs[0])!.Dims[1] != d)
                    throw Fail($"embedding table '{other.Inputs[0]}' has width {FloatMatrix(other.Inputs[0])!.Dims[1]}, the word table {d}");
                if (_graphInputs.Contains(other.Inputs[1])) typeGather ??= other;
                else positionGather ??= other;
                sum = add.Outputs[0];
            }
            if (positionGather is null) throw Fail("no position-embedding Gather added to the word embeddings");
            var embNorm = ParseLayerNorm(sum, "the embeddings");
            var positionTable = FloatMatrix(positionGather.Inputs[0])!;
            var typeTable = typeGather is null ? null : FloatMatrix(typeGather.Inputs[0])!;

            // ---- Layers.
            var layers = new List<LayerWeights>();
            var hidden = new List<string> { embNorm.Output };
            int heads = 0, headSize = 0, ffn = 0;
            float? maskValue = null;
            var h = embNorm.Output;
            while (true)
            {
                var linears = m.Consumers(h).Select(TryLinear).OfType<Linear>().ToList();
                if (linears.Count == 0) break;
                var where = $"layer {layers.Count}";
                if (linears.Count != 3)
                    throw Fail($"{where}: expected 3 projections (query, key, value) reading '{h}', found {linears.Count}");
                foreach (var l in linears)
                    if (l.In != d) throw Fail($"{where}: projection '{l.MatMul.Inputs[1]}' has {l.In} inputs, hidden size is {d}");

                // Attention core: Softmax(Q·Kᵀ·scale + mask)·V.
                var softmax = FindForward(linears.Select(l => l.Output), n => n.OpType == "Softmax", 24)
                              ?? throw Fail($"{where}: no Softmax after the query/key/value projections");
                double scale = 1;
                var scores = softmax.Inputs[0];
                OnnxNode? scoreMatMul = null;
                for (int guard = 0; guard < 8 && scoreMatMul is null; guard++)
                {
                    var p = m.Producer(scores) ?? throw Fail($"{where}: the attention scores do not come from a MatMul");
                    switch (p.OpType)
                    {
                        case "MatMul": scoreMatMul = p; break;
                        case "Add":
                        {
                            var a = p.Inputs[0];
                            var b = p.Inputs[1];
                            bool aScores = ReachesMatMul(a, 4), bScores = ReachesMatMul(b, 4);
                            if (aScores == bScores) throw Fail($"{where}: cannot tell the attention scores from the mask in '{p.Name}'");
                            maskValue ??= ReadMaskValue(aScores ? b : a, where);
                            scores = aScores ? a : b;
                            break;
                        }
                        case "Div" or "Mul":
                        {
                            var (data, c) = DataAndScalar(p) ?? throw Fail($"{where}: attention scaling '{p.Name}' has no constant");
                            scale *= p.OpType == "Div" ? 1.0 / c : c;
                            scores = data;
                            break;
                        }
                        case "Cast" or "Identity" or "Dropout": scores = p.Inputs[0]; break;
                        default: throw Fail($"{where}: unexpected {p.OpType} '{p.Name}' between Q·Kᵀ and Softmax");
                    }
                }
                if (scoreMatMul is null) throw Fail($"{where}: the attention scores do not come from a MatMul");
                var (q, qReshape, qScale) = LinearFromPath(scoreMatMul.Inputs[0], linears, where, "query");
                var (k, _, kScale) = LinearFromPath(scoreMatMul.Inputs[1], linears, where, "key");
                scale *= qScale * kScale;
                var context = m.Consumers(softmax.Outputs[0]).FirstOrDefault(n => n.OpType == "MatMul")
                              ?? FindForward(softmax.Outputs[0], n => n.OpType == "MatMul", 3)
                              ?? throw Fail($"{where}: the attention probabilities are not multiplied by V");
                var (v, _, _) = LinearFromPath(context.Inputs[1], linears, where, "value");
                if (q == k || q == v || k == v) throw Fail($"{where}: query, key and value are not three distinct projections");

                // Heads: the Reshape to [batch, seq, heads, headSize], else d / (1/scale²).
                var shape = qReshape is null ? null : ReshapeTail(qReshape);
                int layerHeadSize, layerHeads;
                if (shape is { } s && s.HeadSize > 0 && s.Heads > 0) (layerHeads, layerHeadSize) = s;
                else
                {
                    layerHeadSize = (int)Math.Round(1.0 / (scale * scale));
                    if (layerHeadSize <= 0 || d % layerHeadSize != 0)
                        throw Fail($"{where}: cannot read the number of heads (no Reshape shape, scale {scale:G6})");
                    layerHeads = d / layerHeadSize;
                }
                if (layerHeads * layerHeadSize != q.Out)
                    throw Fail($"{where}: {layerHeads} heads × {layerHeadSize} ≠ query width {q.Out}");
                if (Math.Abs(scale * Math.Sqrt(layerHeadSize) - 1) > 1e-3)
                    throw Fail($"{where}: attention scale {scale:G6} is not 1/√{layerHeadSize}");
                if (k.Out != q.Out || v.Out != q.Out)
                    throw Fail($"{where}: key/value width {k.Out}/{v.Out} differs from query width {q.Out}");

                // Output projection, residual, LayerNorm.
                var o = FindLinearForward(context.Outputs[0], 6) ?? throw Fail($"{where}: no attention output projection");
                if (o.In != q.Out || o.Out != d) throw Fail($"{where}: attention output projection is [{o.In},{o.Out}], expected [{q.Out},{d}]");
                var res1 = m.Consumers(o.Output).FirstOrDefault(n => n.OpType == "Add" && Other(n, o.Output) == h)
                           ?? throw Fail($"{where}: the attention output is not added to the layer input (only post-norm BERT layers are supported)");
                var norm1 = ParseLayerNorm(res1.Outputs[0], $"{where} attention output");

                // FFN: Linear, GELU, Linear, residual, LayerNorm.
                var ups = m.Consumers(norm1.Output).Select(TryLinear).OfType<Linear>().ToList();
                if (ups.Count != 1) throw Fail($"{where}: expected one FFN input projection, found {ups.Count}");
                var up = ups[0];
                var (activation, down) = ParseActivation(up.Output, where);
                if (down.In != up.Out || down.Out != d) throw Fail($"{where}: FFN output projection is [{down.In},{down.Out}], expected [{up.Out},{d}]");
                var res2 = m.Consumers(down.Output).FirstOrDefault(n => n.OpType == "Add" && Other(n, down.Output) == norm1.Output)
                           ?? throw Fail($"{where}: the FFN output is not added to its input");
                var norm2 = ParseLayerNorm(res2.Outputs[0], $"{where} output");
                if (activation != ActivationKind.GeluErf && activation != ActivationKind.GeluTanh)
                    throw Fail($"{where}: activation {activation} is not a BERT activation");
                if (layers.Count == 0) (heads, headSize, ffn) = (layerHeads, layerHeadSize, up.Out);
                else if (heads != layerHeads || headSize != layerHeadSize || ffn != up.Out)
                    throw Fail($"{where}: sizes differ from layer 0 (heads {layerHeads}, head size {layerHeadSize}, FFN {up.Out})");
                _activation ??= activation;

                layers.Add(new LayerWeights
                {
                    Wq = q.W, Bq = q.B, Wk = k.W, Bk = k.B, Wv = v.W, Bv = v.B, Wo = o.W, Bo = o.B,
                    AttentionNormGamma = norm1.Gamma, AttentionNormBeta = norm1.Beta,
                    W1 = up.W, B1 = up.B, W2 = down.W, B2 = down.B,
                    FfnNormGamma = norm2.Gamma, FfnNormBeta = norm2.Beta,
                });
                h = norm2.Output;
                hidden.Add(h);
            }
            if (layers.Count == 0) throw Fail("no transformer layer (query/key/value projections) after the embedding LayerNorm");

            var pooler = ParsePooler(h, d);
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
                Family = ModelFamily.Bert,
                EmbeddingNorm = true,
                Layers = layers.Count,
                Hidden = d,
                Heads = heads,
                KvHeads = heads,
                HeadSize = headSize,
                FfnSize = ffn,
                Norm = NormKind.LayerNorm,
                NormPlacement = NormPlacement.Post,
                Epsilon = embNorm.Epsilon,
                Activation = _activation ?? ActivationKind.GeluErf,
                Positions = PositionKind.Absolute,
                Causal = false,
                VocabSize = vocab,
                MaxPositions = checked((int)positionTable.Dims[0]),
                TypeVocabSize = typeTable is null ? 0 : checked((int)typeTable.Dims[0]),
                MaskValue = maskValue ?? throw Fail("no additive attention mask ((1 − mask)·value added to the scores)"),
                HasPooler = pooler is not null,
                ParameterCount = count,
            };
            var weights = new ModelWeights { Spec = spec, Embeddings = embeddings, Layers = layers, Pooler = pooler };
            var maskInput = m.Inputs.Select(i => i.Name)
                .Where(n => n != word.Inputs[1] && n != typeGather?.Inputs[1])
                .OrderByDescending(n => n.Contains("mask", StringComparison.OrdinalIgnoreCase))
                .FirstOrDefault();
            return new ImportedModel(_file, spec, weights, hidden, word.Inputs[1], maskInput, typeGather?.Inputs[1]);
        }

        private ActivationKind? _activation;

        // ---------------------------------------------------------------- pieces

        private OnnxTensor? FloatMatrix(string name) =>
            m.TryGetTensor(name) is { Dims.Count: 2 } t && IsFloat(t) ? t : null;

        private OnnxTensor? FloatVector(string name) =>
            m.TryGetTensor(name) is { Dims.Count: 1 } t && IsFloat(t) ? t : null;

        private static bool IsFloat(OnnxTensor t) =>
            t.ElementType is OnnxElementType.Float or OnnxElementType.Float16 or OnnxElementType.BFloat16 or OnnxElementType.Double;

        private static string Other(OnnxNode binary, string value) =>
            binary.Inputs.Count == 2 ? (binary.Inputs[0] == value ? binary.Inputs[1] : binary.Inputs[0]) : "";

        /// <summary>A binary node with one scalar constant operand: (the other operand, the constant).</summary>
        private (string Data, double Value)? DataAndScalar(OnnxNode node)
        {
            if (node.Inputs.Count != 2) return null;
            for (int i = 0; i < 2; i++)
                if (m.TryGetTensor(node.Inputs[i]) is { ElementCount: 1 } c && m.TryGetTensor(node.Inputs[1 - i]) is null)
                    return (node.Inputs[1 - i], c.ToFloats()[0]);
            return null;
        }

        /// <summary>MatMul(x, W[in,out]) (+ Add bias[out]), or Gemm(x, W, b); null when the node is not a Linear.</summary>
        private Linear? TryLinear(OnnxNode node)
        {
            if (_linears.TryGetValue(node, out var cached)) return cached;
            return _linears[node] = ReadLinear(node);
        }

        private readonly Dictionary<OnnxNode, Linear?> _linears = [];

        private Linear? ReadLinear(OnnxNode node)
        {
            if (node.OpType == "MatMul" && node.Inputs.Count == 2 && FloatMatrix(node.Inputs[1]) is { } w)
            {
                int rows = checked((int)w.Dims[0]), cols = checked((int)w.Dims[1]);
                foreach (var add in m.Consumers(node.Outputs[0]))
                    if (add.OpType == "Add" && FloatVector(Other(add, node.Outputs[0])) is { } b && b.ElementCount == cols)
                        return new Linear(w.ToFloats(), b.ToFloats(), rows, cols, add.Outputs[0], node);
                return new Linear(w.ToFloats(), new float[cols], rows, cols, node.Outputs[0], node);
            }
            if (node.OpType == "Gemm" && node.Inputs.Count >= 2 && FloatMatrix(node.Inputs[1]) is { } g
                && node.GetInt("transA", 0) == 0 && Math.Abs(node.GetFloat("alpha", 1) - 1) < 1e-6)
            {
                bool transB = node.GetInt("transB", 0) != 0;
                int rows = checked((int)g.Dims[transB ? 1 : 0]), cols = checked((int)g.Dims[transB ? 0 : 1]);
                var data = g.ToFloats();
                var wt = transB ? Transpose(data, cols, rows) : data;
                var bias = node.Inputs.Count > 2 && FloatVector(node.Inputs[2]) is { } gb && gb.ElementCount == cols
                    ? Scale(gb.ToFloats(), node.GetFloat("beta", 1)) : new float[cols];
                return new Linear(wt, bias, rows, cols, node.Outputs[0], node);
            }
            return null;
        }

        private static float[] Transpose(float[] a, int rows, int cols)
        {
            var t = new float[a.Length];
            for (int i = 0; i < rows; i++)
                for (int j = 0; j < cols; j++) t[j * rows + i] = a[i * cols + j];
            return t;
        }

        private static float[] Scale(float[] a, float s)
        {
            if (s != 1) for (int i = 0; i < a.Length; i++) a[i] *= s;
            return a;
        }

        /// <summary>Breadth-first search forward from <paramref name="value"/> for the first node matching.</summary>
        private OnnxNode? FindForward(string value, Func<OnnxNode, bool> match, int maxDepth) =>
            FindForward([value], match, maxDepth);

        /// <summary>Breadth-first search forward from several values at once.</summary>
        private OnnxNode? FindForward(IEnumerable<string> values, Func<OnnxNode, bool> match, int maxDepth)
        {
            var seen = new HashSet<OnnxNode>();
            var frontier = values.ToList();
            for (int depth = 0; depth < maxDepth && frontier.Count > 0; depth++)
            {
                var next = new List<string>();
                foreach (var v in frontier)
                    foreach (var n in m.Consumers(v))
                    {
                        if (!seen.Add(n)) continue;
                        if (match(n)) return n;
                        next.AddRange(n.Outputs);
                    }
                frontier = next;
            }
            return null;
        }

        private Linear? FindLinearForward(string value, int maxDepth) =>
            FindForward(value, n => TryLinear(n) is not null, maxDepth) is { } node ? TryLinear(node) : null;

        /// <summary>Whether some MatMul produces <paramref name="value"/> within a few steps backward.</summary>
        private bool ReachesMatMul(string value, int depth)
        {
            if (depth < 0) return false;
            var p = m.Producer(value);
            if (p is null) return false;
            if (p.OpType == "MatMul") return true;
            return p.Inputs.Where(i => i.Length > 0).Any(i => ReachesMatMul(i, depth - 1));
        }

        /// <summary>(1 − mask)·value: the constant of the Mul producing the mask term.</summary>
        private float ReadMaskValue(string mask, string where)
        {
            var p = m.Producer(mask);
            for (int guard = 0; guard < 4 && p is not null && p.OpType is "Cast" or "Identity" or "Expand"; guard++)
                p = m.Producer(p.Inputs[0]);
            if (p?.OpType == "Mul" && DataAndScalar(p) is { } ds) return (float)ds.Value;
            throw Fail($"{where}: cannot read the attention mask's additive value (expected (1 − mask)·constant)");
        }

        /// <summary>
        /// Walks back from an input of an attention MatMul through Reshape/Transpose (and constant scaling) to
        /// one of the layer's projections; also returns the Reshape met and any scale applied on the way.
        /// </summary>
        private (Linear Linear, OnnxNode? Reshape, double Scale) LinearFromPath(string value, List<Linear> linears, string where, string role)
        {
            OnnxNode? reshape = null;
            double scale = 1;
            for (int guard = 0; guard < 12; guard++)
            {
                var hit = linears.FirstOrDefault(l => l.Output == value);
                if (hit is not null) return (hit, reshape, scale);
                var p = m.Producer(value);
                if (p is null) break;
                switch (p.OpType)
                {
                    case "Reshape": reshape ??= p; value = p.Inputs[0]; break;
                    case "Transpose" or "Identity" or "Squeeze" or "Unsqueeze" or "Cast": value = p.Inputs[0]; break;
                    case "Div" or "Mul" when DataAndScalar(p) is { } ds:
                        scale *= p.OpType == "Div" ? 1.0 / ds.Value : ds.Value;
                        value = ds.Data;
                        break;
                    default: throw Fail($"{where}: the {role} path meets {p.OpType} '{p.Name}' before a projection");
                }
            }
            throw Fail($"{where}: the {role} input of attention does not come from a projection of the layer input");
        }

        /// <summary>The last two entries of a Reshape's target shape (heads, head size), from a constant or a Concat of constants.</summary>
        private (int Heads, int HeadSize)? ReshapeTail(OnnxNode reshape)
        {
            if (reshape.Inputs.Count < 2) return null;
            if (m.TryGetTensor(reshape.Inputs[1]) is { } c)
            {
                var v = c.ToInt64s();
                return v.Length == 4 ? ((int)v[2], (int)v[3]) : null;
            }
            var concat = m.Producer(reshape.Inputs[1]);
            if (concat?.OpType != "Concat" || concat.Inputs.Count < 2) return null;
            var tail = new List<long>();
            foreach (var input in concat.Inputs)
                tail.AddRange(m.TryGetTensor(input)?.ToInt64s() ?? [-1]);
            return tail.Count == 4 ? ((int)tail[2], (int)tail[3]) : null;
        }

        /// <summary>A LayerNorm reading <paramref name="x"/>: fused LayerNormalization or the decomposed torch form.</summary>
        private Norm ParseLayerNorm(string x, string where)
        {
            var consumers = m.Consumers(x);
            if (consumers.FirstOrDefault(n => n.OpType == "LayerNormalization") is { } fused)
            {
                var g = FloatVector(fused.Inputs[1]) ?? throw Fail($"{where}: LayerNormalization without a constant scale");
                var b = fused.Inputs.Count > 2 && FloatVector(fused.Inputs[2]) is { } bb ? bb.ToFloats() : new float[g.ElementCount];
                return new Norm(g.ToFloats(), b, fused.GetFloat("epsilon", 1e-5f), fused.Outputs[0]);
            }
            var what = $"{where}: no LayerNorm (ReduceMean, Sub, Pow, ReduceMean, Add ε, Sqrt, Div, Mul γ, Add β)";
            var mean = consumers.FirstOrDefault(n => n.OpType == "ReduceMean") ?? throw Fail(what);
            var sub = consumers.FirstOrDefault(n => n.OpType == "Sub" && n.Inputs[0] == x && n.Inputs[1] == mean.Outputs[0]) ?? throw Fail(what);
            var centered = sub.Outputs[0];
            var square = m.Consumers(centered).FirstOrDefault(n => n.OpType == "Pow" || (n.OpType == "Mul" && n.Inputs[0] == centered && n.Inputs[1] == centered))
                         ?? throw Fail(what);
            var variance = m.Consumers(square.Outputs[0]).FirstOrDefault(n => n.OpType == "ReduceMean") ?? throw Fail(what);
            var addEps = m.Consumers(variance.Outputs[0]).FirstOrDefault(n => n.OpType == "Add") ?? throw Fail(what);
            var eps = DataAndScalar(addEps) ?? throw Fail($"{where}: LayerNorm ε is not a constant");
            var sqrt = m.Consumers(addEps.Outputs[0]).FirstOrDefault(n => n.OpType == "Sqrt") ?? throw Fail(what);
            var div = m.Consumers(sqrt.Outputs[0]).FirstOrDefault(n => n.OpType == "Div" && n.Inputs[0] == centered) ?? throw Fail(what);
            var mul = m.Consumers(div.Outputs[0]).FirstOrDefault(n => n.OpType == "Mul" && FloatVector(Other(n, div.Outputs[0])) is not null)
                      ?? throw Fail($"{where}: LayerNorm without a constant γ");
            var gamma = FloatVector(Other(mul, div.Outputs[0]))!.ToFloats();
            var addBeta = m.Consumers(mul.Outputs[0]).FirstOrDefault(n => n.OpType == "Add" && FloatVector(Other(n, mul.Outputs[0])) is not null);
            var beta = addBeta is null ? new float[gamma.Length] : FloatVector(Other(addBeta, mul.Outputs[0]))!.ToFloats();
            if (beta.Length != gamma.Length) throw Fail($"{where}: LayerNorm γ has {gamma.Length} values, β {beta.Length}");
            return new Norm(gamma, beta, (float)eps.Value, addBeta?.Outputs[0] ?? mul.Outputs[0]);
        }

        /// <summary>The activation between the FFN projections and the FFN output projection.</summary>
        private (ActivationKind Kind, Linear Down) ParseActivation(string up, string where)
        {
            var ops = new List<OnnxNode>();
            var downNode = FindForward(up, n =>
            {
                if (TryLinear(n) is not null) return true;
                ops.Add(n);
                return false;
            }, 10) ?? throw Fail($"{where}: no FFN output projection after the activation");
            var down = TryLinear(downNode)!;
            if (ops.FirstOrDefault(n => n.OpType == "Erf") is { } erf)
            {
                // erf(x/√2): Div by √2 or Mul by 1/√2.
                var p = m.Producer(erf.Inputs[0]);
                var ds = p is null ? null : DataAndScalar(p);
                double k = p?.OpType == "Div" && ds is { } a ? 1 / a.Value : p?.OpType == "Mul" && ds is { } b ? b.Value : double.NaN;
                if (!(Math.Abs(k - 1 / Math.Sqrt(2)) < 1e-4)) throw Fail($"{where}: Erf input is not x/√2");
                return (ActivationKind.GeluErf, down);
            }
            if (ops.Any(n => n.OpType == "Tanh") && ops.Any(n => n.OpType is "Pow" or "Mul")) return (ActivationKind.GeluTanh, down);
            if (ops.Any(n => n.OpType == "Gelu")) return (ActivationKind.GeluErf, down);
            throw Fail($"{where}: unrecognized FFN activation ({string.Join(", ", ops.Select(o => o.OpType).Distinct())})");
        }

        /// <summary>Gather(h, 0, axis 1) → Gemm/MatMul+Add → Tanh: the BERT pooler; null when absent.</summary>
        private PoolerWeights? ParsePooler(string h, int d)
        {
            var first = m.Consumers(h).FirstOrDefault(n => n.OpType == "Gather" && n.GetInt("axis", 0) == 1
                                                          && m.TryGetTensor(n.Inputs[1]) is { ElementCount: 1 } i && i.ToInt64s()[0] == 0);
            if (first is null) return null;
            var linear = m.Consumers(first.Outputs[0]).Select(TryLinear).OfType<Linear>().FirstOrDefault();
            if (linear is null || linear.In != d || linear.Out != d) return null;
            if (!m.Consumers(linear.Output).Any(n => n.OpType == "Tanh")) return null;
            return new PoolerWeights { W = linear.W, B = linear.B };
        }
    }
}
