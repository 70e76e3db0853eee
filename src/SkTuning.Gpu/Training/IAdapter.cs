using SkTuning.Gpu.Engine;

namespace SkTuning.Gpu.Training;

/// <summary>
/// A trainable module that produces what the frozen model is steered with: prompt vectors [m, d] prepended after
/// the embedding layer, or per-layer prefix keys/values [L, 2, m, d] shared by the batch. SK-Tuning's
/// <see cref="SemanticAdapter"/> is one; the baselines (prompt tuning, prefix tuning, P-tuning v2) are others.
/// </summary>
public interface IAdapter : IDisposable
{
    /// <summary>Prompt or prefix.</summary>
    AdapterKind Kind { get; }

    /// <summary>m: prompt rows, or prefix keys per layer.</summary>
    int Tokens { get; }

    /// <summary>Values produced: m·d (prompt) or 2·L·m·d (prefix).</summary>
    int OutputLength { get; }

    /// <summary>The trainable tensors, named as saved.</summary>
    IEnumerable<(string Name, int[] Shape)> Tensors();

    /// <summary>Initial values (deterministic in <paramref name="rng"/>).</summary>
    void Initialize(TrainableParameters p, Random rng);

    /// <summary>The prompt or prefix; valid until the next call.</summary>
    DeviceView<float> Forward(TrainableParameters p, bool training, ulong seed);

    /// <summary>Accumulates the adapter's gradients from d(loss)/d(output) of the last forward.</summary>
    void Backward(TrainableParameters p, DeviceView<float> dOutput);
}
