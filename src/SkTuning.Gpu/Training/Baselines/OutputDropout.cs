using SkTuning.Gpu.Engine;

namespace SkTuning.Gpu.Training.Baselines;

/// <summary>Dropout on an adapter's output in training, as <see cref="SemanticAdapter"/> applies it (shared by the baselines).</summary>
internal sealed class OutputDropout(Backend backend, int length, float probability) : IDisposable
{
    public float Probability { get; } = probability is >= 0 and < 1
        ? probability
        : throw new ArgumentOutOfRangeException(nameof(probability), probability, "dropout must be in [0, 1)");

    private readonly DeviceArray<float> _output = backend.Allocate(length);
    private bool _training;
    private ulong _seed;

    /// <summary>Dropout (training) or a copy of <paramref name="raw"/>; the view stays valid until the next call.</summary>
    public DeviceView<float> Forward(DeviceView<float> raw, bool training, ulong seed)
    {
        _training = training && Probability > 0;
        _seed = seed;
        if (_training) backend.DropoutForward(raw, _output.All, Probability, seed, 0);
        else backend.Copy(raw, _output.All);
        return _output.All;
    }

    /// <summary>dRaw += the gradient through the last forward's mask.</summary>
    public void Backward(DeviceView<float> dOutput, DeviceView<float> dRaw)
    {
        if (_training) backend.DropoutBackward(dOutput, dRaw, Probability, _seed, 0);
        else backend.Accumulate(dOutput, dRaw);
    }

    public void Dispose() => _output.Dispose();
}

/// <summary>Initializers the baselines share with their reference implementations.</summary>
internal static class BaselineInit
{
    /// <summary>n values from N(0, std²) (Box–Muller; deterministic in <paramref name="rng"/>), like torch's nn.Embedding init.</summary>
    public static float[] Normal(Random rng, int n, double std)
    {
        var a = new float[n];
        for (int i = 0; i < n; i += 2)
        {
            double u1 = 1 - rng.NextDouble(), u2 = rng.NextDouble(), r = Math.Sqrt(-2 * Math.Log(u1)) * std;
            a[i] = (float)(r * Math.Cos(2 * Math.PI * u2));
            if (i + 1 < n) a[i + 1] = (float)(r * Math.Sin(2 * Math.PI * u2));
        }
        return a;
    }
}
