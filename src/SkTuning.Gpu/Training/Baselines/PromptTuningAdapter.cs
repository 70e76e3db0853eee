using SkTuning.Gpu.Engine;

namespace SkTuning.Gpu.Training.Baselines;

/// <summary>How prompt tuning's virtual tokens start.</summary>
public enum PromptInit
{
    /// <summary>N(0, 0.02²) values.</summary>
    Random,
    /// <summary>The embedding-layer outputs of n tokens sampled from the vocabulary (rows supplied by the caller).</summary>
    Vocabulary,
    /// <summary>
    /// PEFT's TEXT init (what the SK-Tuning authors' LLM code does): the embedding-layer outputs of an init text's m
    /// tokens, repeated (cyclically) or truncated to n rows (rows supplied by the caller).
    /// </summary>
    Text,
}

/// <summary>
/// Prompt tuning (Lester et al.): n trainable virtual tokens P ∈ R^{n×d} prepended after the embedding layer, with
/// dropout in training. Tensor <c>prompt.embedding</c> [n, d].
/// </summary>
public sealed class PromptTuningAdapter : IAdapter
{
    /// <summary>Standard deviation of the random init.</summary>
    public const double RandomStd = 0.02;

    private readonly Backend _backend;
    private readonly float[]? _initialRows;
    private readonly OutputDropout _dropout;

    /// <summary>Creates the adapter.</summary>
    /// <param name="backend">Where it runs.</param>
    /// <param name="tokens">n, the number of virtual tokens.</param>
    /// <param name="dim">d.</param>
    /// <param name="initialRows">
    /// Null for the random init; otherwise r·d values (r ≥ 1 rows, e.g. the embedding outputs of an init text or of
    /// sampled vocabulary tokens), copied at <see cref="Initialize"/> — cycled when r &lt; n, truncated when r &gt; n.
    /// </param>
    /// <param name="dropout">Dropout probability on the prompt in training.</param>
    public PromptTuningAdapter(Backend backend, int tokens, int dim, float[]? initialRows = null, float dropout = 0.1f)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(tokens, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(dim, 1);
        if (initialRows is not null && (initialRows.Length == 0 || initialRows.Length % dim != 0))
            throw new ArgumentException($"initial rows have {initialRows.Length} values, expected a positive multiple of d = {dim}", nameof(initialRows));
        _backend = backend;
        Tokens = tokens;
        Dim = dim;
        _initialRows = initialRows is null ? null : FitRows(initialRows, dim, tokens);
        _dropout = new OutputDropout(backend, tokens * dim, dropout);
    }

    /// <summary>d.</summary>
    public int Dim { get; }

    /// <summary>Dropout probability on the prompt in training.</summary>
    public float Dropout => _dropout.Probability;

    /// <inheritdoc />
    public AdapterKind Kind => AdapterKind.Prompt;

    /// <inheritdoc />
    public int Tokens { get; }

    /// <inheritdoc />
    public int OutputLength => Tokens * Dim;

    /// <summary>Rows [r, d] cycled or truncated to n rows (PEFT's TEXT init: ids·⌈n/r⌉, first n).</summary>
    public static float[] FitRows(ReadOnlySpan<float> rows, int dim, int tokens)
    {
        if (rows.IsEmpty || rows.Length % dim != 0) throw new ArgumentException($"{rows.Length} values are not whole rows of d = {dim}", nameof(rows));
        int r = rows.Length / dim;
        var fitted = new float[tokens * dim];
        for (int i = 0; i < tokens; i++) rows.Slice(i % r * dim, dim).CopyTo(fitted.AsSpan(i * dim, dim));
        return fitted;
    }

    /// <inheritdoc />
    public IEnumerable<(string Name, int[] Shape)> Tensors()
    {
        yield return ("prompt.embedding", [Tokens, Dim]);
    }

    /// <summary>The given rows (fitted to n), or N(0, 0.02²).</summary>
    public void Initialize(TrainableParameters p, Random rng) =>
        p.Set(p["prompt.embedding"], _initialRows ?? BaselineInit.Normal(rng, OutputLength, RandomStd));

    /// <inheritdoc />
    public DeviceView<float> Forward(TrainableParameters p, bool training, ulong seed) =>
        _dropout.Forward(p.Value(p["prompt.embedding"]), training, seed);

    /// <inheritdoc />
    public void Backward(TrainableParameters p, DeviceView<float> dOutput) =>
        _dropout.Backward(dOutput, p.Gradient(p["prompt.embedding"]));

    /// <inheritdoc />
    public void Dispose() => _dropout.Dispose();
}
