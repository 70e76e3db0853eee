using ILGPU;

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

/// <summary>The epilogue as the GPU GEMM tiers apply it at their stores (one copy for every tier).</summary>
internal static class GemmEpilogueStore
{
    /// <summary>
    /// Element <paramref name="o"/> of C (product and bias in <paramref name="v"/>) through <paramref name="p"/>'s epilogue:
    /// <see cref="GemmEpilogue.Gelu"/> saves v into aux[o] and returns GELU(v), <see cref="GemmEpilogue.GeluSlope"/> returns
    /// v·GELU'(aux[o]), none returns v.
    /// </summary>
    internal static float Apply(GemmParams p, ArrayView<float> aux, long o, float v)
    {
        if (p.Epilogue == (int)GemmEpilogue.Gelu)
        {
            aux[o] = v;
            return Gelu.Value(v);
        }
        return p.Epilogue == (int)GemmEpilogue.GeluSlope ? v * Gelu.Derivative(aux[o]) : v;
    }
}
