using SkTuning.Gpu.Kernels;

namespace SkTuning.Gpu.Engine;

/// <summary>
/// The operations the transformer engine is written in, implemented once per device: <see cref="CpuBackend"/>
/// (SIMD C#) and GpuBackend (ILGPU kernels). Shapes are row-major; backward operations
/// accumulate (+=) into gradient views. The engine's layer logic is written once against this class.
/// </summary>
public abstract class Backend : IDisposable
{
    /// <summary>"cpu" or "cuda" (or "ilgpu-cpu" for the simulator used in tests).</summary>
    public abstract string Name { get; }

    /// <summary>Bytes of device memory this backend's arrays hold (weights, activations, parameters, scratch).</summary>
    public MemoryMeter Memory { get; } = new();

    /// <summary>How frozen weight matrices are stored on this backend (<c>--weights</c>); fp32 unless the backend was made for bf16.</summary>
    public virtual WeightPrecision FrozenWeights => WeightPrecision.Fp32;

    /// <summary>
    /// A new array holding the weight matrix <paramref name="host"/> [rows, columns] ([in, out]) rounded to bf16 (nearest
    /// even), in whatever layout the backend's bf16 GEMM reads; only where <see cref="FrozenWeights"/> is bf16.
    /// </summary>
    /// <exception cref="NotSupportedException">This backend reads fp32 weights only.</exception>
    public virtual DeviceArray<ushort> UploadBf16(ReadOnlySpan<float> host, int rows, int columns) =>
        throw new NotSupportedException($"the {Name} backend stores frozen weights in fp32 only");

    /// <summary>
    /// A new array holding the frozen fp32 weight matrix <paramref name="host"/> [rows, columns] ([in, out]), used only as a
    /// GEMM's weight operand (the NN forward, the NT input gradient): a backend may keep it in its GEMM's layout. Default:
    /// row-major, as <see cref="UploadNew"/>.
    /// </summary>
    public virtual DeviceArray<float> UploadMatrix(ReadOnlySpan<float> host, int rows, int columns) => UploadNew(host);

    /// <summary>
    /// A new array holding <paramref name="host"/> rounded to bf16 (nearest even) in its own row-major order, for tables
    /// read by row (the word embeddings); only where <see cref="FrozenWeights"/> is bf16.
    /// </summary>
    /// <exception cref="NotSupportedException">This backend reads fp32 weights only.</exception>
    public virtual DeviceArray<ushort> UploadBf16Rows(ReadOnlySpan<float> host) =>
        throw new NotSupportedException($"the {Name} backend stores frozen weights in fp32 only");

    /// <summary>A zeroed float array.</summary>
    public abstract DeviceArray<float> Allocate(int length);

    /// <summary>A zeroed int array.</summary>
    public abstract DeviceArray<int> AllocateInts(int length);

    /// <summary>Copies host data into a view (sizes must match).</summary>
    public abstract void Upload(ReadOnlySpan<float> source, DeviceView<float> target);

    /// <summary>Copies host ints into a view.</summary>
    public abstract void Upload(ReadOnlySpan<int> source, DeviceView<int> target);

    /// <summary>Copies a view to host memory (waits for pending work).</summary>
    public abstract void Download(DeviceView<float> source, Span<float> target);

    /// <summary>Sets a view to zero.</summary>
    public abstract void Zero(DeviceView<float> view);

    /// <summary>Copies one view into another of the same length.</summary>
    public abstract void Copy(DeviceView<float> source, DeviceView<float> target);

    /// <summary>Waits for all queued work (no-op on the CPU).</summary>
    public virtual void Synchronize() { }

    /// <summary>
    /// A training step's uploads begin: until <see cref="EndStep"/> they may be staged in page-locked memory and copied
    /// asynchronously (GPU; no-op on the CPU). Every upload's source may be reused as soon as the call returns.
    /// </summary>
    public virtual void BeginStep() { }

    /// <summary>The step's work is enqueued (see <see cref="BeginStep"/>).</summary>
    public virtual void EndStep() { }

    /// <summary>
    /// out[r] = wte[ids[r]] + wpe[positions[r]] + wtt[types[r]], [B·T, d]. An empty wpe means no position table (RoPE models),
    /// an empty wtt no token types (GPT-2); an empty types with a type table means type 0.
    /// </summary>
    public abstract void EmbeddingForward(DeviceView<int> ids, DeviceView<int> types, DeviceView<int> positions, DeviceView<float> wte,
        DeviceView<float> wpe, DeviceView<float> wtt, DeviceView<float> output, int batch, int seqLen, int dim);

    /// <summary>
    /// <see cref="EmbeddingForward(DeviceView{int}, DeviceView{int}, DeviceView{int}, DeviceView{float}, DeviceView{float}, DeviceView{float}, DeviceView{float}, int, int, int)"/> with a word table that may be stored in bf16 (frozen weights,
    /// <see cref="WeightPrecision.Bf16"/>): the gathered rows are widened to fp32.
    /// </summary>
    public void EmbeddingForward(DeviceView<int> ids, DeviceView<int> types, DeviceView<int> positions, WeightMatrix wte,
        DeviceView<float> wpe, DeviceView<float> wtt, DeviceView<float> output, int batch, int seqLen, int dim)
    {
        if (wte.IsBf16) EmbeddingForwardBf16(ids, types, positions, wte.Bf16, wpe, wtt, output, batch, seqLen, dim);
        else EmbeddingForward(ids, types, positions, wte.Fp32, wpe, wtt, output, batch, seqLen, dim);
    }

    /// <summary>The bf16-table gather behind <see cref="EmbeddingForward(DeviceView{int}, DeviceView{int}, DeviceView{int}, WeightMatrix, DeviceView{float}, DeviceView{float}, DeviceView{float}, int, int, int)"/>.</summary>
    protected virtual void EmbeddingForwardBf16(DeviceView<int> ids, DeviceView<int> types, DeviceView<int> positions, DeviceView<ushort> wte,
        DeviceView<float> wpe, DeviceView<float> wtt, DeviceView<float> output, int batch, int seqLen, int dim) =>
        throw new NotSupportedException($"the {Name} backend has no bf16 embedding table");

    /// <summary>
    /// Backward of <see cref="EmbeddingForward(DeviceView{int}, DeviceView{int}, DeviceView{int}, DeviceView{float}, DeviceView{float}, DeviceView{float}, DeviceView{float}, int, int, int)"/>: scatter-adds dOutput [B·T, d] into the table gradients
    /// (dWte[ids] +=, dWpe[positions] +=, dWtt[types] +=); an empty gradient view is skipped.
    /// </summary>
    public abstract void EmbeddingBackward(DeviceView<int> ids, DeviceView<int> types, DeviceView<int> positions, DeviceView<float> dOutput,
        DeviceView<float> dWte, DeviceView<float> dWpe, DeviceView<float> dWtt, int batch, int seqLen, int dim);

    /// <summary>
    /// <see cref="EmbeddingForward(DeviceView{int}, DeviceView{int}, DeviceView{int}, DeviceView{float}, DeviceView{float}, DeviceView{float}, DeviceView{float}, int, int, int)"/> into <paramref name="sum"/>, then <see cref="LayerNormForward"/> of it
    /// (<see cref="Kernels.EmbeddingLayerNorm"/>): one launch on the GPU. Its backward is the LayerNorm's, then the embedding's.
    /// </summary>
    public abstract void EmbeddingLayerNormForward(DeviceView<int> ids, DeviceView<int> types, DeviceView<int> positions, DeviceView<float> wte,
        DeviceView<float> wpe, DeviceView<float> wtt, DeviceView<float> sum, DeviceView<float> gamma, DeviceView<float> beta, DeviceView<float> y,
        DeviceView<float> mean, DeviceView<float> rstd, int batch, int seqLen, int dim, float epsilon);

    /// <summary>matrix[r, column0 + c] += scale·block[r, c]: adds a [rows, width] block into columns of a [rows, columns] matrix.</summary>
    public abstract void AddColumnBlock(DeviceView<float> block, DeviceView<float> matrix, int rows, int width, int columns, int column0, float scale);

    /// <summary>dBlock[r, c] += scale·dMatrix[r, column0 + c]: the backward of <see cref="AddColumnBlock"/> (a strided extract).</summary>
    public abstract void ColumnBlockBackward(DeviceView<float> dMatrix, DeviceView<float> dBlock, int rows, int width, int columns, int column0, float scale);

    /// <summary>
    /// y[B, m+T, d] = [prompt; x[b]] for every example; with <paramref name="promptChoice"/> [B] (inference) the prompts are
    /// A runs' stacked [A, m, d] and example b takes prompt promptChoice[b].
    /// </summary>
    public abstract void Prepend(DeviceView<float> prompt, DeviceView<float> x, DeviceView<float> y, int batch, int promptLen, int seqLen, int dim,
        DeviceView<int> promptChoice = default);

    /// <summary>dPrompt[m, d] += Σ_b dy[b, 0:m, :].</summary>
    public abstract void PrependBackward(DeviceView<float> dy, DeviceView<float> dPrompt, DeviceView<float> dx, int batch, int promptLen, int seqLen, int dim);

    /// <summary>C = op(A)·op(B) (+ bias) (+= when accumulating).</summary>
    public abstract void Gemm(GemmOp op, int m, int n, int k, DeviceView<float> a, DeviceView<float> b, DeviceView<float> c,
        DeviceView<float> bias = default, bool accumulate = false);

    /// <summary>
    /// C = A·op(W) (+ bias) (+= when accumulating) with a weight operand that may be stored in bf16 (frozen weights: only
    /// the NN forward and the NT input-gradient forms exist for those; a frozen weight takes no gradient).
    /// </summary>
    public void Gemm(GemmOp op, int m, int n, int k, DeviceView<float> a, WeightMatrix b, DeviceView<float> c,
        DeviceView<float> bias = default, bool accumulate = false)
    {
        if (b.IsBf16) GemmBf16(op, m, n, k, a, b.Bf16, c, bias, accumulate);
        else Gemm(op, m, n, k, a, b.Fp32, c, bias, accumulate);
    }

    /// <summary>
    /// The FFN's input projection with its GELU (erf): pre = x·W + bias [m, n], act = GELU(pre). The GPU does it in one
    /// launch (the GEMM's <see cref="GemmEpilogue.Gelu"/> epilogue); here, the GEMM and the activation.
    /// </summary>
    public virtual void GemmGeluForward(int m, int n, int k, DeviceView<float> x, WeightMatrix w, DeviceView<float> bias, DeviceView<float> pre,
        DeviceView<float> act)
    {
        Gemm(GemmOp.NN, m, n, k, x, w, pre, bias);
        GeluForward(pre, act);
    }

    /// <summary>
    /// Backward through the activation of <see cref="GemmGeluForward"/>'s FFN, from the next projection's output gradient:
    /// dPre = GELU'(pre)·(dy·Wᵀ) [m, n], W [n, k] (overwritten, not accumulated). The GPU does it in one launch (the GEMM's
    /// <see cref="GemmEpilogue.GeluSlope"/> epilogue); here, the GEMM into <paramref name="scratch"/> [m, n] and the GELU backward.
    /// </summary>
    public virtual void GemmGeluBackward(int m, int n, int k, DeviceView<float> dy, WeightMatrix w, DeviceView<float> pre, DeviceView<float> dPre,
        DeviceView<float> scratch)
    {
        Gemm(GemmOp.NT, m, n, k, dy, w, scratch);
        Zero(dPre);
        GeluBackward(scratch, pre, dPre);
    }

    /// <summary>The bf16-weight GEMM behind <see cref="Gemm(GemmOp, int, int, int, DeviceView{float}, WeightMatrix, DeviceView{float}, DeviceView{float}, bool)"/>.</summary>
    protected virtual void GemmBf16(GemmOp op, int m, int n, int k, DeviceView<float> a, DeviceView<ushort> b, DeviceView<float> c,
        DeviceView<float> bias, bool accumulate) =>
        throw new NotSupportedException($"the {Name} backend has no bf16-weight GEMM");

    /// <summary>
    /// y[g] = dropout(x·W_g + b_g) for g = 0..groups−1 (<see cref="Kernels.GroupedLinear"/>): x [rows, in], y [groups, rows, out],
    /// each map packed [(in + 1), out] (weight rows, then the bias) at stride (in + 1)·out in <paramref name="weights"/>; element i
    /// of y keeps with the dropout mask at (seed, offset + i) (p = 0: no dropout). One launch on the GPU for all maps.
    /// </summary>
    public abstract void GroupedLinearForward(DeviceView<float> x, DeviceView<float> weights, DeviceView<float> y, int groups, int rows,
        int inWidth, int outWidth, float dropout, ulong seed, long offset);

    /// <summary>Backward of <see cref="GroupedLinearForward"/>: dWeights[g] += [x, 1]ᵀ·(dy[g]·mask/(1 − p)) (weights and biases).</summary>
    public abstract void GroupedLinearBackward(DeviceView<float> x, DeviceView<float> dy, DeviceView<float> dWeights, int groups, int rows,
        int inWidth, int outWidth, float dropout, ulong seed, long offset);

    /// <summary>LayerNorm over the last dimension, saving mean and reciprocal std per row.</summary>
    public abstract void LayerNormForward(DeviceView<float> x, DeviceView<float> gamma, DeviceView<float> beta, DeviceView<float> y,
        DeviceView<float> mean, DeviceView<float> rstd, int rows, int dim, float epsilon);

    /// <summary>
    /// sum = x + residual (sum may alias x), then <see cref="LayerNormForward"/> of sum (<see cref="Kernels.ResidualLayerNorm"/>):
    /// one launch on the GPU. Its backward is <see cref="LayerNormBackward"/> on sum.
    /// </summary>
    public abstract void ResidualLayerNormForward(DeviceView<float> x, DeviceView<float> residual, DeviceView<float> sum, DeviceView<float> gamma,
        DeviceView<float> beta, DeviceView<float> y, DeviceView<float> mean, DeviceView<float> rstd, int rows, int dim, float epsilon);

    /// <summary>dx += LayerNorm'ᵀ·dy (γ/β gradients skipped when their views are empty).</summary>
    public abstract void LayerNormBackward(DeviceView<float> dy, DeviceView<float> x, DeviceView<float> gamma, DeviceView<float> mean,
        DeviceView<float> rstd, DeviceView<float> dx, DeviceView<float> dGamma, DeviceView<float> dBeta, int rows, int dim);

    /// <summary>y = GELU(x) (erf form).</summary>
    public abstract void GeluForward(DeviceView<float> x, DeviceView<float> y);

    /// <summary>dx += GELU'(x)·dy.</summary>
    public abstract void GeluBackward(DeviceView<float> dy, DeviceView<float> x, DeviceView<float> dx);

    /// <summary>RMSNorm over the last dimension: y = x·rstd·γ, rstd = 1/√(mean(x²) + ε); saves rstd per row.</summary>
    public abstract void RmsNormForward(DeviceView<float> x, DeviceView<float> gamma, DeviceView<float> y, DeviceView<float> rstd, int rows, int dim, float epsilon);

    /// <summary>dx += RMSNorm'ᵀ·dy; dGamma += Σ_rows dy·x·rstd (each skipped when its view is empty).</summary>
    public abstract void RmsNormBackward(DeviceView<float> dy, DeviceView<float> x, DeviceView<float> gamma, DeviceView<float> rstd,
        DeviceView<float> dx, DeviceView<float> dGamma, int rows, int dim);

    /// <summary>y = GELU(x), tanh form: 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))) (Hugging Face gelu_new / gelu_pytorch_tanh).</summary>
    public abstract void GeluTanhForward(DeviceView<float> x, DeviceView<float> y);

    /// <summary>dx += GELU_tanh'(x)·dy.</summary>
    public abstract void GeluTanhBackward(DeviceView<float> dy, DeviceView<float> x, DeviceView<float> dx);

    /// <summary>SwiGLU: y[r, j] = silu(gateUp[r, j]) · gateUp[r, F + j]; gateUp is [rows, 2F] (columns gate | up), y [rows, F].</summary>
    public abstract void SwiGluForward(DeviceView<float> gateUp, DeviceView<float> y, int rows, int ffn);

    /// <summary>dGateUp += the gate and up gradients of <see cref="SwiGluForward"/>, [rows, 2F].</summary>
    public abstract void SwiGluBackward(DeviceView<float> dy, DeviceView<float> gateUp, DeviceView<float> dGateUp, int rows, int ffn);

    /// <summary>
    /// Rotary position embedding IN PLACE on the first heads·headDim columns of each of <paramref name="rows"/> rows of x (row r starts
    /// at r·stride): within each head, the first rotaryDim values pair i ↔ i + rotaryDim/2 (Hugging Face rotate_half layout, as
    /// LLaMA/GPT-NeoX/Phi); x' = x·cos + rotate_half(x)·sin with angle index positions[r]; cos/sin are tables
    /// [maxPositions, rotaryDim/2] (<see cref="Rope.Tables"/>); dims ≥ rotaryDim untouched.
    /// </summary>
    public abstract void RopeForward(DeviceView<float> x, DeviceView<int> positions, DeviceView<float> cos, DeviceView<float> sin,
        int rows, int stride, int heads, int headDim, int rotaryDim);

    /// <summary>The transpose of <see cref="RopeForward"/>, IN PLACE (the inverse rotation): turns d(loss)/d(rotated) into d(loss)/d(unrotated).</summary>
    public abstract void RopeBackward(DeviceView<float> dx, DeviceView<int> positions, DeviceView<float> cos, DeviceView<float> sin,
        int rows, int stride, int heads, int headDim, int rotaryDim);

    /// <summary>y = tanh(x).</summary>
    public abstract void TanhForward(DeviceView<float> x, DeviceView<float> y);

    /// <summary>dx += dy·(1 − y²), from the forward's output y.</summary>
    public abstract void TanhBackward(DeviceView<float> dy, DeviceView<float> y, DeviceView<float> dx);

    /// <summary>y = a + b.</summary>
    public abstract void Add(DeviceView<float> a, DeviceView<float> b, DeviceView<float> y);

    /// <summary>target += source.</summary>
    public abstract void Accumulate(DeviceView<float> source, DeviceView<float> target);

    /// <summary>
    /// Attention over [prefix; tokens] keys with the batch-shared prefix (see <see cref="Attention"/>): qkv [B·T, d + 2·dkv]
    /// with <see cref="AttentionShape.KvHeads"/> key/value heads (grouped-query when fewer than the query heads), prefix
    /// keys and values [m, dkv]; padded keys score + (1 − mask)·maskValue (float.MinValue allowed); with causal, query i
    /// sees the prefix and token keys j ≤ i; with ALiBi slopes [H] (empty: none), every key also scores + slope·position
    /// (prefix key j at j, token keys at <paramref name="keyPositions"/> [B·T]). Writes the output [B·T, d] and saves the
    /// probabilities [B, H, T, m+T]. With <paramref name="prefixChoice"/> [B] (inference only: the backward takes one prefix)
    /// the prefixes are A runs' stacked [A, m, dkv] and example b reads prefix prefixChoice[b] ∈ [0, A).
    /// </summary>
    public abstract void AttentionForward(AttentionShape shape, float maskValue, bool causal, DeviceView<float> qkv, DeviceView<float> prefixK,
        DeviceView<float> prefixV, DeviceView<float> keyMask, DeviceView<float> alibiSlopes, DeviceView<int> keyPositions,
        DeviceView<float> output, DeviceView<float> probabilities, DeviceView<int> prefixChoice = default);

    /// <summary>
    /// Backward of <see cref="AttentionForward"/>: accumulates into dqkv (key/value columns summed over each group's query
    /// heads) and into the prefix gradients [m, dkv] summed over the batch and the group.
    /// </summary>
    public abstract void AttentionBackward(AttentionShape shape, DeviceView<float> dOutput, DeviceView<float> qkv, DeviceView<float> prefixK,
        DeviceView<float> prefixV, DeviceView<float> probabilities, DeviceView<float> dqkv, DeviceView<float> dPrefixK, DeviceView<float> dPrefixV);

    /// <summary>Upload a float array's contents; convenience for host-built tensors.</summary>
    public DeviceArray<float> UploadNew(ReadOnlySpan<float> host)
    {
        var a = Allocate(host.Length);
        if (host.Length > 0) Upload(host, a.Slice(0, host.Length));
        return a;
    }

    /// <summary>Downloads a view into a new host array.</summary>
    public float[] ToHost(DeviceView<float> view)
    {
        var host = new float[view.Length];
        Download(view, host);
        return host;
    }

    /// <summary>output[b] = mean of x[b, skip + t] over t with mask[b, t] ≠ 0; x is [B, T, d], mask [B, T − skip].</summary>
    public abstract void MeanPoolForward(DeviceView<float> x, DeviceView<int> mask, DeviceView<float> output, int batch, int seqLen, int skip, int dim);

    /// <summary>
    /// output = dropout(<see cref="MeanPoolForward"/>) [B, d], element b·d + c kept with the mask at (seed, b·d + c) (p = 0:
    /// the pooling alone): a sequence head's input in one launch on the GPU (<see cref="Kernels.MeanPoolDropout"/>).
    /// </summary>
    public abstract void MeanPoolDropoutForward(DeviceView<float> x, DeviceView<int> mask, DeviceView<float> output, int batch, int seqLen, int skip, int dim,
        float dropout, ulong seed);

    /// <summary>dX += backward of <see cref="MeanPoolDropoutForward"/>.</summary>
    public abstract void MeanPoolDropoutBackward(DeviceView<float> dOutput, DeviceView<int> mask, DeviceView<float> dX, int batch, int seqLen, int skip, int dim,
        float dropout, ulong seed);

    /// <summary>dX += backward of <see cref="MeanPoolForward"/>.</summary>
    public abstract void MeanPoolBackward(DeviceView<float> dOutput, DeviceView<int> mask, DeviceView<float> dX, int batch, int seqLen, int skip, int dim);

    /// <summary>
    /// Mean softmax cross-entropy over rows whose label is not −100, written to <paramref name="loss"/>[0] on the device (the
    /// host reads it only when it needs it); dLogits += its gradient (empty = loss only).
    /// </summary>
    public abstract void SoftmaxCrossEntropy(DeviceView<float> logits, DeviceView<int> labels, int validCount, DeviceView<float> dLogits, int rows, int classes,
        DeviceView<float> loss);

    /// <summary>Mean squared error, written to <paramref name="loss"/>[0] on the device; dPredictions += its gradient (empty = loss only).</summary>
    public abstract void MeanSquaredError(DeviceView<float> predictions, DeviceView<float> targets, DeviceView<float> dPredictions, DeviceView<float> loss);

    /// <summary>y = x·keep/(1 − p), keep drawn from the counter-based RNG at (seed, offset + i).</summary>
    public abstract void DropoutForward(DeviceView<float> x, DeviceView<float> y, float p, ulong seed, long offset);

    /// <summary>dx += dy·keep/(1 − p) with the same mask as the forward.</summary>
    public abstract void DropoutBackward(DeviceView<float> dy, DeviceView<float> dx, float p, ulong seed, long offset);

    /// <summary>dBias += column sums of dy [rows, dim].</summary>
    public abstract void BiasBackward(DeviceView<float> dy, DeviceView<float> dBias, int rows, int dim);

    /// <summary>
    /// Gradient clipping without a host wait: the global L2 norm of <paramref name="gradient"/> (fp64 accumulation,
    /// deterministic) into <paramref name="norm"/>[0], and <c>min(1, maxNorm/(norm + 1e-6))</c> into <paramref name="clipScale"/>[0],
    /// NaN when the norm is not finite (<see cref="AdamW"/> then skips the step).
    /// </summary>
    public abstract void GradientClip(DeviceView<float> gradient, float maxNorm, DeviceView<float> norm, DeviceView<float> clipScale);

    /// <summary>One fused AdamW step over a flat parameter buffer, the gradient scaled by <paramref name="clipScale"/>[0] (NaN: no step).</summary>
    public abstract void AdamW(DeviceView<float> parameters, DeviceView<float> gradient, DeviceView<float> m, DeviceView<float> v, AdamWStep step,
        DeviceView<float> clipScale);

    /// <inheritdoc />
    public abstract void Dispose();
}

/// <summary>Which operands of a GEMM are transposed (row-major storage).</summary>
public enum GemmOp
{
    /// <summary>C[M,N] = A[M,K]·B[K,N].</summary>
    NN,
    /// <summary>C[M,N] = A[M,K]·B[N,K]ᵀ.</summary>
    NT,
    /// <summary>C[M,N] = A[K,M]ᵀ·B[K,N].</summary>
    TN,
}
