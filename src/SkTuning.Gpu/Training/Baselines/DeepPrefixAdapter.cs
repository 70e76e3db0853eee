using SkTuning.Gpu.Engine;

namespace SkTuning.Gpu.Training.Baselines;

/// <summary>
/// P-tuning v2 (deep prompt tuning without reparameterization): the per-layer prefix [L, 2, n, kvDim] is itself the
/// trainable tensor <c>prefix.kv</c> [2L, n, kvDim] (block 2l: layer l's keys, 2l + 1: its values), with dropout in training.
/// </summary>
public sealed class DeepPrefixAdapter : IAdapter
{
    private readonly OutputDropout _dropout;

    /// <summary>Creates the adapter.</summary>
    /// <param name="backend">Where it runs.</param>
    /// <param name="tokens">n, prefix keys per layer.</param>
    /// <param name="dim">Width of each layer's keys and values: kvDim (d without grouped KV heads).</param>
    /// <param name="layers">L.</param>
    /// <param name="dropout">Dropout probability on the prefix in training (P-tuning v2 uses the model's, 0.1).</param>
    /// <param name="initStd">Standard deviation of the N(0, σ²) init (1: torch's nn.Embedding default, as P-tuning v2).</param>
    public DeepPrefixAdapter(Backend backend, int tokens, int dim, int layers, float dropout = 0.1f, double initStd = 1.0)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(tokens, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(dim, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(layers, 1);
        Tokens = tokens;
        Dim = dim;
        Layers = layers;
        InitStd = initStd;
        _dropout = new OutputDropout(backend, OutputLength, dropout);
    }

    /// <summary>Width of each layer's keys and values (kvDim).</summary>
    public int Dim { get; }

    /// <summary>L.</summary>
    public int Layers { get; }

    /// <summary>Standard deviation of the init.</summary>
    public double InitStd { get; }

    /// <summary>Dropout probability on the prefix in training.</summary>
    public float Dropout => _dropout.Probability;

    /// <inheritdoc />
    public AdapterKind Kind => AdapterKind.Prefix;

    /// <inheritdoc />
    public int Tokens { get; }

    /// <inheritdoc />
    public int OutputLength => 2 * Layers * Tokens * Dim;

    /// <inheritdoc />
    public IEnumerable<(string Name, int[] Shape)> Tensors()
    {
        yield return ("prefix.kv", [2 * Layers, Tokens, Dim]);
    }

    /// <summary>N(0, σ²) values.</summary>
    public void Initialize(TrainableParameters p, Random rng) => p.Set(p["prefix.kv"], BaselineInit.Normal(rng, OutputLength, InitStd));

    /// <inheritdoc />
    public DeviceView<float> Forward(TrainableParameters p, bool training, ulong seed) => _dropout.Forward(p.Value(p["prefix.kv"]), training, seed);

    /// <inheritdoc />
    public void Backward(TrainableParameters p, DeviceView<float> dOutput) => _dropout.Backward(dOutput, p.Gradient(p["prefix.kv"]));

    /// <inheritdoc />
    public void Dispose() => _dropout.Dispose();
}
