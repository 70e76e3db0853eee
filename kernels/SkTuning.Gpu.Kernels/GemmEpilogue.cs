namespace SkTuning.Gpu.Kernels;

/// <summary>
/// What the GPU GEMM does to each element of the product (bias included) before storing it, so that the FFN's GELU
/// costs no launch of its own. The operand <c>aux</c> is [M, N].
/// </summary>
public enum GemmEpilogue
{
    /// <summary>C = product.</summary>
    None = 0,
    /// <summary>aux = product (the pre-activation the backward needs), C = GELU(product) (erf form, <see cref="Kernels.Gelu"/>).</summary>
    Gelu = 1,
    /// <summary>C = product·GELU'(aux): the FFN's input-projection gradient through the activation.</summary>
    GeluSlope = 2,
}
