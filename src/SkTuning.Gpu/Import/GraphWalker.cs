using SkTuning.Gpu.Onnx;

namespace SkTuning.Gpu.Import;

/// <summary>A ParsedLinear read from the graph: W stored [in, out], B [out] (zeros when the graph has none, see <see cref="HasBias"/>).</summary>
/// <param name="W">The weight, [In, Out] row-major.</param>
/// <param name="B">The bias [Out].</param>
/// <param name="HasBias">Whether the graph adds a bias.</param>
/// <param name="In">Input width.</param>
/// <param name="Out">Output width.</param>
/// <param name="Output">The graph value holding the result (after the bias).</param>
/// <param name="Node">The MatMul/Gemm node.</param>
internal sealed record ParsedLinear(float[] W, float[] B, bool HasBias, int In, int Out, string Output, OnnxNode Node);

/// <summary>A normalization read from the graph.</summary>
/// <param name="Kind">LayerNorm or RMSNorm.</param>
/// <param name="Gamma">γ [d].</param>
/// <param name="Beta">β [d] (zeros for a LayerNorm without β; empty for RMSNorm).</param>
/// <param name="Epsilon">ε.</param>
/// <param name="Output">The normalized value.</param>
internal sealed record ParsedNorm(NormKind Kind, float[] Gamma, float[] Beta, float Epsilon, string Output);

/// <summary>The attention core of one layer.</summary>
/// <remarks><see cref="RotaryDim"/>: the dimensions per head the rotary embedding turns (the head size unless the graph
/// slices a partial rotary part off, Phi's q_rot / q_pass); null without rotary embedding. <see cref="AlibiSlopes"/>: the
/// per-head ALiBi slopes added to its scores (BLOOM), or null.</remarks>
internal sealed record ParsedAttention(
    ParsedLinear Q, ParsedLinear K, ParsedLinear V, int Heads, int KvHeads, int HeadSize, float? MaskValue, string? MaskOperand,
    bool CausalWhere, OnnxNode Softmax, OnnxNode Context, (string Cos, string Sin)? Rope, int? RotaryDim, IReadOnlyList<string> PastInputs,
    float[]? AlibiSlopes);

/// <summary>The feed-forward block of one layer.</summary>
internal sealed record ParsedFfn(ActivationKind Activation, ParsedLinear? Gate, ParsedLinear Up, ParsedLinear Down);

/// <summary>
/// The family-independent part of reading a transformer out of an ONNX graph: constants, Linears (MatMul with a 2-D
/// weight + optional Add of a bias, or Gemm), norms (LayerNorm fused or decomposed, RMSNorm as torch spells it), the
/// attention core (Q·Kᵀ, scale, mask, Softmax, ·V, with rotary embeddings, grouped KV heads and past-key concatenation
/// on the way), the FFN activations, and forward/backward search. The importers describe the layer order of their
/// family on top of it. Every refusal is a one-line <see cref="SkTuningException"/> "&lt;file&gt;: unsupported graph: …".
/// </summary>
internal sealed class GraphWalker(OnnxModel m)
{
    private readonly Dictionary<OnnxNode, ParsedLinear?> _linears = [];

    /// <summary>The model walked.</summary>
    public OnnxModel Model => m;

    /// <summary>Names of the graph inputs the caller feeds.</summary>
    public HashSet<string> GraphInputs { get; } = m.Inputs.Select(i => i.Name).ToHashSet(StringComparer.Ordinal);

    /// <summary>The refusal for <paramref name="problem"/>.</summary>
    public SkTuningException Fail(string problem) => new($"{m.FilePath}: unsupported graph: {problem}");

    /// <summary>The refusal for <paramref name="problem"/>, naming the node responsible.</summary>
    public SkTuningException Fail(string problem, OnnxNode node) =>
        new($"{m.FilePath}: unsupported graph: {problem} (node '{(node.Name.Length > 0 ? node.Name : $"#{node.Index} {node.OpType}")}')");

    // ---------------------------------------------------------------- constants

    /// <summary>A 2-D float constant, or null.</summary>
    public OnnxTensor? FloatMatrix(string name) => m.TryGetTensor(name) is { Dims.Count: 2 } t && IsFloat(t) ? t : null;

    /// <summary>A 1-D float constant, or null.</summary>
    public OnnxTensor? FloatVector(string name) => m.TryGetTensor(name) is { Dims.Count: 1 } t && IsFloat(t) ? t : null;

    /// <summary>Whether the tensor holds floating-point values.</summary>
    public static bool IsFloat(OnnxTensor t) =>
        t.ElementType is OnnxElementType.Float or OnnxElementType.Float16 or OnnxElementType.BFloat16 or OnnxElementType.Double;

    /// <summary>The operand of a binary node that is not <paramref name="value"/>.</summary>
    public static string Other(OnnxNode binary, string value) =>
        binary.Inputs.Count == 2 ? (binary.Inputs[0] == value ? binary.Inputs[1] : binary.Inputs[0]) : "";

    /// <summary>A scalar (one-element) constant's value, or null.</summary>
    public double? Scalar(string name) => m.TryGetTensor(name) is { ElementCount: 1 } c ? c.ToFloats()[0] : null;

    /// <summary>A binary node with one scalar constant operand: (the other operand, the constant).</summary>
    public (string Data, double Value)? DataAndScalar(OnnxNode node)
    {
        if (node.Inputs.Count != 2) return null;
        for (int i = 0; i < 2; i++)
            if (Scalar(node.Inputs[i]) is { } c && m.TryGetTensor(node.Inputs[1 - i]) is null)
                return (node.Inputs[1 - i], c);
        return null;
    }

    // ---------------------------------------------------------------- value identity through no-op casts

    /// <summary>
    /// Torch exports spell <c>h.to(float32)</c> of a float32 tensor as a Cast, and later nodes may read either name
    /// (LLaMA's residual reads the norm's Cast): the value with Casts and Identities peeled off backward.
    /// </summary>
    public string Source(string value)
    {
        for (int guard = 0; guard < 8 && m.Producer(value) is { OpType: "Cast" or "Identity" } p; guard++) value = p.Inputs[0];
        return value;
    }

    /// <summary>Whether two names hold the same value up to Casts/Identities.</summary>
    public bool Same(string a, string b) => Source(a) == Source(b);

    /// <summary>The consumers of <paramref name="value"/> and of the Casts/Identities of it (not the Casts themselves).</summary>
    public List<OnnxNode> ConsumersThrough(string value)
    {
        var result = new List<OnnxNode>();
        var frontier = new List<string> { value };
        for (int guard = 0; guard < 4 && frontier.Count > 0; guard++)
        {
            var next = new List<string>();
            foreach (var v in frontier)
                foreach (var c in m.Consumers(v))
                    if (c.OpType is "Cast" or "Identity") next.Add(c.Outputs[0]);
                    else result.Add(c);
            frontier = next;
        }
        return result;
    }

    // ---------------------------------------------------------------- linears

    /// <summary>MatMul(x, W[in,out]) (+ Add bias[out]), or Gemm(x, W, b); null when the node is not a ParsedLinear.</summary>
    public ParsedLinear? TryLinear(OnnxNode node)
    {
        if (_linears.TryGetValue(node, out var cached)) return cached;
        return _linears[node] = ReadLinear(node);
    }

    private ParsedLinear? ReadLinear(OnnxNode node)
    {
        if (node.OpType == "MatMul" && node.Inputs.Count == 2 && FloatMatrix(node.Inputs[1]) is { } w)
        {
            int rows = checked((int)w.Dims[0]), cols = checked((int)w.Dims[1]);
            foreach (var add in m.Consumers(node.Outputs[0]))
                if (add.OpType == "Add" && FloatVector(Other(add, node.Outputs[0])) is { } b && b.ElementCount == cols)
                    return new ParsedLinear(w.ToFloats(), b.ToFloats(), true, rows, cols, add.Outputs[0], node);
            return new ParsedLinear(w.ToFloats(), new float[cols], false, rows, cols, node.Outputs[0], node);
        }
        if (node.OpType == "Gemm" && node.Inputs.Count >= 2 && FloatMatrix(node.Inputs[1]) is { } g
            && node.GetInt("transA", 0) == 0 && Math.Abs(node.GetFloat("alpha", 1) - 1) < 1e-6)
        {
            bool transB = node.GetInt("transB", 0) != 0;
            int rows = checked((int)g.Dims[transB ? 1 : 0]), cols = checked((int)g.Dims[transB ? 0 : 1]);
            var data = g.ToFloats();
            var wt = transB ? Transpose(data, cols, rows) : data;
            bool hasBias = node.Inputs.Count > 2 && FloatVector(node.Inputs[2]) is { } gb && gb.ElementCount == cols;
            var bias = hasBias ? Scale(FloatVector(node.Inputs[2])!.ToFloats(), node.GetFloat("beta", 1)) : new float[cols];
            // GPT-2's Conv1D is addmm on x.view(-1, d): Gemm between two Reshapes; the 3-D result is the Linear's output.
            var output = m.Consumers(node.Outputs[0]) is [{ OpType: "Reshape" } back] ? back.Outputs[0] : node.Outputs[0];
            return new ParsedLinear(wt, bias, hasBias, rows, cols, output, node);
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

    /// <summary>The Linears reading <paramref name="x"/>, directly, through Casts, or through the Reshape to 2-D before a Gemm.</summary>
    public List<ParsedLinear> LinearsReading(string x)
    {
        var result = new List<ParsedLinear>();
        foreach (var c in ConsumersThrough(x))
        {
            if (TryLinear(c) is { } l) result.Add(l);
            else if (c.OpType is "Reshape" or "Flatten" && c.Inputs[0] == x)
                result.AddRange(m.Consumers(c.Outputs[0]).Select(TryLinear).OfType<ParsedLinear>());
        }
        return result.Distinct().ToList();
    }

    /// <summary>
    /// The projections reading <paramref name="x"/>, fused ones cut into their parts: a Linear [d, 3·w] whose output is
    /// Split in three (GPT-2's c_attn) becomes three column slices whose outputs are the Split outputs; one whose output
    /// is viewed with a head axis that Slices/Gathers cut (Falcon's query_key_value) becomes one column selection per cut
    /// (see <see cref="HeadAxisCuts"/>). Which part is the query, key or value — and which Linear is not attention at
    /// all (a parallel block's FFN input) — is left to <see cref="ParseAttention"/>. Empty when nothing reads x.
    /// </summary>
    public List<ParsedLinear> Projections(string x, int d, string where)
    {
        var result = new List<ParsedLinear>();
        foreach (var l in LinearsReading(x))
        {
            if (l.In != d) throw Fail($"{where}: projection '{l.Node.Inputs[1]}' has {l.In} inputs, hidden size is {d}", l.Node);
            result.AddRange(SplitInThree(l, where) ?? HeadAxisCuts(l, where) ?? [l]);
        }
        return result;
    }

    /// <summary>GPT-2's c_attn: the fused output Split into three equal parts; null when no Split reads it.</summary>
    private List<ParsedLinear>? SplitInThree(ParsedLinear fused, string where)
    {
        var split = m.Consumers(fused.Output).FirstOrDefault(n => n.OpType == "Split");
        if (split is null) return null;
        if (split.Outputs.Count != 3 || fused.Out % 3 != 0)
            throw Fail($"{where}: the fused projection is split into {split.Outputs.Count} parts, expected query, key and value", split);
        var sizes = split.Inputs.Count > 1 && m.TryGetTensor(split.Inputs[1]) is { } s ? s.ToInt64s() : split.GetInts("split")?.ToArray();
        int w = fused.Out / 3;
        if (sizes is not null && sizes.Any(v => v != w))
            throw Fail($"{where}: the fused projection splits into [{string.Join(", ", sizes)}], expected three parts of {w}", split);
        return Enumerable.Range(0, 3).Select(i => Columns(fused, Enumerable.Range(i * w, w).ToArray(), split.Outputs[i])).ToList();
    }

    /// <summary>
    /// Falcon's query_key_value: the fused output viewed as [batch, seq, …, head size] (multi-query [h + 2, hd]; the new
    /// decoder architecture [groups, heads/group + 2, hd]; classic [h, 3, hd]) and cut on one axis of that view by Slices
    /// (q = [:-2]) and Gathers (k = [-2], v = [-1]). Each cut is the columns it keeps, in the order its result holds them
    /// (row-major over the view), so a new-architecture query comes out group-major — query head g·(h/groups) + j reads
    /// KV group g, as the engine's grouped heads do. Null when the output is not read that way.
    /// </summary>
    private List<ParsedLinear>? HeadAxisCuts(ParsedLinear fused, string where)
    {
        if (ConsumersThrough(fused.Output).Where(n => n.OpType != "Shape").ToList() is not [{ OpType: "Reshape" } view]) return null;
        var cuts = m.Consumers(view.Outputs[0]).Where(n => n.OpType != "Shape").ToList();
        if (cuts.Count < 2 || cuts.Any(n => n.OpType is not ("Slice" or "Gather"))) return null;
        // The view's shape after batch and sequence; one unknown entry (−1 or computed) is what the width leaves.
        var dims = ReshapeDims(view);
        if (dims is null || dims.Length < 4) throw Fail($"{where}: cannot read the shape the fused projection is viewed as", view);
        var tail = dims.Skip(2).Select(v => v is > 0 ? (int)v.Value : -1).ToArray();
        long known = tail.Where(v => v > 0).Aggregate(1L, (a, b) => a * b);
        if (tail.Count(v => v < 0) > 1 || fused.Out % known != 0 || (tail.All(v => v > 0) && known != fused.Out))
            throw Fail($"{where}: the fused projection of width {fused.Out} is viewed as [{string.Join(", ", tail)}]", view);
        for (int i = 0; i < tail.Length; i++) if (tail[i] < 0) tail[i] = (int)(fused.Out / known);
        var parts = new List<ParsedLinear>();
        foreach (var cut in cuts)
        {
            int axis = cut.OpType == "Gather" ? (int)cut.GetInt("axis", 0) : SliceAxis(cut, where);
            if (axis < 0) axis += dims.Length;
            int t = axis - 2;
            if (t < 0 || t >= tail.Length) throw Fail($"{where}: the fused projection is cut on axis {axis}, not a head axis", cut);
            var kept = cut.OpType == "Gather" ? GatherIndices(cut, tail[t], where) : SliceRange(cut, tail[t], where);
            parts.Add(Columns(fused, CutColumns(tail, t, kept), cut.Outputs[0]));
        }
        return parts;
    }

    /// <summary>Flat column indices (row-major over <paramref name="shape"/>) of the entries whose index on <paramref name="axis"/> is in <paramref name="kept"/>.</summary>
    private static int[] CutColumns(int[] shape, int axis, int[] kept)
    {
        int inner = shape.Skip(axis + 1).Aggregate(1, (a, b) => a * b), outer = shape.Take(axis).Aggregate(1, (a, b) => a * b);
        var columns = new List<int>();
        for (int o = 0; o < outer; o++)
            foreach (var k in kept)
                for (int i = 0; i < inner; i++) columns.Add((o * shape[axis] + k) * inner + i);
        return columns.ToArray();
    }

    private long[] ConstantInts(string name, OnnxNode at, string where) =>
        m.TryGetTensor(name)?.ToInt64s() ?? throw Fail($"{where}: {at.OpType} with a computed operand '{name}' on the fused projection", at);

    /// <summary>The one axis a Slice (opset ≥ 10: starts, ends, axes, steps inputs) cuts.</summary>
    private int SliceAxis(OnnxNode slice, string where)
    {
        var axes = slice.Inputs.Count > 3 && slice.Inputs[3].Length > 0 ? ConstantInts(slice.Inputs[3], slice, where) : null;
        if (axes is not [var axis] || slice.Inputs.Count < 3) throw Fail($"{where}: a Slice of the fused projection that is not on one axis", slice);
        return (int)axis;
    }

    /// <summary>The indices a one-axis Slice keeps of an axis of <paramref name="size"/> (ONNX's clamping; step 1).</summary>
    private int[] SliceRange(OnnxNode slice, int size, string where)
    {
        var steps = slice.Inputs.Count > 4 && slice.Inputs[4].Length > 0 ? ConstantInts(slice.Inputs[4], slice, where) : [1];
        if (steps is not [1]) throw Fail($"{where}: a strided Slice of the fused projection", slice);
        long Clamp(long v) => Math.Clamp(v < 0 ? v + size : v, 0, size);
        long start = Clamp(ConstantInts(slice.Inputs[1], slice, where)[0]), end = Clamp(ConstantInts(slice.Inputs[2], slice, where)[0]);
        return Enumerable.Range((int)start, (int)Math.Max(0, end - start)).ToArray();
    }

    /// <summary>The constant indices a Gather takes of an axis of <paramref name="size"/> (negative ones from the end).</summary>
    private int[] GatherIndices(OnnxNode gather, int size, string where) =>
        ConstantInts(gather.Inputs[1], gather, where).Select(i => (int)(i < 0 ? i + size : i)).ToArray();

    /// <summary>The Linear restricted to <paramref name="columns"/> (in that order), its result named <paramref name="output"/>.</summary>
    private static ParsedLinear Columns(ParsedLinear l, int[] columns, string output)
    {
        int width = columns.Length;
        var w = new float[l.In * width];
        for (int r = 0; r < l.In; r++)
            for (int j = 0; j < width; j++) w[r * width + j] = l.W[r * l.Out + columns[j]];
        return new ParsedLinear(w, columns.Select(c => l.B[c]).ToArray(), l.HasBias, l.In, width, output, l.Node);
    }

    /// <summary>Breadth-first search forward from <paramref name="value"/> for the first node matching.</summary>
    public OnnxNode? FindForward(string value, Func<OnnxNode, bool> match, int maxDepth) => FindForward([value], match, maxDepth);

    /// <summary>Breadth-first search forward from several values at once.</summary>
    public OnnxNode? FindForward(IEnumerable<string> values, Func<OnnxNode, bool> match, int maxDepth)
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

    /// <summary>The first ParsedLinear forward of <paramref name="value"/>.</summary>
    public ParsedLinear? FindLinearForward(string value, int maxDepth) =>
        FindForward(value, n => TryLinear(n) is not null, maxDepth) is { } node ? TryLinear(node) : null;

    /// <summary>The nodes backward of <paramref name="value"/> within <paramref name="depth"/> steps (breadth first).</summary>
    public IEnumerable<OnnxNode> Backward(string value, int depth)
    {
        var seen = new HashSet<OnnxNode>();
        var frontier = new List<string> { value };
        for (int d = 0; d < depth && frontier.Count > 0; d++)
        {
            var next = new List<string>();
            foreach (var v in frontier)
                if (m.Producer(v) is { } p && seen.Add(p))
                {
                    yield return p;
                    next.AddRange(p.Inputs.Where(i => i.Length > 0));
                }
            frontier = next;
        }
    }

    /// <summary>The graph inputs <paramref name="value"/> is computed from, within <paramref name="depth"/> steps.</summary>
    public IEnumerable<string> InputsBehind(string value, int depth) =>
        (GraphInputs.Contains(value) ? [value] : Backward(value, depth).SelectMany(n => n.Inputs).Where(GraphInputs.Contains)).Distinct();

    /// <summary>Whether some MatMul produces <paramref name="value"/> within a few steps backward.</summary>
    public bool ReachesMatMul(string value, int depth) => Backward(value, depth + 1).Any(n => n.OpType == "MatMul");

    // ---------------------------------------------------------------- norms

    /// <summary>A norm reading <paramref name="x"/>; throws naming <paramref name="where"/> when there is none.</summary>
    public ParsedNorm ParseNorm(string x, string where) =>
        TryParseNorm(x, where) ?? throw Fail($"{where}: no LayerNorm or RMSNorm reading '{x}'");

    /// <summary>The first norm reading <paramref name="x"/> (see <see cref="NormsReading"/>), or null.</summary>
    public ParsedNorm? TryParseNorm(string x, string where) => NormsReading(x, where).FirstOrDefault();

    /// <summary>
    /// The norms reading <paramref name="x"/> (two in a parallel block with a norm per branch): fused
    /// LayerNormalization; decomposed LayerNorm (ReduceMean, Sub, Pow, ReduceMean, Add ε, Sqrt, Div, Mul γ, Add β); or
    /// RMSNorm as HF writes it (Pow 2, ReduceMean, Add ε, Sqrt, Div 1/· or Reciprocal, Mul x, Mul γ).
    /// </summary>
    public List<ParsedNorm> NormsReading(string x, string where)
    {
        var consumers = ConsumersThrough(x);
        var norms = new List<ParsedNorm>();
        foreach (var fused in consumers.Where(n => n.OpType == "LayerNormalization"))
        {
            var g = FloatVector(fused.Inputs[1]) ?? throw Fail($"{where}: LayerNormalization without a constant scale", fused);
            var b = fused.Inputs.Count > 2 && FloatVector(fused.Inputs[2]) is { } bb ? bb.ToFloats() : new float[g.ElementCount];
            norms.Add(new ParsedNorm(NormKind.LayerNorm, g.ToFloats(), b, fused.GetFloat("epsilon", 1e-5f), fused.Outputs[0]));
        }
        foreach (var mean in consumers.Where(n => n.OpType == "ReduceMean"))
            if (consumers.FirstOrDefault(n => n.OpType == "Sub" && Same(n.Inputs[0], x) && n.Inputs[1] == mean.Outputs[0]) is { } sub)
                norms.Add(ParseLayerNormTail(sub, where));
        if (norms.Count > 0) return norms; // a LayerNorm reading x: no squares of x to look at
        foreach (var square in consumers.Where(n => n.OpType == "Pow" && Scalar(n.Inputs[1]) == 2 || n.OpType == "Mul" && n.Inputs[0] == n.Inputs[1]))
            if (m.Consumers(square.Outputs[0]).FirstOrDefault(n => n.OpType == "ReduceMean") is { } meanSquare)
                norms.Add(ParseRmsTail(square.Inputs[0], meanSquare, where));
        return norms;
    }

    private ParsedNorm ParseLayerNormTail(OnnxNode sub, string where)
    {
        var what = $"{where}: LayerNorm is not (ReduceMean, Sub, Pow, ReduceMean, Add ε, Sqrt, Div, Mul γ, Add β)";
        var centered = sub.Outputs[0];
        var square = m.Consumers(centered).FirstOrDefault(n => n.OpType == "Pow" || (n.OpType == "Mul" && n.Inputs[0] == centered && n.Inputs[1] == centered))
                     ?? throw Fail(what, sub);
        var variance = m.Consumers(square.Outputs[0]).FirstOrDefault(n => n.OpType == "ReduceMean") ?? throw Fail(what, square);
        var addEps = m.Consumers(variance.Outputs[0]).FirstOrDefault(n => n.OpType == "Add") ?? throw Fail(what, variance);
        var eps = DataAndScalar(addEps) ?? throw Fail($"{where}: LayerNorm ε is not a constant", addEps);
        var sqrt = m.Consumers(addEps.Outputs[0]).FirstOrDefault(n => n.OpType == "Sqrt") ?? throw Fail(what, addEps);
        var div = m.Consumers(sqrt.Outputs[0]).FirstOrDefault(n => n.OpType == "Div" && n.Inputs[0] == centered) ?? throw Fail(what, sqrt);
        var (gamma, beta, output) = ReadAffine(div.Outputs[0], where, withBeta: true);
        return new ParsedNorm(NormKind.LayerNorm, gamma, beta, (float)eps.Value, output);
    }

    private ParsedNorm ParseRmsTail(string x, OnnxNode meanSquare, string where)
    {
        var what = $"{where}: RMSNorm is not (Pow 2, ReduceMean, Add ε, Sqrt, Div 1/·, Mul x, Mul γ)";
        var addEps = m.Consumers(meanSquare.Outputs[0]).FirstOrDefault(n => n.OpType == "Add") ?? throw Fail(what, meanSquare);
        var eps = DataAndScalar(addEps) ?? throw Fail($"{where}: RMSNorm ε is not a constant", addEps);
        var sqrt = m.Consumers(addEps.Outputs[0]).FirstOrDefault(n => n.OpType == "Sqrt") ?? throw Fail(what, addEps);
        string normalized;
        if (m.Consumers(sqrt.Outputs[0]).FirstOrDefault(n => n.OpType == "Div" && Same(n.Inputs[0], x)) is { } direct)
            normalized = direct.Outputs[0]; // x / sqrt(…)
        else
        {
            // torch.rsqrt is Div(1, Sqrt) (or Reciprocal), then x·rsqrt.
            var inv = m.Consumers(sqrt.Outputs[0]).FirstOrDefault(n => n.OpType == "Reciprocal" || n.OpType == "Div" && Scalar(n.Inputs[0]) == 1)
                      ?? throw Fail(what, sqrt);
            var mul = m.Consumers(inv.Outputs[0]).FirstOrDefault(n => n.OpType == "Mul" && Same(Other(n, inv.Outputs[0]), x)) ?? throw Fail(what, inv);
            normalized = mul.Outputs[0];
        }
        var (gamma, _, output) = ReadAffine(normalized, where, withBeta: false);
        return new ParsedNorm(NormKind.RmsNorm, gamma, [], (float)eps.Value, output);
    }

    /// <summary>The Mul γ (+ Add β) after a normalization, looking through Casts.</summary>
    private (float[] Gamma, float[] Beta, string Output) ReadAffine(string normalized, string where, bool withBeta)
    {
        var mul = ConsumersThrough(normalized).FirstOrDefault(n => n.OpType == "Mul" && n.Inputs.Any(i => FloatVector(i) is not null))
                  ?? throw Fail($"{where}: norm without a constant γ");
        var gammaName = mul.Inputs.First(i => FloatVector(i) is not null);
        var gamma = FloatVector(gammaName)!.ToFloats();
        if (!withBeta) return (gamma, [], mul.Outputs[0]);
        var addBeta = m.Consumers(mul.Outputs[0]).FirstOrDefault(n => n.OpType == "Add" && FloatVector(Other(n, mul.Outputs[0])) is not null);
        var beta = addBeta is null ? new float[gamma.Length] : FloatVector(Other(addBeta, mul.Outputs[0]))!.ToFloats();
        if (beta.Length != gamma.Length) throw Fail($"{where}: LayerNorm γ has {gamma.Length} values, β {beta.Length}", addBeta!);
        return (gamma, beta, addBeta?.Outputs[0] ?? mul.Outputs[0]);
    }

    // ---------------------------------------------------------------- attention

    /// <summary>
    /// Softmax(Q·Kᵀ·scale + mask)·V over the layer's three <paramref name="projections"/>: tells query, key and value
    /// apart by where they enter attention, reads heads and KV heads from the Reshape-to-heads shapes (or the √dh
    /// scale), the additive mask value (or masked_fill's), an ALiBi term added to the scores, and on the way rotary
    /// embeddings (rotate-half), repeat_kv Expands and Concats with past-key inputs.
    /// </summary>
    public ParsedAttention ParseAttention(List<ParsedLinear> projections, int d, string where)
    {
        if (projections.Count < 3)
            throw Fail($"{where}: expected 3 projections (query, key, value), found {projections.Count}",
                projections.Count > 0 ? projections[0].Node : m.Nodes[0]);
        var softmax = FindForward(projections.Select(l => l.Output), n => n.OpType == "Softmax", 32)
                      ?? throw Fail($"{where}: no Softmax after the query/key/value projections", projections[0].Node);
        double scale = 1;
        bool scaleKnown = true, causalWhere = false;
        float? maskValue = null;
        string? maskOperand = null;
        float[]? alibi = null;
        var scores = softmax.Inputs[0];
        OnnxNode? scoreMatMul = null;
        for (int guard = 0; guard < 12 && scoreMatMul is null; guard++)
        {
            var p = m.Producer(scores) ?? throw Fail($"{where}: the attention scores do not come from a MatMul", softmax);
            switch (p.OpType)
            {
                case "MatMul": scoreMatMul = p; break;
                case "Add":
                {
                    bool aScores = ReachesMatMul(p.Inputs[0], 4), bScores = ReachesMatMul(p.Inputs[1], 4);
                    if (aScores == bScores) throw Fail($"{where}: cannot tell the attention scores from the mask", p);
                    var operand = aScores ? p.Inputs[1] : p.Inputs[0];
                    if (TryReadAlibi(operand, where, p) is { } slopes)
                    {
                        if (alibi is not null) throw Fail($"{where}: two ALiBi terms on the attention scores", p);
                        alibi = slopes;
                    }
                    else
                    {
                        maskOperand ??= operand;
                        maskValue ??= ReadMaskValue(maskOperand, where, p);
                    }
                    scores = aScores ? p.Inputs[0] : p.Inputs[1];
                    break;
                }
                case "Where" when p.Inputs.Count == 3 && Scalar(p.Inputs[1]) is { } fill && ReachesMatMul(p.Inputs[2], 4):
                    // BLOOM: masked_fill(scores, padding | causal, finfo.min).
                    causalWhere = true;
                    maskValue ??= (float)fill;
                    maskOperand ??= p.Inputs[0];
                    scores = p.Inputs[2];
                    break;
                case "Where" when p.Inputs.Count == 3 && Scalar(p.Inputs[2]) is { } fill && ReachesMatMul(p.Inputs[1], 4):
                    // GPT-2: where(causal_mask, scores, finfo.min).
                    causalWhere = true;
                    maskValue ??= (float)fill;
                    scores = p.Inputs[1];
                    break;
                case "Div" or "Mul":
                {
                    if (DataAndScalar(p) is { } ds)
                    {
                        scale *= p.OpType == "Div" ? 1.0 / ds.Value : ds.Value;
                        scores = ds.Data;
                    }
                    else if (p.OpType == "Div" && IsSqrtOfShape(p.Inputs[1]))
                    {
                        // GPT-2 divides by torch.full([], v.size(-1) ** 0.5): √(head size) computed from a Shape.
                        scaleKnown = false;
                        scores = p.Inputs[0];
                    }
                    else throw Fail($"{where}: attention scaling has no constant", p);
                    break;
                }
                case "Cast" or "Identity" or "Dropout": scores = p.Inputs[0]; break;
                case "Reshape": scores = p.Inputs[0]; break; // BLOOM views [B·H, T, S] scores as [B, H, T, S]
                default: throw Fail($"{where}: unexpected {p.OpType} between Q·Kᵀ and Softmax", p);
            }
        }
        if (scoreMatMul is null) throw Fail($"{where}: the attention scores do not come from a MatMul", softmax);
        var past = new List<string>();
        var q = PathToProjection(scoreMatMul.Inputs[0], projections, where, "query", past);
        var k = PathToProjection(scoreMatMul.Inputs[1], projections, where, "key", past);
        scale *= q.Scale * k.Scale;
        var context = FindForward(softmax.Outputs[0], n => n.OpType == "MatMul", 4)
                      ?? throw Fail($"{where}: the attention probabilities are not multiplied by V", softmax);
        var v = PathToProjection(context.Inputs[1], projections, where, "value", past);
        if (q.Linear == k.Linear || q.Linear == v.Linear || k.Linear == v.Linear)
            throw Fail($"{where}: query, key and value are not three distinct projections", scoreMatMul);
        if (v.Rope is not null) throw Fail($"{where}: rotary embedding applied to the values", scoreMatMul);
        if ((q.Rope is null) != (k.Rope is null)) throw Fail($"{where}: rotary embedding on only one of query and key", scoreMatMul);
        if (q.RotaryDim != k.RotaryDim) throw Fail($"{where}: the query rotates {q.RotaryDim} dimensions per head, the key {k.RotaryDim}", scoreMatMul);

        // Heads: the Reshapes to [batch, seq, heads, headSize], else d / (1/scale²).
        int headSize, heads;
        if (q.Reshape is { } qs && ReshapeTail(qs) is { Heads: > 0, HeadSize: > 0 } s) (heads, headSize) = s;
        else
        {
            headSize = scaleKnown ? (int)Math.Round(1.0 / (scale * scale)) : 0;
            if (headSize <= 0 || q.Linear.Out % headSize != 0)
                throw Fail($"{where}: cannot read the number of heads (no Reshape shape, scale {scale:G6})", scoreMatMul);
            heads = q.Linear.Out / headSize;
        }
        if (heads * headSize != q.Linear.Out)
            throw Fail($"{where}: {heads} heads × {headSize} ≠ query width {q.Linear.Out}", q.Reshape ?? scoreMatMul);
        if (scaleKnown && Math.Abs(scale * Math.Sqrt(headSize) - 1) > 1e-3)
            throw Fail($"{where}: attention scale {scale:G6} is not 1/√{headSize}", scoreMatMul);
        int kvHeads = k.Linear.Out / headSize;
        if (kvHeads * headSize != k.Linear.Out || heads % kvHeads != 0 || v.Linear.Out != k.Linear.Out)
            throw Fail($"{where}: key/value widths {k.Linear.Out}/{v.Linear.Out} do not make KV heads of {headSize} for {heads} query heads", k.Linear.Node);
        if (k.Reshape is { } ks && ReshapeTail(ks) is { Heads: > 0 } kt && kt.Heads != kvHeads)
            throw Fail($"{where}: the key is reshaped to {kt.Heads} heads, its width {k.Linear.Out} says {kvHeads}", ks);
        if (alibi is not null && q.Rope is not null) throw Fail($"{where}: both ALiBi and rotary embeddings", scoreMatMul);
        return new ParsedAttention(q.Linear, k.Linear, v.Linear, heads, kvHeads, headSize, maskValue, maskOperand, causalWhere,
            softmax, context, q.Rope, q.Rope is null ? null : q.RotaryDim ?? headSize, past, alibi);
    }

    /// <summary>
    /// BLOOM's ALiBi term of the scores (build_alibi_tensor, times baddbmm's β): constant slopes [H] (or [H, 1]) times key
    /// positions computed from the attention mask by a CumSum, through Casts, Reshapes and scalar factors (folded into
    /// the slopes). Null when <paramref name="operand"/> has no CumSum behind it (then it is a mask).
    /// </summary>
    private float[]? TryReadAlibi(string operand, string where, OnnxNode add)
    {
        if (!Backward(operand, 16).Any(n => n.OpType == "CumSum")) return null;
        double scale = 1;
        var value = operand;
        for (int guard = 0; guard < 16; guard++)
        {
            var p = m.Producer(value) ?? throw Fail($"{where}: the ALiBi term of the attention scores has no constant slopes", add);
            switch (p.OpType)
            {
                case "Cast" or "Identity" or "Reshape" or "Expand" or "Unsqueeze" or "Squeeze": value = p.Inputs[0]; break;
                case "Mul" when DataAndScalar(p) is { } ds:
                    scale *= ds.Value;
                    value = ds.Data;
                    break;
                case "Mul" when p.Inputs.Select(m.TryGetTensor).FirstOrDefault(t => t is not null && IsFloat(t) && t.ElementCount > 1) is { } slopes:
                    if (!Backward(Other(p, p.Inputs.First(i => m.TryGetTensor(i) == slopes)), 8).Any(n => n.OpType == "CumSum"))
                        throw Fail($"{where}: the ALiBi slopes multiply something else than the positions counted from the mask", p);
                    return slopes.ToFloats().Select(v => (float)(v * scale)).ToArray();
                default: throw Fail($"{where}: the ALiBi term of the attention scores meets {p.OpType} before its slopes", p);
            }
        }
        throw Fail($"{where}: the ALiBi term of the attention scores has no constant slopes", add);
    }

    /// <summary>Whether <paramref name="value"/> is √ of something read from a Shape (GPT-2's head-size scale).</summary>
    private bool IsSqrtOfShape(string value)
    {
        // Backward from the divisor, stopping at Shape nodes (what they read is not part of the scalar's computation).
        var nodes = new List<OnnxNode>();
        var frontier = new Stack<string>([value]);
        while (frontier.Count > 0 && nodes.Count < 16)
            if (m.Producer(frontier.Pop()) is { } p && !nodes.Contains(p))
            {
                nodes.Add(p);
                if (p.OpType != "Shape") foreach (var i in p.Inputs.Where(i => i.Length > 0)) frontier.Push(i);
            }
        return nodes.Any(n => n.OpType == "Shape")
               && nodes.Any(n => n.OpType == "Sqrt" || n.OpType == "Pow" && Scalar(n.Inputs[1]) == 0.5)
               && nodes.All(n => n.OpType is "Shape" or "Gather" or "Slice" or "Squeeze" or "Unsqueeze" or "Cast" or "Sqrt" or "Pow"
                                     or "Add" or "ConstantOfShape" or "Constant" or "Identity");
    }

    /// <summary>
    /// The additive mask's large negative value: (1 − mask)·value (BERT, GPT-2), or the fill of a masked_fill
    /// (Where) with finfo.min (LLaMA's 4-D causal mask).
    /// </summary>
    private float ReadMaskValue(string mask, string where, OnnxNode add)
    {
        var p = m.Producer(mask);
        for (int guard = 0; guard < 4 && p is not null && p.OpType is "Cast" or "Identity" or "Expand"; guard++)
            p = m.Producer(p.Inputs[0]);
        if (p?.OpType == "Mul" && DataAndScalar(p) is { } ds) return (float)ds.Value;
        foreach (var n in Backward(mask, 12))
            if (n.OpType == "Where" && n.Inputs.Skip(1).Select(Scalar).FirstOrDefault(v => v <= -1000) is { } fill) return (float)fill;
        throw Fail($"{where}: cannot read the attention mask's additive value (expected (1 − mask)·constant or a masked_fill)", add);
    }

    /// <summary>RotaryDim: the width of the rotated part when the path splits one off (partial rotary); null otherwise.</summary>
    private sealed record ProjectionPath(ParsedLinear Linear, OnnxNode? Reshape, double Scale, (string Cos, string Sin)? Rope, int? RotaryDim);

    /// <summary>
    /// Walks back from an input of an attention MatMul to one of the layer's projections through Reshape/Transpose,
    /// constant scaling, rotary embedding (x·cos + rotate_half(x)·sin, on all of each head or on a sliced-off part:
    /// Concat(rope(x[…, :r]), x[…, r:])), repeat_kv (Unsqueeze, Expand, Reshape) and the Concat with a past-key input;
    /// returns the Reshape nearest the projection that no Expand follows (the one to heads: a Reshape after a broadcast
    /// counts repeated heads).
    /// </summary>
    private ProjectionPath PathToProjection(string value, List<ParsedLinear> linears, string where, string role, List<string> past)
    {
        OnnxNode? reshape = null;
        double scale = 1;
        (string, string)? rope = null;
        int? rotaryDim = null;
        for (int guard = 0; guard < 24; guard++)
        {
            if (linears.FirstOrDefault(l => l.Output == value) is { } hit) return new ProjectionPath(hit, reshape, scale, rope, rotaryDim);
            var p = m.Producer(value) ?? throw Fail($"{where}: the {role} input of attention does not come from a projection of the layer input");
            switch (p.OpType)
            {
                case "Reshape": reshape = p; value = p.Inputs[0]; break;
                case "Expand": reshape = null; value = p.Inputs[0]; break;
                case "Transpose" or "Identity" or "Squeeze" or "Unsqueeze" or "Cast": value = p.Inputs[0]; break;
                case "Concat" when TryPartialRope(p, where) is { } pr:
                    if (rope is not null) throw Fail($"{where}: two rotary embeddings on the {role} path", p);
                    (rope, rotaryDim, value) = ((pr.Cos, pr.Sin), pr.RotaryDim, pr.X);
                    break;
                case "Div" or "Mul" when DataAndScalar(p) is { } ds:
                    scale *= p.OpType == "Div" ? 1.0 / ds.Value : ds.Value;
                    value = ds.Data;
                    break;
                case "Add" when TryRope(p) is { } r:
                    if (rope is not null) throw Fail($"{where}: two rotary embeddings on the {role} path", p);
                    rope = (r.Cos, r.Sin);
                    value = r.X;
                    break;
                case "Concat" when p.Inputs.Count == 2 && p.Inputs.Count(GraphInputs.Contains) == 1:
                    // cat([past_key, key], dim=2): the cache is a graph input ("with past" exports).
                    past.Add(p.Inputs.First(GraphInputs.Contains));
                    value = p.Inputs.First(i => !GraphInputs.Contains(i));
                    break;
                case "ReduceMean" or "Pow" or "Sqrt" or "LayerNormalization" or "SimplifiedLayerNormalization" or "RMSNormalization":
                case "Mul" when p.Inputs.Any(i => FloatVector(i) is not null):
                    throw Fail($"{where}: a {role} norm (q/k normalization is not supported)", p);
                default: throw Fail($"{where}: the {role} path meets {p.OpType} before a projection", p);
            }
        }
        throw Fail($"{where}: the {role} input of attention does not come from a projection of the layer input");
    }

    /// <summary>
    /// Partial rotary (Phi): Concat(rope(Slice(x, :r)), Slice(x, r:)) on the last axis, the rotated part first; returns
    /// x, the cos/sin operands and r. Null when <paramref name="concat"/> is not that.
    /// </summary>
    private (string X, string Cos, string Sin, int RotaryDim)? TryPartialRope(OnnxNode concat, string where)
    {
        if (concat.Inputs.Count != 2 || m.Producer(concat.Inputs[0]) is not { OpType: "Add" } add || TryRope(add) is not { } r
            || m.Producer(r.X) is not { OpType: "Slice" } rotated || m.Producer(concat.Inputs[1]) is not { OpType: "Slice" } passed
            || rotated.Inputs[0] != passed.Inputs[0]) return null;
        long Bound(OnnxNode slice, int input) => slice.Inputs.Count > input && Scalar(slice.Inputs[input]) is { } v ? (long)v
            : throw Fail($"{where}: a partial rotary Slice with computed bounds", slice);
        long start = Bound(rotated, 1), end = Bound(rotated, 2), passStart = Bound(passed, 1);
        if (start != 0 || end <= 0 || passStart != end)
            throw Fail($"{where}: partial rotary over [{start}, {end}) with the pass-through part from {passStart}", concat);
        return (rotated.Inputs[0], r.Cos, r.Sin, (int)end);
    }

    /// <summary>
    /// HF's apply_rotary_pos_emb: Add(Mul(x, cos), Mul(Concat(Neg(Slice(x, half:)), Slice(x, :half)), sin)), operands in
    /// either order; null when <paramref name="add"/> is not that.
    /// </summary>
    private (string X, string Cos, string Sin)? TryRope(OnnxNode add)
    {
        if (add.Inputs.Count != 2) return null;
        for (int i = 0; i < 2; i++)
        {
            if (m.Producer(add.Inputs[i]) is not { OpType: "Mul" } direct || m.Producer(add.Inputs[1 - i]) is not { OpType: "Mul" } rotated) continue;
            foreach (var concatSide in rotated.Inputs)
            {
                if (m.Producer(concatSide) is not { OpType: "Concat", Inputs.Count: 2 } cat) continue;
                if (m.Producer(cat.Inputs[0]) is not { OpType: "Neg" } neg || m.Producer(neg.Inputs[0]) is not { OpType: "Slice" } s2
                    || m.Producer(cat.Inputs[1]) is not { OpType: "Slice" } s1 || s1.Inputs[0] != s2.Inputs[0]) continue;
                var x = s1.Inputs[0];
                if (!direct.Inputs.Contains(x)) continue;
                return (x, Other(direct, x), Other(rotated, concatSide));
            }
        }
        return null;
    }

    /// <summary>The last two entries of a Reshape's 4-D target shape (heads, head size); −1 where not constant.</summary>
    public (int Heads, int HeadSize)? ReshapeTail(OnnxNode reshape) =>
        ReshapeDims(reshape) is { Length: 4 } v ? ((int)(v[2] ?? -1), (int)(v[3] ?? -1)) : null;

    /// <summary>
    /// A Reshape's target shape, from a constant or a Concat of pieces: constant pieces give their values, any other
    /// piece (a size read from a Shape) one null entry. Null when the shape is neither.
    /// </summary>
    public long?[]? ReshapeDims(OnnxNode reshape)
    {
        if (reshape.Inputs.Count < 2) return null;
        if (m.TryGetTensor(reshape.Inputs[1]) is { } c) return c.ToInt64s().Select(v => (long?)v).ToArray();
        var concat = m.Producer(reshape.Inputs[1]);
        if (concat?.OpType != "Concat" || concat.Inputs.Count < 2) return null;
        var dims = new List<long?>();
        foreach (var input in concat.Inputs)
            if (m.TryGetTensor(input) is { } piece) dims.AddRange(piece.ToInt64s().Select(v => (long?)v));
            else dims.Add(null);
        return dims.ToArray();
    }

    /// <summary>
    /// RoPE θ and the rotary dimension from the cos/sin operands: either an inverse-frequency constant θ^(−2i/r)
    /// (computed from position_ids in the graph) or cos/sin caches [P, r] gathered by position_ids. θ is solved from
    /// the first non-trivial frequency (i = 1) and snapped to 3 significant digits when that is within 1e-4.
    /// Also returns the cache length (null when computed) and the graph inputs the positions come from.
    /// </summary>
    public (double Theta, int RotaryDim, int? CacheRows, IReadOnlyList<string> PositionInputs) ReadRope((string Cos, string Sin) rope, string where, OnnxNode at)
    {
        var behind = Backward(rope.Cos, 16).Concat(Backward(rope.Sin, 16)).ToList();
        var positions = InputsBehind(rope.Cos, 16).ToList();
        foreach (var n in behind)
            foreach (var input in n.Inputs)
                if (m.TryGetTensor(input) is { } t && IsFloat(t) && t.ElementCount >= 2 && t.Dims.Count(x => x > 1) == 1)
                {
                    var f = t.ToFloats();
                    if (f[0] != 1 || !(f[1] > 0 && f[1] < 1)) continue;
                    int r = 2 * f.Length;
                    return (Snap(Math.Pow(f[1], -r / 2.0)), r, null, positions);
                }
        var caches = behind.SelectMany(n => n.Inputs).Distinct()
            .Select(i => m.TryGetTensor(i)).OfType<OnnxTensor>()
            .Where(t => IsFloat(t) && t.Dims.Count >= 2 && t.Dims.Take(t.Dims.Count - 2).All(x => x == 1) && t.Dims[^2] > 1).ToList();
        var cos = caches.FirstOrDefault(t => t.ToFloats().Take((int)t.Dims[^1]).All(v => v == 1));
        var sin = caches.FirstOrDefault(t => t != cos && t.ToFloats().Take((int)t.Dims[^1]).All(v => v == 0));
        if (cos is null) throw Fail($"{where}: cannot read the rotary frequencies (no inverse-frequency constant or cos cache)", at);
        int dim = (int)cos.Dims[^1], rows = (int)cos.Dims[^2];
        var c = cos.ToFloats();
        // Position 1, frequency index 1: angle θ^(−2/r); atan2 with the sin cache keeps it exact where acos loses bits.
        double angle = sin is null ? Math.Acos(c[dim + 1]) : Math.Atan2(sin.ToFloats()[dim + 1], c[dim + 1]);
        return (Snap(Math.Pow(angle, -dim / 2.0)), dim, rows, positions);
    }

    private static double Snap(double theta)
    {
        var magnitude = Math.Pow(10, Math.Floor(Math.Log10(theta)) - 2);
        var snapped = Math.Round(theta / magnitude) * magnitude;
        return Math.Abs(snapped - theta) <= 1e-4 * theta ? snapped : theta;
    }

    /// <summary>Whether the graph builds a causal mask: Trilu, a comparison of Ranges, or a lower-triangular boolean constant.</summary>
    public bool HasCausalMask()
    {
        foreach (var n in m.Nodes)
        {
            if (n.OpType == "Trilu") return true;
            if (n.OpType is "Greater" or "Less" or "GreaterOrEqual" or "LessOrEqual"
                && n.Inputs.All(i => Backward(i, 4).Any(p => p.OpType == "Range"))) return true;
            if (n.OpType == "Where" && Backward(n.Inputs[0], 6).SelectMany(p => p.Inputs).Select(m.TryGetTensor)
                    .Any(t => t is { ElementType: OnnxElementType.Bool, Dims.Count: >= 2 } && IsLowerTriangular(t))) return true;
        }
        return false;
    }

    private static bool IsLowerTriangular(OnnxTensor t)
    {
        int rows = (int)t.Dims[^2], cols = (int)t.Dims[^1];
        var v = t.ToFloats();
        if (rows < 2 || v.Length != rows * cols) return false;
        for (int i = 0; i < rows; i++)
            for (int j = 0; j < cols; j++)
                if ((v[i * cols + j] != 0) != (j <= i)) return false;
        return true;
    }

    // ---------------------------------------------------------------- feed-forward

    /// <summary>
    /// The FFN reading <paramref name="x"/>: one Linear, GELU (erf or tanh form), Linear; or SwiGLU: gate and up
    /// Linears, silu(gate) ⊙ up, down ParsedLinear. Any other activation is refused naming its node.
    /// </summary>
    public ParsedFfn ParseFfn(string x, int d, string where) => ParseFfn(LinearsReading(x), d, where);

    /// <summary>The FFN whose input projections are <paramref name="ups"/> (a parallel block's, read from a norm attention shares).</summary>
    public ParsedFfn ParseFfn(List<ParsedLinear> ups, int d, string where)
    {
        if (ups.Count == 2)
        {
            var gate = ups.FirstOrDefault(l => ConsumersThrough(l.Output).Any(n => n.OpType == "Sigmoid"))
                       ?? throw Fail($"{where}: two FFN input projections but neither goes through SiLU", ups[0].Node);
            var up = ups.First(l => l != gate);
            var sigmoid = ConsumersThrough(gate.Output).First(n => n.OpType == "Sigmoid");
            var silu = ConsumersThrough(sigmoid.Outputs[0]).FirstOrDefault(n => n.OpType == "Mul" && Same(Other(n, sigmoid.Outputs[0]), gate.Output))
                       ?? throw Fail($"{where}: Sigmoid of the gate is not multiplied by the gate (not SiLU)", sigmoid);
            var product = ConsumersThrough(silu.Outputs[0]).FirstOrDefault(n => n.OpType == "Mul" && Same(Other(n, silu.Outputs[0]), up.Output))
                          ?? throw Fail($"{where}: silu(gate) is not multiplied by the up projection", silu);
            var down = FindLinearForward(product.Outputs[0], 3) ?? throw Fail($"{where}: no FFN down projection", product);
            if (up.Out != gate.Out || down.In != up.Out || down.Out != d)
                throw Fail($"{where}: SwiGLU projections are [{gate.In},{gate.Out}], [{up.In},{up.Out}], [{down.In},{down.Out}]", down.Node);
            return new ParsedFfn(ActivationKind.SwiGlu, gate, up, down);
        }
        if (ups.Count != 1) throw Fail($"{where}: expected one FFN input projection, found {ups.Count}", ups.Count > 0 ? ups[0].Node : m.Nodes[0]);
        var (kind, d2) = ParseActivation(ups[0].Output, where);
        if (d2.In != ups[0].Out || d2.Out != d) throw Fail($"{where}: FFN output projection is [{d2.In},{d2.Out}], expected [{ups[0].Out},{d}]", d2.Node);
        return new ParsedFfn(kind, null, ups[0], d2);
    }

    /// <summary>Shape bookkeeping torch emits around reshapes; not part of an activation.</summary>
    private static bool IsShapeOp(OnnxNode n) =>
        n.OpType is "Shape" or "Gather" or "Unsqueeze" or "Squeeze" or "Concat" or "Reshape" or "Slice" or "Cast" or "Identity"
            or "Constant" or "ConstantOfShape" or "Flatten";

    /// <summary>
    /// The GELU between the FFN projections: exact (Erf of x/√2, or Gelu) or the tanh approximation
    /// (0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))), or Gelu approximate="tanh"), checked by its constants.
    /// </summary>
    private (ActivationKind Kind, ParsedLinear Down) ParseActivation(string up, string where)
    {
        var downNode = FindForward(up, n => TryLinear(n) is not null, 12) ?? throw Fail($"{where}: no FFN output projection after the activation");
        var down = TryLinear(downNode)!;
        // Every node between the projections: backward from the down projection's input to the up projection's output
        // (not through Shape reads, which would lead out of the FFN).
        var ops = new List<OnnxNode>();
        var seen = new HashSet<OnnxNode>();
        var frontier = new Stack<string>([downNode.Inputs[0]]);
        while (frontier.Count > 0)
        {
            var v = frontier.Pop();
            if (Same(v, up) || m.Producer(v) is not { } p || !seen.Add(p)) continue;
            if (seen.Count > 64) throw Fail($"{where}: the FFN activation is not a short chain of elementwise ops", p);
            if (!IsShapeOp(p)) ops.Add(p);
            if (p.OpType != "Shape") foreach (var i in p.Inputs.Where(i => i.Length > 0)) frontier.Push(i);
        }
        ops.Reverse();
        if (ops.FirstOrDefault(n => n.OpType is not ("Mul" or "Add" or "Div" or "Pow" or "Erf" or "Tanh" or "Gelu")) is { } odd)
            throw Fail($"{where}: unknown FFN activation ({odd.OpType})", odd);
        if (ops.FirstOrDefault(n => n.OpType == "Gelu") is { } gelu)
        {
            var approximate = gelu.Attributes.TryGetValue("approximate", out var a) ? a.String : "none";
            return (approximate == "tanh" ? ActivationKind.GeluTanh : ActivationKind.GeluErf, down);
        }
        if (ops.FirstOrDefault(n => n.OpType == "Erf") is { } erf)
        {
            // erf(x/√2): Div by √2 or Mul by 1/√2.
            var p = m.Producer(erf.Inputs[0]);
            var ds = p is null ? null : DataAndScalar(p);
            double k = p?.OpType == "Div" && ds is { } x ? 1 / x.Value : p?.OpType == "Mul" && ds is { } y ? y.Value : double.NaN;
            if (!(Math.Abs(k - 1 / Math.Sqrt(2)) < 1e-4)) throw Fail($"{where}: Erf input is not x/√2", erf);
            return (ActivationKind.GeluErf, down);
        }
        if (ops.FirstOrDefault(n => n.OpType == "Tanh") is { } tanh)
        {
            var constants = ops.SelectMany(n => n.Inputs).Select(Scalar).OfType<double>().ToList();
            if (!constants.Any(c => Math.Abs(c - 0.044715) < 1e-6) || !constants.Any(c => Math.Abs(c - Math.Sqrt(2 / Math.PI)) < 1e-5))
                throw Fail($"{where}: a Tanh activation that is not GELU's tanh approximation (no 0.044715 and √(2/π))", tanh);
            return (ActivationKind.GeluTanh, down);
        }
        throw Fail($"{where}: unrecognized FFN activation ({string.Join(", ", ops.Select(o => o.OpType).Distinct())})",
            ops.FirstOrDefault() ?? downNode);
    }

    // ---------------------------------------------------------------- embeddings

    /// <summary>
    /// The LayerNorm right after the embeddings of a pre-norm decoder (BLOOM's word_embeddings_layernorm): a norm reading
    /// <paramref name="sum"/> whose output feeds both a residual Add and the first layer's norm. Null otherwise (a
    /// post-norm encoder's embedding norm feeds the first layer's projections).
    /// </summary>
    public ParsedNorm? EmbeddingNorm(string sum) =>
        TryParseNorm(sum, "embeddings") is { } norm && ConsumersThrough(norm.Output).Any(n => n.OpType == "Add")
        && TryParseNorm(norm.Output, "layer 0") is not null ? norm : null;

    /// <summary>The word-embedding Gather and the tables added to it (position, token type), and the sum.</summary>
    public (OnnxNode Word, OnnxNode? Position, OnnxNode? TokenType, string Sum) Embeddings()
    {
        var tables = m.Nodes.Where(n => n.OpType == "Gather" && n.GetInt("axis", 0) == 0 && n.Inputs.Count == 2
                                        && FloatMatrix(n.Inputs[0]) is not null).ToList();
        var byInput = tables.Where(n => GraphInputs.Contains(n.Inputs[1])).ToList();
        var word = byInput.FirstOrDefault(n => n.Inputs[1].Contains("input_ids", StringComparison.OrdinalIgnoreCase))
                   ?? byInput.OrderByDescending(n => FloatMatrix(n.Inputs[0])!.Dims[0]).FirstOrDefault()
                   ?? throw Fail("no embedding Gather (a Gather of a 2-D float table by a graph input such as input_ids)");
        long d = FloatMatrix(word.Inputs[0])!.Dims[1];
        OnnxNode? type = null, position = null;
        var sum = word.Outputs[0];
        while (m.Consumers(sum).FirstOrDefault(n => n.OpType == "Add") is { } add
               && m.Producer(Other(add, sum)) is { } other && tables.Contains(other))
        {
            if (FloatMatrix(other.Inputs[0])!.Dims[1] != d)
                throw Fail($"embedding table '{other.Inputs[0]}' has width {FloatMatrix(other.Inputs[0])!.Dims[1]}, the word table {d}", other);
            // A table indexed by a graph input is token types unless the input is the position ids (GPT-2 exports feed them);
            // one indexed by HF's zeros buffer (token_type_ids not an input) is token types too; otherwise positions.
            var index = other.Inputs[1];
            bool byGraphInput = GraphInputs.Contains(index);
            if (byGraphInput ? !index.Contains("position", StringComparison.OrdinalIgnoreCase) : IsZerosBuffer(index)) type ??= other;
            else position ??= other;
            sum = add.Outputs[0];
        }
        return (word, position, type, sum);
    }

    /// <summary>
    /// Whether an embedding index comes from a constant of zeros (HF's registered token_type_ids buffer, sliced to the
    /// sequence and expanded to the batch, used when token_type_ids is not an input).
    /// </summary>
    private bool IsZerosBuffer(string index) =>
        Backward(index, 6).SelectMany(n => n.Inputs).Select(m.TryGetTensor)
            .Any(t => t is { ElementCount: >= 2 } && !IsFloat(t) && t.ToInt64s().All(v => v == 0));

    /// <summary>
    /// RoBERTa's create_position_ids_from_input_ids computed in the graph: mask = Not(Equal(input_ids, padding_idx)),
    /// CumSum(mask)·mask + padding_idx (Casts and an added past length of 0 on the way). Returns padding_idx, or null
    /// when no CumSum computes the position index (BERT's 0..T−1 from a constant or a position_ids input).
    /// </summary>
    /// <exception cref="SkTuningException">A CumSum that is not this rule (the message says which part differs).</exception>
    public int? PositionPaddingId(OnnxNode positionGather, string inputIds)
    {
        var behind = Backward(positionGather.Inputs[1], 16).ToList();
        var cumsum = behind.FirstOrDefault(n => n.OpType == "CumSum");
        if (cumsum is null) return null;
        var equal = behind.FirstOrDefault(n => n.OpType == "Equal" && n.Inputs.Any(i => Same(i, inputIds)) && DataAndScalar(n) is not null)
                    ?? throw Fail("position ids are a CumSum, but not of input_ids ≠ a padding id (RoBERTa's rule)", cumsum);
        if (!behind.Any(n => n.OpType == "Not" && Same(n.Inputs[0], equal.Outputs[0])))
            throw Fail("position ids count the tokens equal to the padding id, not the others (no Not after the Equal)", equal);
        double pad = DataAndScalar(equal)!.Value.Value;
        // The offset: every scalar Add after the CumSum (padding_idx, and past_key_values_length = 0 where not folded).
        double offset = behind.TakeWhile(n => n != cumsum).Where(n => n.OpType == "Add").Select(DataAndScalar).Sum(ds => ds?.Value ?? double.NaN);
        if (pad != Math.Floor(pad) || pad < 0 || offset != pad)
            throw Fail($"position ids count from {offset}, not from the padding id {pad} (RoBERTa's rule is padding_idx + cumsum)", positionGather);
        return (int)pad;
    }
}
