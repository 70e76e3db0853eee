namespace SkTuning.Gpu.Engine;

/// <summary>How the frozen model's weight matrices are stored on the backend (<c>--weights fp32|bf16</c>).</summary>
public enum WeightPrecision
{
    /// <summary>fp32, as the ONNX file holds them.</summary>
    Fp32,

    /// <summary>
    /// bfloat16, rounded to nearest even once at load: half the memory of the projection matrices; GEMMs widen them to
    /// fp32 and accumulate in fp32. Embedding tables, norms, biases, adapters, heads and optimizer state stay fp32.
    /// </summary>
    Bf16,
}

/// <summary>
/// The B operand of a weight GEMM: an fp32 view (trainable or frozen weights), or a frozen matrix stored as bf16 words.
/// Exactly one of the two is non-empty, or neither (an absent tensor).
/// </summary>
public readonly record struct WeightMatrix(DeviceView<float> Fp32, DeviceView<ushort> Bf16)
{
    /// <summary>An fp32 view as a weight operand.</summary>
    public static implicit operator WeightMatrix(DeviceView<float> fp32) => new(fp32, default);

    /// <summary>True when the matrix is stored in bf16.</summary>
    public bool IsBf16 => !Bf16.IsEmpty;

    /// <summary>True when the model has no such tensor.</summary>
    public bool IsEmpty => Fp32.IsEmpty && Bf16.IsEmpty;

    /// <summary>Bytes the stored matrix takes.</summary>
    public long Bytes => Fp32.Length * 4L + Bf16.Length * 2L;
}
