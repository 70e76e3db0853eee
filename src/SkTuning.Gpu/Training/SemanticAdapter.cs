using SkTuning.Gpu.Engine;

namespace SkTuning.Gpu.Training;

/// <summary>What the adapter produces: prompt vectors prepended to the input, or per-layer attention prefixes.</summary>
public enum AdapterKind
{
    /// <summary>SK-Prompt: P ∈ R^{m×d} prepended after the embedding layer.</summary>
    Prompt,
    /// <summary>SK-Prefix: K_l, V_l ∈ R^{m×kvDim} for every layer, shared by the batch.</summary>
    Prefix,
}

/// <summary>How the adapter maps the semantic text's hidden states H ∈ R^{m×d} to its output.</summary>
public enum AdapterMode
{
    /// <summary>A linear map applied to each of the m rows (prefix: d → 2·L·d; prompt: d → d).</summary>
    Token,
    /// <summary>s = H·u + c ∈ R^m, then Linear(m → output size).</summary>
    Pooled,
    /// <summary>Prefix only: layer l's keys/values from the text's hidden states entering layer l (Figure 1a of the paper).</summary>
    PerLayer,
}

/// <summary>Sizes of an adapter.</summary>
/// <param name="Kind">Prompt or prefix.</param>
/// <param name="Mode">Token, pooled or per-layer.</param>
/// <param name="Tokens">m, the semantic text's length in tokens.</param>
/// <param name="Dim">d.</param>
/// <param name="Layers">L.</param>
/// <param name="KvDim">A prefix's key/value width per layer (KV heads × head size; 0 = d, as without grouped KV heads).</param>
public sealed record AdapterShape(AdapterKind Kind, AdapterMode Mode, int Tokens, int Dim, int Layers, int KvDim = 0)
{
    /// <summary>Output blocks of [m, Width]: 2·L for a prefix (K then V per layer), 1 for a prompt.</summary>
    public int Groups => Kind == AdapterKind.Prefix ? 2 * Layers : 1;

    /// <summary>Columns of one output block: kvDim for a prefix, d for a prompt.</summary>
    public int Width => Kind == AdapterKind.Prefix && KvDim > 0 ? KvDim : Dim;

    /// <summary>Output values: Groups·m·Width (prefix layout [L, 2, m, kvDim]).</summary>
    public int OutputLength => Groups * Tokens * Width;
}

/// <summary>
/// The SK-Tuning adapter: maps the frozen model's zero-shot hidden states of the semantic text (constants) to
/// prompt vectors or per-layer prefixes, with dropout in training. One instance serves the whole batch — the
/// prefix is computed once per step, not per example.
/// </summary>
public sealed class SemanticAdapter : IAdapter
{
    private readonly Backend _backend;
    private readonly DeviceArray<float>[] _sources;
    private readonly DeviceArray<float> _raw, _output, _dRaw, _pooled, _dPooled;
    private readonly AdapterInit _init;
    private readonly Import.ModelWeights? _model;
    private ulong _seed;
    private bool _training;

    /// <summary>Creates the adapter over the text's hidden states: one [m, d] source per group (token/pooled: all the same).</summary>
    /// <param name="backend">Where it runs.</param>
    /// <param name="shape">Its sizes.</param>
    /// <param name="sources">
    /// Token and pooled modes: one [m, d] matrix; per-layer mode: L matrices, what each layer's attention projects
    /// (<see cref="ModelProjections.AttentionInputs"/> of the states entering it).
    /// </param>
    /// <param name="dropout">Dropout probability on the output in training (0.1 in the paper's setting).</param>
    /// <param name="init">How the weights start (see <see cref="Initialize"/>).</param>
    /// <param name="model">The frozen weights, needed by <see cref="AdapterInit.Model"/>.</param>
    public SemanticAdapter(Backend backend, AdapterShape shape, IReadOnlyList<float[]> sources, float dropout = 0.1f,
        AdapterInit init = AdapterInit.Random, Import.ModelWeights? model = null)
    {
        if (init == AdapterInit.Model && shape.Kind == AdapterKind.Prefix && shape.Mode != AdapterMode.Pooled && model is null)
            throw new ArgumentNullException(nameof(model), "model init of a prefix needs the frozen weights");
        _init = init;
        _model = model;
        if (shape.Mode == AdapterMode.PerLayer && shape.Kind != AdapterKind.Prefix)
            throw new ArgumentException("per-layer mode is an SK-Prefix mode");
        int expected = shape.Mode == AdapterMode.PerLayer ? shape.Layers : 1;
        if (sources.Count != expected) throw new ArgumentException($"{shape.Mode} adapter needs {expected} source matrices, got {sources.Count}");
        foreach (var s in sources)
            if (s.Length != shape.Tokens * shape.Dim)
                throw new ArgumentException($"source states have {s.Length} values, expected m·d = {shape.Tokens}·{shape.Dim}");
        _backend = backend;
        Shape = shape;
        Dropout = dropout;
        _sources = sources.Select(s => backend.UploadNew(s)).ToArray();
        _raw = backend.Allocate(shape.OutputLength);
        _output = backend.Allocate(shape.OutputLength);
        _dRaw = backend.Allocate(shape.OutputLength);
        _pooled = backend.Allocate(shape.Tokens);
        _dPooled = backend.Allocate(shape.Tokens);
    }

    /// <summary>The adapter's sizes.</summary>
    public AdapterShape Shape { get; }

    /// <inheritdoc />
    public AdapterKind Kind => Shape.Kind;

    /// <inheritdoc />
    public int Tokens => Shape.Tokens;

    /// <inheritdoc />
    public int OutputLength => Shape.OutputLength;

    /// <summary>Dropout probability on the output in training.</summary>
    public float Dropout { get; }

    /// <summary>The trainable tensors, named for the saved adapter.</summary>
    public IEnumerable<(string Name, int[] Shape)> Tensors()
    {
        int m = Shape.Tokens, d = Shape.Dim;
        if (Shape.Mode == AdapterMode.Pooled)
        {
            yield return ("adapter.pool.weight", [d]);
            yield return ("adapter.pool.bias", [1]);
            yield return ("adapter.out.weight", [m, Shape.OutputLength]);
            yield return ("adapter.out.bias", [Shape.OutputLength]);
            yield break;
        }
        for (int g = 0; g < Shape.Groups; g++)
        {
            yield return (GroupName(g) + ".weight", [d, Shape.Width]);
            yield return (GroupName(g) + ".bias", [Shape.Width]);
        }
    }

    private string GroupName(int g) =>
        Shape.Kind == AdapterKind.Prompt ? "adapter" : $"adapter.layer{g / 2}.{(g % 2 == 0 ? "key" : "value")}";

    /// <summary>
    /// Initializes the tensors. <see cref="AdapterInit.Random"/>: torch's Linear default, U(−1/√fan_in, 1/√fan_in).
    /// <see cref="AdapterInit.Model"/> (token and per-layer modes): the frozen model's own maps, so training starts from
    /// the semantic text's real attention keys/values (prefix: layer l's W_k, W_v and biases,
    /// <see cref="ModelProjections.KeyValue"/>) or its own hidden states (prompt: identity) — as if the text itself were
    /// prepended.
    /// </summary>
    public void Initialize(TrainableParameters p, Random rng)
    {
        if (_init == AdapterInit.Model && Shape.Mode != AdapterMode.Pooled)
        {
            int d = Shape.Dim;
            for (int g = 0; g < Shape.Groups; g++)
            {
                float[] weight, bias;
                if (Shape.Kind == AdapterKind.Prompt)
                {
                    weight = new float[d * d];
                    for (int i = 0; i < d; i++) weight[i * d + i] = 1f;
                    bias = new float[d];
                }
                else
                {
                    var (wk, bk, wv, bv) = ModelProjections.KeyValue(_model!, g / 2);
                    (weight, bias) = g % 2 == 0 ? (wk, bk) : (wv, bv);
                }
                p.Set(p[GroupName(g) + ".weight"], weight);
                p.Set(p[GroupName(g) + ".bias"], bias);
            }
            return;
        }
        foreach (var (name, _) in Tensors())
        {
            var info = p[name];
            int fanIn = name switch
            {
                "adapter.pool.weight" or "adapter.pool.bias" => Shape.Dim,
                "adapter.out.weight" or "adapter.out.bias" => Shape.Tokens,
                _ => Shape.Dim,
            };
            p.Set(info, Init.Uniform(rng, info.Length, 1 / MathF.Sqrt(fanIn)));
        }
    }

    private DeviceView<float> Source(int g) => _sources[Shape.Mode == AdapterMode.PerLayer ? g / 2 : 0].All;

    /// <summary>Computes the prompt [m, d] or prefix [L, 2, m, kvDim]; the view stays valid until the next call.</summary>
    public DeviceView<float> Forward(TrainableParameters p, bool training, ulong seed)
    {
        int m = Shape.Tokens, d = Shape.Dim, w = Shape.Width, block = m * w;
        _training = training && Dropout > 0;
        _seed = seed;
        if (Shape.Mode != AdapterMode.Pooled)
        {
            // Every map of one source in one launch, its bias and the output dropout included.
            foreach (var (g0, count) in SourceGroups())
                _backend.GroupedLinearForward(Source(g0), Packed(p, p.Values, g0, count), _output.Slice(g0 * block, count * block), count, m, d, w,
                    _training ? Dropout : 0f, seed, (long)g0 * block);
            return _output.All;
        }
        _backend.Gemm(GemmOp.NN, m, 1, d, Source(0), p.Value(p["adapter.pool.weight"]), _pooled.All, p.Value(p["adapter.pool.bias"]));
        _backend.Gemm(GemmOp.NN, 1, Shape.OutputLength, m, _pooled.All, p.Value(p["adapter.out.weight"]), _raw.All, p.Value(p["adapter.out.bias"]));
        if (_training) _backend.DropoutForward(_raw.All, _output.All, Dropout, seed, 0);
        else _backend.Copy(_raw.All, _output.All);
        return _output.All;
    }

    /// <summary>Accumulates the adapter's gradients from d(loss)/d(output) of the last <see cref="Forward"/>.</summary>
    public void Backward(TrainableParameters p, DeviceView<float> dOutput)
    {
        int m = Shape.Tokens, d = Shape.Dim, w = Shape.Width, block = m * w;
        if (Shape.Mode != AdapterMode.Pooled)
        {
            foreach (var (g0, count) in SourceGroups())
                _backend.GroupedLinearBackward(Source(g0), dOutput.Slice(g0 * block, count * block), Packed(p, p.Gradients, g0, count), count, m, d, w,
                    _training ? Dropout : 0f, _seed, (long)g0 * block);
            return;
        }
        _backend.Zero(_dRaw.All);
        if (_training) _backend.DropoutBackward(dOutput, _dRaw.All, Dropout, _seed, 0);
        else _backend.Accumulate(dOutput, _dRaw.All);
        int n = Shape.OutputLength;
        _backend.Gemm(GemmOp.TN, m, n, 1, _pooled.All, _dRaw.All, p.Gradient(p["adapter.out.weight"]), accumulate: true);
        _backend.BiasBackward(_dRaw.All, p.Gradient(p["adapter.out.bias"]), 1, n);
        _backend.Gemm(GemmOp.NT, 1, m, n, _dRaw.All, p.Value(p["adapter.out.weight"]), _dPooled.All);
        _backend.Gemm(GemmOp.TN, d, 1, m, Source(0), _dPooled.All, p.Gradient(p["adapter.pool.weight"]), accumulate: true);
        _backend.BiasBackward(_dPooled.All, p.Gradient(p["adapter.pool.bias"]), m, 1);
    }

    /// <summary>The output groups that share one source, as (first group, count): all of them, or per layer its key and value.</summary>
    private IEnumerable<(int First, int Count)> SourceGroups()
    {
        int count = Shape.Mode == AdapterMode.PerLayer ? 2 : Shape.Groups;
        for (int g0 = 0; g0 < Shape.Groups; g0 += count) yield return (g0, count);
    }

    /// <summary>
    /// Groups g0..g0+count−1's (weight [d, w], bias [w]) pairs in <paramref name="buffer"/> (values or gradients) as one packed
    /// [count, d + 1, w] view — how <see cref="Tensors"/> lays them out.
    /// </summary>
    private DeviceView<float> Packed(TrainableParameters p, DeviceArray<float> buffer, int g0, int count)
    {
        int d = Shape.Dim, w = Shape.Width, stride = (d + 1) * w, first = p[GroupName(g0) + ".weight"].Offset;
        for (int g = g0; g < g0 + count; g++)
            if (p[GroupName(g) + ".weight"].Offset != first + (g - g0) * stride || p[GroupName(g) + ".bias"].Offset != first + (g - g0) * stride + d * w)
                throw new InvalidOperationException($"adapter tensors of group {g} are not packed after group {g0}'s");
        return buffer.Slice(first, count * stride);
    }

    /// <inheritdoc />
    public void Dispose()
    {
        foreach (var s in _sources) s.Dispose();
        _raw.Dispose(); _output.Dispose(); _dRaw.Dispose(); _pooled.Dispose(); _dPooled.Dispose();
    }
}

/// <summary>How the adapter's weights start.</summary>
public enum AdapterInit
{
    /// <summary>torch's Linear default.</summary>
    Random,
    /// <summary>The frozen model's own key/value maps (prefix) or the identity (prompt): the text as if prepended.</summary>
    Model,
}

/// <summary>Parameter initializers.</summary>
public static class Init
{
    /// <summary>n values uniform in [−bound, bound].</summary>
    public static float[] Uniform(Random rng, int n, float bound)
    {
        var a = new float[n];
        for (int i = 0; i < n; i++) a[i] = (float)((rng.NextDouble() * 2 - 1) * bound);
        return a;
    }
}
