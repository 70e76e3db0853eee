using SkTuning.Gpu.Engine;

namespace SkTuning.Gpu.Training.Baselines;

/// <summary>
/// Prefix tuning with Li &amp; Liang's reparameterization: E ∈ R^{n×d} (Embedding(n, d)) → Linear(d, h) → Tanh →
/// Linear(h, 2·L·d), giving the per-layer prefix [L, 2, n, d], with dropout in training.
/// The last Linear is stored as 2L column blocks W2_g [h, d], b2_g [d] (g = 2l: layer l's keys, 2l + 1: its values) —
/// exactly the parameters of one Linear(h, 2Ld) with its output columns grouped as HF's
/// <c>view(n, 2L, d)</c> reads them — so each block's output lands in place with no permute.
/// Tensors: <c>prefix.embedding</c> [n, d], <c>prefix.mlp1.weight</c> [d, h], <c>prefix.mlp1.bias</c> [h],
/// <c>prefix.mlp2.{g}.weight</c> [h, d], <c>prefix.mlp2.{g}.bias</c> [d].
/// </summary>
public sealed class PrefixTuningAdapter : IAdapter
{
    /// <summary>The reparameterization's default hidden size h (Li &amp; Liang's and P-tuning v2's prefix_hidden_size).</summary>
    public const int DefaultHidden = 512;

    private readonly Backend _backend;
    private readonly DeviceArray<float> _pre, _act, _raw, _dRaw, _dAct, _dPre;
    private readonly OutputDropout _dropout;

    /// <summary>Creates the adapter.</summary>
    /// <param name="backend">Where it runs.</param>
    /// <param name="tokens">n, prefix keys per layer.</param>
    /// <param name="dim">d.</param>
    /// <param name="layers">L.</param>
    /// <param name="hidden">h, the MLP's hidden size.</param>
    /// <param name="dropout">Dropout probability on the prefix in training.</param>
    /// <param name="width">Width of each layer's keys and values: kvDim (0: d; smaller with grouped KV heads).</param>
    public PrefixTuningAdapter(Backend backend, int tokens, int dim, int layers, int hidden = DefaultHidden, float dropout = 0.1f, int width = 0)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(tokens, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(dim, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(layers, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(hidden, 1);
        _backend = backend;
        Tokens = tokens;
        Dim = dim;
        Width = width > 0 ? width : dim;
        Layers = layers;
        Hidden = hidden;
        _dropout = new OutputDropout(backend, OutputLength, dropout);
        _pre = backend.Allocate(tokens * hidden);
        _act = backend.Allocate(tokens * hidden);
        _dAct = backend.Allocate(tokens * hidden);
        _dPre = backend.Allocate(tokens * hidden);
        _raw = backend.Allocate(OutputLength);
        _dRaw = backend.Allocate(OutputLength);
    }

    /// <summary>d.</summary>
    public int Dim { get; }

    /// <summary>Width of each layer's prefix keys and values (kvDim).</summary>
    public int Width { get; }

    /// <summary>L.</summary>
    public int Layers { get; }

    /// <summary>h, the MLP's hidden size.</summary>
    public int Hidden { get; }

    /// <summary>Dropout probability on the prefix in training.</summary>
    public float Dropout => _dropout.Probability;

    /// <inheritdoc />
    public AdapterKind Kind => AdapterKind.Prefix;

    /// <inheritdoc />
    public int Tokens { get; }

    /// <inheritdoc />
    public int OutputLength => 2 * Layers * Tokens * Width;

    private int Groups => 2 * Layers;

    /// <inheritdoc />
    public IEnumerable<(string Name, int[] Shape)> Tensors()
    {
        yield return ("prefix.embedding", [Tokens, Dim]);
        yield return ("prefix.mlp1.weight", [Dim, Hidden]);
        yield return ("prefix.mlp1.bias", [Hidden]);
        for (int g = 0; g < Groups; g++)
        {
            yield return ($"prefix.mlp2.{g}.weight", [Hidden, Width]);
            yield return ($"prefix.mlp2.{g}.bias", [Width]);
        }
    }

    /// <summary>torch's defaults: the embedding N(0, 1); each Linear's weight and bias U(−1/√fan_in, 1/√fan_in).</summary>
    public void Initialize(TrainableParameters p, Random rng)
    {
        p.Set(p["prefix.embedding"], BaselineInit.Normal(rng, Tokens * Dim, 1.0));
        foreach (var (name, _) in Tensors().Skip(1))
        {
            var info = p[name];
            p.Set(info, Init.Uniform(rng, info.Length, 1 / MathF.Sqrt(name.StartsWith("prefix.mlp1", StringComparison.Ordinal) ? Dim : Hidden)));
        }
    }

    /// <inheritdoc />
    public DeviceView<float> Forward(TrainableParameters p, bool training, ulong seed)
    {
        int n = Tokens, d = Dim, w = Width, h = Hidden, block = n * w;
        _backend.Gemm(GemmOp.NN, n, h, d, p.Value(p["prefix.embedding"]), p.Value(p["prefix.mlp1.weight"]), _pre.All, p.Value(p["prefix.mlp1.bias"]));
        _backend.TanhForward(_pre.All, _act.All);
        for (int g = 0; g < Groups; g++)
            _backend.Gemm(GemmOp.NN, n, w, h, _act.All, p.Value(p[$"prefix.mlp2.{g}.weight"]), _raw.Slice(g * block, block),
                p.Value(p[$"prefix.mlp2.{g}.bias"]));
        return _dropout.Forward(_raw.All, training, seed);
    }

    /// <inheritdoc />
    public void Backward(TrainableParameters p, DeviceView<float> dOutput)
    {
        int n = Tokens, d = Dim, w = Width, h = Hidden, block = n * w;
        _backend.Zero(_dRaw.All);
        _dropout.Backward(dOutput, _dRaw.All);
        for (int g = 0; g < Groups; g++)
        {
            var dg = _dRaw.Slice(g * block, block);
            var w2 = p[$"prefix.mlp2.{g}.weight"];
            _backend.Gemm(GemmOp.TN, h, w, n, _act.All, dg, p.Gradient(w2), accumulate: true);
            _backend.BiasBackward(dg, p.Gradient(p[$"prefix.mlp2.{g}.bias"]), n, w);
            _backend.Gemm(GemmOp.NT, n, h, w, dg, p.Value(w2), _dAct.All, accumulate: g > 0);
        }
        _backend.Zero(_dPre.All);
        _backend.TanhBackward(_dAct.All, _act.All, _dPre.All);
        var w1 = p["prefix.mlp1.weight"];
        _backend.Gemm(GemmOp.TN, d, h, n, p.Value(p["prefix.embedding"]), _dPre.All, p.Gradient(w1), accumulate: true);
        _backend.BiasBackward(_dPre.All, p.Gradient(p["prefix.mlp1.bias"]), n, h);
        _backend.Gemm(GemmOp.NT, n, d, h, _dPre.All, p.Value(w1), p.Gradient(p["prefix.embedding"]), accumulate: true);
    }

    /// <inheritdoc />
    public void Dispose()
    {
        _dropout.Dispose();
        _pre.Dispose(); _act.Dispose(); _raw.Dispose(); _dRaw.Dispose(); _dAct.Dispose(); _dPre.Dispose();
    }
}
