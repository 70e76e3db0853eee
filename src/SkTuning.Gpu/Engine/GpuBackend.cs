using ILGPU;
using ILGPU.Runtime;
using SkTuning.Gpu.Kernels;
using SkTuning.Gpu.Kernels.Gpu;

namespace SkTuning.Gpu.Engine;

/// <summary>
/// The ILGPU backend: every operation launches a kernel on the device (CUDA, or ILGPU's CPU simulator in tests).
/// Launches are asynchronous on the accelerator's default stream; <see cref="Download"/> and
/// <see cref="Synchronize"/> wait.
/// </summary>
public sealed class GpuBackend : Backend
{
    private readonly GpuDevice _device;
    private readonly bool _ownsDevice;
    private MemoryBuffer1D<float, Stride1D.Dense>? _attentionScratch, _lossScratch;
    private MemoryBuffer1D<double, Stride1D.Dense>? _normPartials;
    private readonly StagingRing _staging;

    /// <summary>Wraps a device (disposed with the backend when <paramref name="ownsDevice"/>).</summary>
    public GpuBackend(GpuDevice device, bool ownsDevice = true)
    {
        _device = device;
        _ownsDevice = ownsDevice;
        _staging = new StagingRing(device.Accelerator);
    }

    /// <summary>Whether a step's uploads are staged in page-locked memory and copied asynchronously (else each one synchronises).</summary>
    public bool StagesUploads => _staging.Supported;

    /// <inheritdoc />
    public override string Name => _device.IsCuda ? "cuda" : "ilgpu-cpu";

    /// <summary>The device kernels run on.</summary>
    public GpuDevice Device => _device;

    private long _uploads, _synchronousUploads, _memoryOperations;

    /// <summary>
    /// What this backend has asked of the device so far: kernel launches, memsets/copies, host→device uploads (and how many
    /// of them were synchronous: not staged), host waits (every read-back waits) and waits for a staging slot. Subtract two
    /// readings for one step's counts.
    /// </summary>
    public DeviceTraffic Traffic => new(_device.Launches, Interlocked.Read(ref _memoryOperations), Interlocked.Read(ref _uploads), _device.Synchronizations,
        _device.LaunchesByKernel, Interlocked.Read(ref _synchronousUploads), _staging.Waits);

    private sealed class DeviceBuffer<T>(MemoryBuffer1D<T, Stride1D.Dense> buffer) : DeviceArray<T>((int)buffer.Length) where T : unmanaged
    {
        public readonly MemoryBuffer1D<T, Stride1D.Dense> Buffer = buffer;
        public override void Dispose()
        {
            Buffer.Dispose();
            Release();
        }
    }

    private static ArrayView<float> V(DeviceView<float> v) =>
        v.IsEmpty ? ArrayView<float>.Empty : ((DeviceBuffer<float>)v.Array!).Buffer.View.SubView(v.Offset, v.Length);

    private static ArrayView<int> V(DeviceView<int> v) =>
        v.IsEmpty ? ArrayView<int>.Empty : ((DeviceBuffer<int>)v.Array!).Buffer.View.SubView(v.Offset, v.Length);

    /// <inheritdoc />
    public override DeviceArray<float> Allocate(int length)
    {
        var buffer = _device.Accelerator.Allocate1D<float>(Math.Max(length, 1));
        buffer.MemSetToZero();
        return new DeviceBuffer<float>(buffer).Metered(Memory);
    }

    /// <inheritdoc />
    public override DeviceArray<int> AllocateInts(int length)
    {
        var buffer = _device.Accelerator.Allocate1D<int>(Math.Max(length, 1));
        buffer.MemSetToZero();
        return new DeviceBuffer<int>(buffer).Metered(Memory);
    }

    /// <inheritdoc />
    public override void Upload(ReadOnlySpan<float> source, DeviceView<float> target)
    {
        if (source.Length != target.Length) throw new ArgumentException($"upload of {source.Length} values into a view of {target.Length}");
        if (source.Length == 0) return;
        Interlocked.Increment(ref _uploads);
        Stage(source, V(target));
    }

    /// <inheritdoc />
    public override void Upload(ReadOnlySpan<int> source, DeviceView<int> target)
    {
        if (source.Length != target.Length) throw new ArgumentException($"upload of {source.Length} ints into a view of {target.Length}");
        if (source.Length == 0) return;
        Interlocked.Increment(ref _uploads);
        Stage(source, V(target));
    }

    private void Stage<T>(ReadOnlySpan<T> source, ArrayView<T> target) where T : unmanaged
    {
        if (_staging.TryUpload(source, target)) return;
        Interlocked.Increment(ref _synchronousUploads);
        target.CopyFromCPU(source);   // from pageable memory: waits for the stream
    }

    /// <inheritdoc />
    public override void BeginStep() => _staging.Begin();

    /// <inheritdoc />
    public override void EndStep() => _staging.End();

    /// <inheritdoc />
    public override void Download(DeviceView<float> source, Span<float> target)
    {
        if (source.Length != target.Length) throw new ArgumentException($"download of {source.Length} values into {target.Length}");
        _device.Synchronize();
        if (source.Length > 0) V(source).CopyToCPU(target);
    }

    /// <inheritdoc />
    public override void Zero(DeviceView<float> view)
    {
        if (view.IsEmpty) return;
        Interlocked.Increment(ref _memoryOperations);
        V(view).MemSetToZero();
    }

    /// <inheritdoc />
    public override void Copy(DeviceView<float> source, DeviceView<float> target)
    {
        if (source.Length != target.Length) throw new ArgumentException($"copy of {source.Length} values into a view of {target.Length}");
        if (source.IsEmpty) return;
        Interlocked.Increment(ref _memoryOperations);
        V(source).CopyTo(V(target));
    }

    /// <inheritdoc />
    public override void Synchronize() => _device.Synchronize();

    /// <inheritdoc />
    public override void EmbeddingForward(DeviceView<int> ids, DeviceView<int> types, DeviceView<int> positions, DeviceView<float> wte,
        DeviceView<float> wpe, DeviceView<float> wtt, DeviceView<float> output, int batch, int seqLen, int dim) =>
        Embedding.Forward(_device, V(ids), V(types), V(positions), V(wte), V(wpe), V(wtt), V(output), batch, seqLen, dim);

    /// <inheritdoc />
    public override void EmbeddingBackward(DeviceView<int> ids, DeviceView<int> types, DeviceView<int> positions, DeviceView<float> dOutput,
        DeviceView<float> dWte, DeviceView<float> dWpe, DeviceView<float> dWtt, int batch, int seqLen, int dim) =>
        Embedding.Backward(_device, V(ids), V(types), V(positions), V(dOutput), V(dWte), V(dWpe), V(dWtt), batch, seqLen, dim);

    /// <inheritdoc />
    public override void EmbeddingLayerNormForward(DeviceView<int> ids, DeviceView<int> types, DeviceView<int> positions, DeviceView<float> wte,
        DeviceView<float> wpe, DeviceView<float> wtt, DeviceView<float> sum, DeviceView<float> gamma, DeviceView<float> beta, DeviceView<float> y,
        DeviceView<float> mean, DeviceView<float> rstd, int batch, int seqLen, int dim, float epsilon) =>
        EmbeddingLayerNorm.Forward(_device, V(ids), V(types), V(positions), V(wte), V(wpe), V(wtt), V(sum), V(gamma), V(beta), V(y), V(mean),
            V(rstd), batch, seqLen, dim, epsilon);

    /// <inheritdoc />
    public override void AddColumnBlock(DeviceView<float> block, DeviceView<float> matrix, int rows, int width, int columns, int column0, float scale) =>
        ColumnBlock.Forward(_device, V(block), V(matrix), rows, width, columns, column0, scale);

    /// <inheritdoc />
    public override void ColumnBlockBackward(DeviceView<float> dMatrix, DeviceView<float> dBlock, int rows, int width, int columns, int column0, float scale) =>
        ColumnBlock.Backward(_device, V(dMatrix), V(dBlock), rows, width, columns, column0, scale);

    /// <inheritdoc />
    public override void Prepend(DeviceView<float> prompt, DeviceView<float> x, DeviceView<float> y, int batch, int promptLen, int seqLen, int dim,
        DeviceView<int> promptChoice = default) =>
        Kernels.Prepend.Forward(_device, V(prompt), V(x), V(y), batch, promptLen, seqLen, dim, V(promptChoice));

    /// <inheritdoc />
    public override void PrependBackward(DeviceView<float> dy, DeviceView<float> dPrompt, DeviceView<float> dx, int batch, int promptLen, int seqLen, int dim)
    {
        if (!dPrompt.IsEmpty) Kernels.Prepend.PromptGradient(_device, V(dy), V(dPrompt), batch, promptLen, seqLen, dim);
        if (!dx.IsEmpty) Kernels.Prepend.InputGradient(_device, V(dy), V(dx), batch, promptLen, seqLen, dim);
    }

    /// <inheritdoc />
    public override void Gemm(GemmOp op, int m, int n, int k, DeviceView<float> a, DeviceView<float> b, DeviceView<float> c,
        DeviceView<float> bias = default, bool accumulate = false)
    {
        switch (op)
        {
            case GemmOp.NN: GemmGpu.NN(_device, m, n, k, V(a), V(b), V(c), V(bias), accumulate); break;
            case GemmOp.NT: GemmGpu.NT(_device, m, n, k, V(a), V(b), V(c), V(bias), accumulate); break;
            default: GemmGpu.TN(_device, m, n, k, V(a), V(b), V(c), V(bias), accumulate); break;
        }
    }

    /// <inheritdoc />
    public override void GroupedLinearForward(DeviceView<float> x, DeviceView<float> weights, DeviceView<float> y, int groups, int rows,
        int inWidth, int outWidth, float dropout, ulong seed, long offset) =>
        GroupedLinear.Forward(_device, V(x), V(weights), V(y), groups, rows, inWidth, outWidth, dropout, seed, offset);

    /// <inheritdoc />
    public override void GroupedLinearBackward(DeviceView<float> x, DeviceView<float> dy, DeviceView<float> dWeights, int groups, int rows,
        int inWidth, int outWidth, float dropout, ulong seed, long offset) =>
        GroupedLinear.Backward(_device, V(x), V(dy), V(dWeights), groups, rows, inWidth, outWidth, dropout, seed, offset);

    /// <inheritdoc />
    public override void GemmGeluForward(int m, int n, int k, DeviceView<float> x, WeightMatrix w, DeviceView<float> bias, DeviceView<float> pre,
        DeviceView<float> act) =>
        GemmGpu.NN(_device, m, n, k, V(x), V(w.Fp32), V(act), V(bias), epilogue: GemmEpilogue.Gelu, aux: V(pre));

    /// <inheritdoc />
    public override void GemmGeluBackward(int m, int n, int k, DeviceView<float> dy, WeightMatrix w, DeviceView<float> pre, DeviceView<float> dPre,
        DeviceView<float> scratch) =>
        GemmGpu.NT(_device, m, n, k, V(dy), V(w.Fp32), V(dPre), epilogue: GemmEpilogue.GeluSlope, aux: V(pre));

    /// <inheritdoc />
    public override void LayerNormForward(DeviceView<float> x, DeviceView<float> gamma, DeviceView<float> beta, DeviceView<float> y,
        DeviceView<float> mean, DeviceView<float> rstd, int rows, int dim, float epsilon) =>
        LayerNorm.Forward(_device, V(x), V(gamma), V(beta), V(y), V(mean), V(rstd), rows, dim, epsilon);

    /// <inheritdoc />
    public override void ResidualLayerNormForward(DeviceView<float> x, DeviceView<float> residual, DeviceView<float> sum, DeviceView<float> gamma,
        DeviceView<float> beta, DeviceView<float> y, DeviceView<float> mean, DeviceView<float> rstd, int rows, int dim, float epsilon) =>
        ResidualLayerNorm.Forward(_device, V(x), V(residual), V(sum), V(gamma), V(beta), V(y), V(mean), V(rstd), rows, dim, epsilon);

    /// <inheritdoc />
    public override void LayerNormBackward(DeviceView<float> dy, DeviceView<float> x, DeviceView<float> gamma, DeviceView<float> mean,
        DeviceView<float> rstd, DeviceView<float> dx, DeviceView<float> dGamma, DeviceView<float> dBeta, int rows, int dim) =>
        LayerNorm.Backward(_device, V(dy), V(x), V(gamma), V(mean), V(rstd), V(dx), V(dGamma), V(dBeta), rows, dim);

    /// <inheritdoc />
    public override void GeluForward(DeviceView<float> x, DeviceView<float> y) => Gelu.Forward(_device, V(x), V(y));

    /// <inheritdoc />
    public override void GeluBackward(DeviceView<float> dy, DeviceView<float> x, DeviceView<float> dx) => Gelu.Backward(_device, V(dy), V(x), V(dx));

    /// <inheritdoc />
    public override void RmsNormForward(DeviceView<float> x, DeviceView<float> gamma, DeviceView<float> y, DeviceView<float> rstd, int rows, int dim, float epsilon) =>
        RmsNorm.Forward(_device, V(x), V(gamma), V(y), V(rstd), rows, dim, epsilon);

    /// <inheritdoc />
    public override void RmsNormBackward(DeviceView<float> dy, DeviceView<float> x, DeviceView<float> gamma, DeviceView<float> rstd,
        DeviceView<float> dx, DeviceView<float> dGamma, int rows, int dim) =>
        RmsNorm.Backward(_device, V(dy), V(x), V(gamma), V(rstd), V(dx), V(dGamma), rows, dim);

    /// <inheritdoc />
    public override void GeluTanhForward(DeviceView<float> x, DeviceView<float> y) => GeluTanh.Forward(_device, V(x), V(y));

    /// <inheritdoc />
    public override void GeluTanhBackward(DeviceView<float> dy, DeviceView<float> x, DeviceView<float> dx) => GeluTanh.Backward(_device, V(dy), V(x), V(dx));

    /// <inheritdoc />
    public override void SwiGluForward(DeviceView<float> gateUp, DeviceView<float> y, int rows, int ffn) => SwiGlu.Forward(_device, V(gateUp), V(y), rows, ffn);

    /// <inheritdoc />
    public override void SwiGluBackward(DeviceView<float> dy, DeviceView<float> gateUp, DeviceView<float> dGateUp, int rows, int ffn) =>
        SwiGlu.Backward(_device, V(dy), V(gateUp), V(dGateUp), rows, ffn);

    /// <inheritdoc />
    public override void RopeForward(DeviceView<float> x, DeviceView<int> positions, DeviceView<float> cos, DeviceView<float> sin,
        int rows, int stride, int heads, int headDim, int rotaryDim) =>
        Rope.Forward(_device, V(x), V(positions), V(cos), V(sin), rows, stride, heads, headDim, rotaryDim);

    /// <inheritdoc />
    public override void RopeBackward(DeviceView<float> dx, DeviceView<int> positions, DeviceView<float> cos, DeviceView<float> sin,
        int rows, int stride, int heads, int headDim, int rotaryDim) =>
        Rope.Backward(_device, V(dx), V(positions), V(cos), V(sin), rows, stride, heads, headDim, rotaryDim);

    /// <inheritdoc />
    public override void TanhForward(DeviceView<float> x, DeviceView<float> y) => Tanh.Forward(_device, V(x), V(y));

    /// <inheritdoc />
    public override void TanhBackward(DeviceView<float> dy, DeviceView<float> y, DeviceView<float> dx) => Tanh.Backward(_device, V(dy), V(y), V(dx));

    /// <inheritdoc />
    public override void Add(DeviceView<float> a, DeviceView<float> b, DeviceView<float> y) => Residual.Forward(_device, V(a), V(b), V(y));

    /// <inheritdoc />
    public override void Accumulate(DeviceView<float> source, DeviceView<float> target) =>
        Residual.Forward(_device, V(target), V(source), V(target));

    /// <inheritdoc />
    public override void AttentionForward(AttentionShape shape, float maskValue, bool causal, DeviceView<float> qkv, DeviceView<float> prefixK,
        DeviceView<float> prefixV, DeviceView<float> keyMask, DeviceView<float> alibiSlopes, DeviceView<int> keyPositions,
        DeviceView<float> output, DeviceView<float> probabilities, DeviceView<int> prefixChoice = default) =>
        AttentionGpu.Forward(_device, V(qkv), V(prefixK), V(prefixV), V(keyMask), V(output), V(probabilities), shape, maskValue, causal,
            V(alibiSlopes), V(keyPositions), V(prefixChoice));

    /// <inheritdoc />
    public override void AttentionBackward(AttentionShape shape, DeviceView<float> dOutput, DeviceView<float> qkv, DeviceView<float> prefixK,
        DeviceView<float> prefixV, DeviceView<float> probabilities, DeviceView<float> dqkv, DeviceView<float> dPrefixK, DeviceView<float> dPrefixV)
    {
        int need = AttentionGpu.BackwardScratchLength(shape);
        if (_attentionScratch is null || _attentionScratch.Length < need)
        {
            _attentionScratch?.Dispose();
            _attentionScratch = _device.Accelerator.Allocate1D<float>(need);
        }
        AttentionGpu.Backward(_device, V(dOutput), V(qkv), V(prefixK), V(prefixV), V(probabilities), V(dqkv), V(dPrefixK), V(dPrefixV),
            _attentionScratch.View.SubView(0, need), shape);
    }

    private ArrayView<float> LossScratch(int length)
    {
        if (_lossScratch is null || _lossScratch.Length < length)
        {
            _lossScratch?.Dispose();
            _lossScratch = _device.Accelerator.Allocate1D<float>(Math.Max(length, 1024));
        }
        return _lossScratch.View.SubView(0, length);
    }

    /// <inheritdoc />
    public override void MeanPoolForward(DeviceView<float> x, DeviceView<int> mask, DeviceView<float> output, int batch, int seqLen, int skip, int dim) =>
        MeanPooling.Forward(_device, V(x), V(mask), V(output), batch, seqLen, skip, dim);

    /// <inheritdoc />
    public override void MeanPoolDropoutForward(DeviceView<float> x, DeviceView<int> mask, DeviceView<float> output, int batch, int seqLen, int skip, int dim,
        float dropout, ulong seed) =>
        MeanPoolDropout.Forward(_device, V(x), V(mask), V(output), batch, seqLen, skip, dim, dropout, seed);

    /// <inheritdoc />
    public override void MeanPoolDropoutBackward(DeviceView<float> dOutput, DeviceView<int> mask, DeviceView<float> dX, int batch, int seqLen, int skip, int dim,
        float dropout, ulong seed) =>
        MeanPoolDropout.Backward(_device, V(dOutput), V(mask), V(dX), batch, seqLen, skip, dim, dropout, seed);

    /// <inheritdoc />
    public override void MeanPoolBackward(DeviceView<float> dOutput, DeviceView<int> mask, DeviceView<float> dX, int batch, int seqLen, int skip, int dim) =>
        MeanPooling.Backward(_device, V(dOutput), V(mask), V(dX), batch, seqLen, skip, dim);

    /// <inheritdoc />
    public override void SoftmaxCrossEntropy(DeviceView<float> logits, DeviceView<int> labels, int validCount, DeviceView<float> dLogits, int rows, int classes,
        DeviceView<float> loss)
    {
        Kernels.SoftmaxCrossEntropy.ForwardBackwardMean(_device, V(logits), V(labels), V(dLogits), V(loss), rows, classes, validCount);
    }

    /// <inheritdoc />
    public override void MeanSquaredError(DeviceView<float> predictions, DeviceView<float> targets, DeviceView<float> dPredictions, DeviceView<float> loss)
    {
        var squared = LossScratch(predictions.Length);
        Kernels.MeanSquaredError.ForwardBackward(_device, V(predictions), V(targets), squared, V(dPredictions));
        DeviceSum.Mean(_device, squared, V(loss), predictions.Length);
    }

    /// <inheritdoc />
    public override void DropoutForward(DeviceView<float> x, DeviceView<float> y, float p, ulong seed, long offset) =>
        Dropout.Forward(_device, V(x), V(y), p, seed, offset);

    /// <inheritdoc />
    public override void DropoutBackward(DeviceView<float> dy, DeviceView<float> dx, float p, ulong seed, long offset) =>
        Dropout.Backward(_device, V(dy), V(dx), p, seed, offset);

    /// <inheritdoc />
    public override void BiasBackward(DeviceView<float> dy, DeviceView<float> dBias, int rows, int dim) => Bias.Backward(_device, V(dy), V(dBias), rows, dim);

    /// <inheritdoc />
    public override void GradientClip(DeviceView<float> gradient, float maxNorm, DeviceView<float> norm, DeviceView<float> clipScale)
    {
        if (_normPartials is null)
        {
            _normPartials = _device.Accelerator.Allocate1D<double>(GradientNorm.GpuWorkspace);
            _normPartials.MemSetToZero();   // the arrival count starts at zero; every launch leaves it there
        }
        GradientNorm.ClipScale(_device, V(gradient), _normPartials.View, V(norm), V(clipScale), maxNorm);
    }

    /// <inheritdoc />
    public override void AdamW(DeviceView<float> parameters, DeviceView<float> gradient, DeviceView<float> m, DeviceView<float> v, AdamWStep step,
        DeviceView<float> clipScale) =>
        Kernels.AdamW.Step(_device, V(parameters), V(gradient), V(m), V(v), V(clipScale), step);

    /// <inheritdoc />
    public override void Dispose()
    {
        _attentionScratch?.Dispose();
        _lossScratch?.Dispose();
        _normPartials?.Dispose();
        _staging.Dispose();
        if (_ownsDevice) _device.Dispose();
    }
}

/// <summary>Counts of device work requested by a <see cref="GpuBackend"/> (see <see cref="GpuBackend.Traffic"/>).</summary>
/// <param name="Launches">Kernel launches.</param>
/// <param name="MemoryOperations">Device memsets and device-to-device copies.</param>
/// <param name="Uploads">Host-to-device copies.</param>
/// <param name="Synchronizations">Host waits for the device (explicit, or before a read-back).</param>
/// <param name="LaunchesByKernel">The launches per kernel key (null when not taken).</param>
/// <param name="SynchronousUploads">Uploads copied from pageable memory (each waits for the stream): those not staged.</param>
/// <param name="StagingWaits">Times a step synchronised on the marker that releases its page-locked staging slot (two steps back).</param>
public readonly record struct DeviceTraffic(long Launches, long MemoryOperations, long Uploads, long Synchronizations,
    IReadOnlyDictionary<string, long>? LaunchesByKernel = null, long SynchronousUploads = 0, long StagingWaits = 0)
{
    /// <summary>The counts between two readings (kernels not launched in between left out of the histogram).</summary>
    public static DeviceTraffic operator -(DeviceTraffic after, DeviceTraffic before)
    {
        Dictionary<string, long>? byKernel = null;
        if (after.LaunchesByKernel is { } a)
        {
            byKernel = [];
            foreach (var (key, n) in a)
            {
                long d = n - (before.LaunchesByKernel?.GetValueOrDefault(key) ?? 0);
                if (d != 0) byKernel[key] = d;
            }
        }
        return new(after.Launches - before.Launches, after.MemoryOperations - before.MemoryOperations, after.Uploads - before.Uploads,
            after.Synchronizations - before.Synchronizations, byKernel, after.SynchronousUploads - before.SynchronousUploads,
            after.StagingWaits - before.StagingWaits);
    }

    /// <summary>The launch histogram, most launched kernel first (ties by name): "key count" per entry.</summary>
    public IEnumerable<(string Kernel, long Count)> Histogram() =>
        (LaunchesByKernel ?? new Dictionary<string, long>()).OrderByDescending(e => e.Value).ThenBy(e => e.Key, StringComparer.Ordinal)
            .Select(e => (e.Key, e.Value));

    /// <inheritdoc />
    public override string ToString() =>
        $"{Launches} launches, {MemoryOperations} memsets/copies, {Uploads} uploads ({SynchronousUploads} synchronous), {Synchronizations} host waits, " +
        $"{StagingWaits} staging waits";
}
