using SkTuning.Gpu.Import;

namespace SkTuning.Gpu.Engine;

/// <summary>
/// The model's normalization (LayerNorm or RMSNorm, chosen once from the spec) over rows of width d. RMSNorm has no
/// mean and no β: its <c>mean</c> buffer is unused and its β views are empty.
/// </summary>
internal sealed class NormOps(Backend backend, ModelSpec spec)
{
    private readonly int _dim = spec.Hidden;
    private readonly float _epsilon = spec.Epsilon;
    private readonly NormKind _kind = spec.Norm switch
    {
        NormKind.LayerNorm or NormKind.RmsNorm => spec.Norm,
        var k => throw new SkTuningException($"the engine has no kernel for norm {k}"),
    };

    /// <summary>y = Norm(x)·γ (+ β); saves the row statistics.</summary>
    public void Forward(DeviceView<float> x, DeviceView<float> gamma, DeviceView<float> beta, DeviceView<float> y,
        DeviceView<float> mean, DeviceView<float> rstd, int rows)
    {
        if (_kind == NormKind.LayerNorm) backend.LayerNormForward(x, gamma, beta, y, mean, rstd, rows, _dim, _epsilon);
        else backend.RmsNormForward(x, gamma, y, rstd, rows, _dim, _epsilon);
    }

    /// <summary>
    /// sum = x + residual (sum may alias x), then y = Norm(sum)·γ (+ β) saving the row statistics: LayerNorm in one fused
    /// op; RMSNorm as the sum and the norm.
    /// </summary>
    public void ResidualForward(DeviceView<float> x, DeviceView<float> residual, DeviceView<float> sum, DeviceView<float> gamma, DeviceView<float> beta,
        DeviceView<float> y, DeviceView<float> mean, DeviceView<float> rstd, int rows)
    {
        if (_kind == NormKind.LayerNorm)
        {
            backend.ResidualLayerNormForward(x, residual, sum, gamma, beta, y, mean, rstd, rows, _dim, _epsilon);
            return;
        }
        backend.Add(x, residual, sum);
        backend.RmsNormForward(sum, gamma, y, rstd, rows, _dim, _epsilon);
    }

    /// <summary>dx += Normᵀ·dy; γ/β gradients accumulate where their views are non-empty.</summary>
    public void Backward(DeviceView<float> dy, DeviceView<float> x, DeviceView<float> gamma, DeviceView<float> mean, DeviceView<float> rstd,
        DeviceView<float> dx, DeviceView<float> dGamma, DeviceView<float> dBeta, int rows)
    {
        if (_kind == NormKind.LayerNorm) backend.LayerNormBackward(dy, x, gamma, mean, rstd, dx, dGamma, dBeta, rows, _dim);
        else backend.RmsNormBackward(dy, x, gamma, rstd, dx, dGamma, rows, _dim);
    }
}
