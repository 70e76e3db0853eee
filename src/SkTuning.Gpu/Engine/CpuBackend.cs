using SkTuning.Gpu.Kernels;

namespace SkTuning.Gpu.Engine;

/// <summary>The CPU backend: every operation is a SIMD C# kernel over host arrays.</summary>
/// <param name="frozenWeights">How frozen weight matrices are stored (<c>--weights</c>).</param>
public sealed class CpuBackend(WeightPrecision frozenWeights = WeightPrecision.Fp32) : Backend
{
    /// <inheritdoc />
    public override string Name => "cpu";

    /// <inheritdoc />
    public override WeightPrecision FrozenWeights => frozenWeights;

    /// <summary>
    /// The code the bf16-weight GEMMs run (default <see cref="Bf16GemmPath.Auto"/>: the <c>vdpbf16ps</c> kernel where the CPU
    /// has it); <see cref="Bf16GemmPath.Widening"/> computes in fp32 on the rounded weights (bit for bit the fp32 engine's
    /// result on them; smooth in the activations, as a finite-difference check needs).
    /// </summary>
    internal Bf16GemmPath Bf16Path { get; set; }

    private sealed class HostArray<T>(int length) : DeviceArray<T>(length) where T : unmanaged
    {
        public readonly T[] Data = new T[length];
        public override void Dispose() => Release();
    }

    private static Span<float> S(DeviceView<float> v) =>
        v.IsEmpty ? Span<float>.Empty : ((HostArray<float>)v.Array!).Data.AsSpan(v.Offset, v.Length);

    private static Span<int> S(DeviceView<int> v) =>
        v.IsEmpty ? Span<int>.Empty : ((HostArray<int>)v.Array!).Data.AsSpan(v.Offset, v.Length);

    /// <inheritdoc />
    public override DeviceArray<float> Allocate(int length) => new HostArray<float>(length).Metered(Memory);

    /// <inheritdoc />
    public override DeviceArray<int> AllocateInts(int length) => new HostArray<int>(length).Metered(Memory);

    /// <summary>A bf16 weight matrix in the GEMM kernel's panel layout; its length counts 16-bit words, padding included.</summary>
    private sealed class HostBf16Matrix(PackedBf16Matrix matrix) : DeviceArray<ushort>(checked((int)(matrix.Bytes / 2)))
    {
        public readonly PackedBf16Matrix Matrix = matrix;
        public override void Dispose() => Release();
    }

    /// <inheritdoc />
    /// <remarks>Packed once here into the <c>vdpbf16ps</c> kernel's B panels (<see cref="PackedBf16Matrix"/>).</remarks>
    public override DeviceArray<ushort> UploadBf16(ReadOnlySpan<float> host, int rows, int columns)
    {
        if (frozenWeights != WeightPrecision.Bf16) throw new InvalidOperationException("bf16 upload on a backend made for fp32 weights");
        return new HostBf16Matrix(PackedBf16Matrix.Pack(host, rows, columns)).Metered(Memory);
    }

    /// <summary>A frozen fp32 weight matrix in the GEMM's B-panel layout; its length counts floats, padding included.</summary>
    private sealed class HostPackedMatrix(PackedMatrix matrix) : DeviceArray<float>(matrix.Length)
    {
        public readonly PackedMatrix Matrix = matrix;
        public override void Dispose() => Release();
    }

    /// <inheritdoc />
    /// <remarks>
    /// Packed once here (<see cref="PackedMatrix"/>): the forward GEMM reads it in place, so a few-row product (one
    /// sentence) does not repack the whole matrix per call.
    /// </remarks>
    public override DeviceArray<float> UploadMatrix(ReadOnlySpan<float> host, int rows, int columns) =>
        new HostPackedMatrix(PackedMatrix.Pack(host, rows, columns)).Metered(Memory);

    /// <inheritdoc />
    public override DeviceArray<ushort> UploadBf16Rows(ReadOnlySpan<float> host)
    {
        if (frozenWeights != WeightPrecision.Bf16) throw new InvalidOperationException("bf16 upload on a backend made for fp32 weights");
        var a = new HostArray<ushort>(host.Length);
        BFloat16.FromFloat(host, a.Data);
        return a.Metered(Memory);
    }

    /// <inheritdoc />
    protected override void GemmBf16(GemmOp op, int m, int n, int k, DeviceView<float> a, DeviceView<ushort> b, DeviceView<float> c,
        DeviceView<float> bias, bool accumulate)
    {
        var array = (HostBf16Matrix)b.Array!;
        if (b.Offset != 0 || b.Length != array.Length) throw new ArgumentException("a bf16 weight is used whole, not as a slice");
        var w = array.Matrix;
        switch (op)
        {
            case GemmOp.NN: Kernels.Gemm.NNBf16(m, n, k, S(a), w, S(c), S(bias), accumulate, Bf16Path); break;
            case GemmOp.NT: Kernels.Gemm.NTBf16(m, n, k, S(a), w, S(c), S(bias), accumulate, Bf16Path); break;
            default: throw new ArgumentException($"Gemm {op} with a bf16 weight: frozen weights take no gradient");
        }
    }

    /// <inheritdoc />
    public override void Upload(ReadOnlySpan<float> source, DeviceView<float> target) => source.CopyTo(Checked(S(target), source.Length));

    /// <inheritdoc />
    public override void Upload(ReadOnlySpan<int> source, DeviceView<int> target)
    {
        if (source.Length != target.Length) throw new ArgumentException($"upload of {source.Length} ints into a view of {target.Length}");
        source.CopyTo(S(target));
    }

    /// <inheritdoc />
    public override void Download(DeviceView<float> source, Span<float> target)
    {
        if (source.Length != target.Length) throw new ArgumentException($"download of {source.Length} values into {target.Length}");
        S(source).CopyTo(target);
    }

    private static Span<float> Checked(Span<float> target, int length) =>
        target.Length == length ? target : throw new ArgumentException($"copy of {length} values into a view of {target.Length}");

    /// <inheritdoc />
    public override void Zero(DeviceView<float> view) => S(view).Clear();

    /// <inheritdoc />
    public override void Copy(DeviceView<float> source, DeviceView<float> target) => S(source).CopyTo(Checked(S(target), source.Length));

    /// <inheritdoc />
    public override void EmbeddingForward(DeviceView<int> ids, DeviceView<int> types, DeviceView<int> positions, DeviceView<float> wte,
        DeviceView<float> wpe, DeviceView<float> wtt, DeviceView<float> output, int batch, int seqLen, int dim) =>
        Embedding.Forward(S(ids), S(types), S(positions), S(wte), S(wpe), S(wtt), S(output), batch, seqLen, dim);

    /// <inheritdoc />
    protected override void EmbeddingForwardBf16(DeviceView<int> ids, DeviceView<int> types, DeviceView<int> positions, DeviceView<ushort> wte,
        DeviceView<float> wpe, DeviceView<float> wtt, DeviceView<float> output, int batch, int seqLen, int dim) =>
        Embedding.ForwardBf16(S(ids), S(types), S(positions), ((HostArray<ushort>)wte.Array!).Data.AsSpan(wte.Offset, wte.Length), S(wpe), S(wtt),
            S(output), batch, seqLen, dim);

    /// <inheritdoc />
    public override void EmbeddingBackward(DeviceView<int> ids, DeviceView<int> types, DeviceView<int> positions, DeviceView<float> dOutput,
        DeviceView<float> dWte, DeviceView<float> dWpe, DeviceView<float> dWtt, int batch, int seqLen, int dim) =>
        Embedding.Backward(S(ids), S(types), S(positions), S(dOutput), S(dWte), S(dWpe), S(dWtt), batch, seqLen, dim);

    /// <inheritdoc />
    public override void EmbeddingLayerNormForward(DeviceView<int> ids, DeviceView<int> types, DeviceView<int> positions, DeviceView<float> wte,
        DeviceView<float> wpe, DeviceView<float> wtt, DeviceView<float> sum, DeviceView<float> gamma, DeviceView<float> beta, DeviceView<float> y,
        DeviceView<float> mean, DeviceView<float> rstd, int batch, int seqLen, int dim, float epsilon) =>
        EmbeddingLayerNorm.Forward(S(ids), S(types), S(positions), S(wte), S(wpe), S(wtt), S(sum), S(gamma), S(beta), S(y), S(mean),
            S(rstd), batch, seqLen, dim, epsilon);

    /// <inheritdoc />
    public override void AddColumnBlock(DeviceView<float> block, DeviceView<float> matrix, int rows, int width, int columns, int column0, float scale) =>
        ColumnBlock.Forward(S(block), S(matrix), rows, width, columns, column0, scale);

    /// <inheritdoc />
    public override void ColumnBlockBackward(DeviceView<float> dMatrix, DeviceView<float> dBlock, int rows, int width, int columns, int column0, float scale) =>
        ColumnBlock.Backward(S(dMatrix), S(dBlock), rows, width, columns, column0, scale);

    /// <inheritdoc />
    public override void Prepend(DeviceView<float> prompt, DeviceView<float> x, DeviceView<float> y, int batch, int promptLen, int seqLen, int dim,
        DeviceView<int> promptChoice = default) =>
        Kernels.Prepend.Forward(S(prompt), S(x), S(y), batch, promptLen, seqLen, dim, S(promptChoice));

    /// <inheritdoc />
    public override void PrependBackward(DeviceView<float> dy, DeviceView<float> dPrompt, DeviceView<float> dx, int batch, int promptLen, int seqLen, int dim)
    {
        if (!dPrompt.IsEmpty) Kernels.Prepend.PromptGradient(S(dy), S(dPrompt), batch, promptLen, seqLen, dim);
        if (!dx.IsEmpty) Kernels.Prepend.InputGradient(S(dy), S(dx), batch, promptLen, seqLen, dim);
    }

    /// <inheritdoc />
    public override void Gemm(GemmOp op, int m, int n, int k, DeviceView<float> a, DeviceView<float> b, DeviceView<float> c,
        DeviceView<float> bias = default, bool accumulate = false)
    {
        if (b.Array is HostPackedMatrix packed)
        {
            if (b.Offset != 0 || b.Length != packed.Length) throw new ArgumentException("a packed weight is used whole, not as a slice");
            switch (op)
            {
                case GemmOp.NN: Kernels.Gemm.NNPacked(m, n, k, S(a), packed.Matrix, S(c), S(bias), accumulate); break;
                case GemmOp.NT: Kernels.Gemm.NTPacked(m, n, k, S(a), packed.Matrix, S(c), S(bias), accumulate); break;
                default: throw new ArgumentException($"Gemm {op} with a packed frozen weight: frozen weights take no gradient");
            }
            return;
        }
        switch (op)
        {
            case GemmOp.NN: Kernels.Gemm.NN(m, n, k, S(a), S(b), S(c), S(bias), accumulate); break;
            case GemmOp.NT: Kernels.Gemm.NT(m, n, k, S(a), S(b), S(c), S(bias), accumulate); break;
            default: Kernels.Gemm.TN(m, n, k, S(a), S(b), S(c), S(bias), accumulate); break;
        }
    }

    /// <inheritdoc />
    public override void GroupedLinearForward(DeviceView<float> x, DeviceView<float> weights, DeviceView<float> y, int groups, int rows,
        int inWidth, int outWidth, float dropout, ulong seed, long offset) =>
        GroupedLinear.Forward(S(x), S(weights), S(y), groups, rows, inWidth, outWidth, dropout, seed, offset);

    /// <inheritdoc />
    public override void GroupedLinearBackward(DeviceView<float> x, DeviceView<float> dy, DeviceView<float> dWeights, int groups, int rows,
        int inWidth, int outWidth, float dropout, ulong seed, long offset) =>
        GroupedLinear.Backward(S(x), S(dy), S(dWeights), groups, rows, inWidth, outWidth, dropout, seed, offset);

    /// <inheritdoc />
    public override void LayerNormForward(DeviceView<float> x, DeviceView<float> gamma, DeviceView<float> beta, DeviceView<float> y,
        DeviceView<float> mean, DeviceView<float> rstd, int rows, int dim, float epsilon) =>
        LayerNorm.Forward(S(x), S(gamma), S(beta), S(y), S(mean), S(rstd), rows, dim, epsilon);

    /// <inheritdoc />
    public override void ResidualLayerNormForward(DeviceView<float> x, DeviceView<float> residual, DeviceView<float> sum, DeviceView<float> gamma,
        DeviceView<float> beta, DeviceView<float> y, DeviceView<float> mean, DeviceView<float> rstd, int rows, int dim, float epsilon) =>
        ResidualLayerNorm.Forward(S(x), S(residual), S(sum), S(gamma), S(beta), S(y), S(mean), S(rstd), rows, dim, epsilon);

    /// <inheritdoc />
    public override void LayerNormBackward(DeviceView<float> dy, DeviceView<float> x, DeviceView<float> gamma, DeviceView<float> mean,
        DeviceView<float> rstd, DeviceView<float> dx, DeviceView<float> dGamma, DeviceView<float> dBeta, int rows, int dim) =>
        LayerNorm.Backward(S(dy), S(x), S(gamma), S(mean), S(rstd), S(dx), S(dGamma), S(dBeta), rows, dim);

    /// <inheritdoc />
    public override void GeluForward(DeviceView<float> x, DeviceView<float> y) => Gelu.Forward(S(x), S(y));

    /// <inheritdoc />
    public override void GeluBackward(DeviceView<float> dy, DeviceView<float> x, DeviceView<float> dx) => Gelu.Backward(S(dy), S(x), S(dx));

    /// <summary>The GEMM into <paramref name="scratch"/>, then d(pre) overwritten by the GELU backward (no zeroing pass, one read less).</summary>
    public override void GemmGeluBackward(int m, int n, int k, DeviceView<float> dy, WeightMatrix w, DeviceView<float> pre, DeviceView<float> dPre,
        DeviceView<float> scratch)
    {
        Gemm(GemmOp.NT, m, n, k, dy, w, scratch);
        Gelu.Backward(S(scratch), S(pre), S(dPre), accumulate: false);
    }

    /// <inheritdoc />
    public override void RmsNormForward(DeviceView<float> x, DeviceView<float> gamma, DeviceView<float> y, DeviceView<float> rstd, int rows, int dim, float epsilon) =>
        RmsNorm.Forward(S(x), S(gamma), S(y), S(rstd), rows, dim, epsilon);

    /// <inheritdoc />
    public override void RmsNormBackward(DeviceView<float> dy, DeviceView<float> x, DeviceView<float> gamma, DeviceView<float> rstd,
        DeviceView<float> dx, DeviceView<float> dGamma, int rows, int dim) =>
        RmsNorm.Backward(S(dy), S(x), S(gamma), S(rstd), S(dx), S(dGamma), rows, dim);

    /// <inheritdoc />
    public override void GeluTanhForward(DeviceView<float> x, DeviceView<float> y) => GeluTanh.Forward(S(x), S(y));

    /// <inheritdoc />
    public override void GeluTanhBackward(DeviceView<float> dy, DeviceView<float> x, DeviceView<float> dx) => GeluTanh.Backward(S(dy), S(x), S(dx));

    /// <inheritdoc />
    public override void SwiGluForward(DeviceView<float> gateUp, DeviceView<float> y, int rows, int ffn) => SwiGlu.Forward(S(gateUp), S(y), rows, ffn);

    /// <inheritdoc />
    public override void SwiGluBackward(DeviceView<float> dy, DeviceView<float> gateUp, DeviceView<float> dGateUp, int rows, int ffn) =>
        SwiGlu.Backward(S(dy), S(gateUp), S(dGateUp), rows, ffn);

    /// <inheritdoc />
    public override void RopeForward(DeviceView<float> x, DeviceView<int> positions, DeviceView<float> cos, DeviceView<float> sin,
        int rows, int stride, int heads, int headDim, int rotaryDim) =>
        Rope.Forward(S(x), S(positions), S(cos), S(sin), rows, stride, heads, headDim, rotaryDim);

    /// <inheritdoc />
    public override void RopeBackward(DeviceView<float> dx, DeviceView<int> positions, DeviceView<float> cos, DeviceView<float> sin,
        int rows, int stride, int heads, int headDim, int rotaryDim) =>
        Rope.Backward(S(dx), S(positions), S(cos), S(sin), rows, stride, heads, headDim, rotaryDim);

    /// <inheritdoc />
    public override void TanhForward(DeviceView<float> x, DeviceView<float> y) => Tanh.Forward(S(x), S(y));

    /// <inheritdoc />
    public override void TanhBackward(DeviceView<float> dy, DeviceView<float> y, DeviceView<float> dx) => Tanh.Backward(S(dy), S(y), S(dx));

    /// <inheritdoc />
    public override void Add(DeviceView<float> a, DeviceView<float> b, DeviceView<float> y) => Residual.Forward(S(a), S(b), S(y));

    /// <inheritdoc />
    public override void Accumulate(DeviceView<float> source, DeviceView<float> target)
    {
        var t = S(target);
        System.Numerics.Tensors.TensorPrimitives.Add(t, S(source), t);
    }

    /// <inheritdoc />
    public override void AttentionForward(AttentionShape shape, float maskValue, bool causal, DeviceView<float> qkv, DeviceView<float> prefixK,
        DeviceView<float> prefixV, DeviceView<float> keyMask, DeviceView<float> alibiSlopes, DeviceView<int> keyPositions,
        DeviceView<float> output, DeviceView<float> probabilities, DeviceView<int> prefixChoice = default) =>
        Attention.Forward(S(qkv), S(prefixK), S(prefixV), S(keyMask), S(output), S(probabilities), shape, maskValue, causal,
            S(alibiSlopes), S(keyPositions), S(prefixChoice));

    /// <inheritdoc />
    public override void AttentionBackward(AttentionShape shape, DeviceView<float> dOutput, DeviceView<float> qkv, DeviceView<float> prefixK,
        DeviceView<float> prefixV, DeviceView<float> probabilities, DeviceView<float> dqkv, DeviceView<float> dPrefixK, DeviceView<float> dPrefixV) =>
        Attention.Backward(S(dOutput), S(qkv), S(prefixK), S(prefixV), S(probabilities), S(dqkv), S(dPrefixK), S(dPrefixV), shape);

    /// <inheritdoc />
    public override void MeanPoolForward(DeviceView<float> x, DeviceView<int> mask, DeviceView<float> output, int batch, int seqLen, int skip, int dim) =>
        MeanPooling.Forward(S(x), S(mask), S(output), batch, seqLen, skip, dim);

    /// <inheritdoc />
    public override void MeanPoolDropoutForward(DeviceView<float> x, DeviceView<int> mask, DeviceView<float> output, int batch, int seqLen, int skip, int dim,
        float dropout, ulong seed) =>
        MeanPoolDropout.Forward(S(x), S(mask), S(output), batch, seqLen, skip, dim, dropout, seed);

    /// <inheritdoc />
    public override void MeanPoolDropoutBackward(DeviceView<float> dOutput, DeviceView<int> mask, DeviceView<float> dX, int batch, int seqLen, int skip, int dim,
        float dropout, ulong seed) =>
        MeanPoolDropout.Backward(S(dOutput), S(mask), S(dX), batch, seqLen, skip, dim, dropout, seed);

    /// <inheritdoc />
    public override void MeanPoolBackward(DeviceView<float> dOutput, DeviceView<int> mask, DeviceView<float> dX, int batch, int seqLen, int skip, int dim) =>
        MeanPooling.Backward(S(dOutput), S(mask), S(dX), batch, seqLen, skip, dim);

    /// <inheritdoc />
    public override void SoftmaxCrossEntropy(DeviceView<float> logits, DeviceView<int> labels, int validCount, DeviceView<float> dLogits, int rows, int classes,
        DeviceView<float> loss) =>
        S(loss)[0] = Kernels.SoftmaxCrossEntropy.ForwardBackward(S(logits), S(labels), S(dLogits), rows, classes);

    /// <inheritdoc />
    public override void MeanSquaredError(DeviceView<float> predictions, DeviceView<float> targets, DeviceView<float> dPredictions, DeviceView<float> loss) =>
        S(loss)[0] = Kernels.MeanSquaredError.ForwardBackward(S(predictions), S(targets), S(dPredictions));

    /// <inheritdoc />
    public override void DropoutForward(DeviceView<float> x, DeviceView<float> y, float p, ulong seed, long offset) =>
        Dropout.Forward(S(x), S(y), p, seed, offset);

    /// <inheritdoc />
    public override void DropoutBackward(DeviceView<float> dy, DeviceView<float> dx, float p, ulong seed, long offset) =>
        Dropout.Backward(S(dy), S(dx), p, seed, offset);

    /// <inheritdoc />
    public override void BiasBackward(DeviceView<float> dy, DeviceView<float> dBias, int rows, int dim) => Bias.Backward(S(dy), S(dBias), rows, dim);

    /// <inheritdoc />
    public override void GradientClip(DeviceView<float> gradient, float maxNorm, DeviceView<float> norm, DeviceView<float> clipScale) =>
        (S(norm)[0], S(clipScale)[0]) = GradientNorm.NormAndClipScale(S(gradient), maxNorm);

    /// <inheritdoc />
    public override void AdamW(DeviceView<float> parameters, DeviceView<float> gradient, DeviceView<float> m, DeviceView<float> v, AdamWStep step,
        DeviceView<float> clipScale)
    {
        float clip = S(clipScale)[0];
        if (!float.IsNaN(clip)) Kernels.AdamW.Step(S(parameters), S(gradient), S(m), S(v), step, clip);
    }

    /// <inheritdoc />
    public override void Dispose() { }
}
