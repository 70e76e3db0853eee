[assembly: System.Runtime.CompilerServices.InternalsVisibleTo("ILGPURuntime")]

namespace SkTuning.Gpu.Kernels;

/// <summary>Size checks shared by the element-wise/normalisation/loss/optimizer ops.</summary>
internal static class OpsCheck
{
    /// <summary>Throws unless <paramref name="actual"/> equals <paramref name="expected"/>.</summary>
    public static void Length(long actual, long expected, string name, string shape)
    {
        if (actual != expected)
            throw new ArgumentException($"{name} has length {actual}, expected {shape} = {expected}", name);
    }

    /// <summary>Throws unless <paramref name="actual"/> equals <paramref name="expected"/> or is 0 (optional buffer).</summary>
    public static void Optional(long actual, long expected, string name, string shape)
    {
        if (actual != 0 && actual != expected)
            throw new ArgumentException($"{name} has length {actual}, expected 0 (skip) or {shape} = {expected}", name);
    }

    /// <summary>Throws unless every size is positive.</summary>
    public static void Positive(int value, string name)
    {
        if (value <= 0) throw new ArgumentException($"{name} must be positive, got {value}", name);
    }

    /// <summary>Throws unless the size is non-negative.</summary>
    public static void NonNegative(int value, string name)
    {
        if (value < 0) throw new ArgumentException($"{name} must be non-negative, got {value}", name);
    }
}

/// <summary>An unmanaged pointer that lambdas can capture (spans cannot be captured by Parallel.For bodies).</summary>
internal readonly unsafe struct OpsPtr<T> where T : unmanaged
{
    private readonly T* _p;

    /// <summary>Wraps a pinned pointer.</summary>
    public OpsPtr(T* p) => _p = p;

    /// <summary>A span over elements [offset, offset+length).</summary>
    public Span<T> Span(long offset, int length) => new(_p + offset, length);

    /// <summary>Element access.</summary>
    public ref T this[long i] => ref _p[i];
}

/// <summary>Accumulates rows [start, end) into a zeroed partial buffer.</summary>
internal delegate void OpsRowChunk(int start, int end, Span<float> partial);

/// <summary>Parallel loop helpers.</summary>
internal static class OpsParallel
{
    /// <summary>
    /// Work (in elements) below which loops run on the calling thread: ~50 µs of work, more than a <see cref="Parallel"/>
    /// loop's hand-off to a pool worker costs (measured 10–20 µs on a quiet 2-core VM, far more under load).
    /// </summary>
    public const long SerialWork = 1 << 18;

    /// <summary>Runs <paramref name="body"/> for 0..n-1, in parallel when the total work is large.</summary>
    public static void For(int n, long work, Action<int> body)
    {
        if (work < SerialWork || n == 1)
        {
            for (int i = 0; i < n; i++) body(i);
        }
        else
        {
            Parallel.For(0, n, KernelParallelism.Options, body);
        }
    }

    /// <summary>Rows per chunk of the deterministic column reductions (fixed, so results do not depend on thread count).</summary>
    public const int ChunkRows = 64;

    /// <summary>
    /// Deterministic reduction over rows: splits 0..rows-1 into fixed chunks of <see cref="ChunkRows"/>,
    /// lets <paramref name="chunk"/> accumulate rows [start,end) into a zeroed partial of
    /// <paramref name="width"/> floats (in any way, sequentially), then adds the partials in chunk order
    /// into <paramref name="accumulate"/> (+=).
    /// </summary>
    public static unsafe void ReduceRows(int rows, int width, long workPerRow, Span<float> accumulate, OpsRowChunk chunk)
    {
        int chunks = (rows + ChunkRows - 1) / ChunkRows;
        if (chunks <= 1)
        {
            var partial = new float[width];
            if (rows > 0) chunk(0, rows, partial);
            System.Numerics.Tensors.TensorPrimitives.Add(accumulate, partial, accumulate);
            return;
        }
        var partials = new float[(long)chunks * width];
        fixed (float* pp = partials)
        {
            var p = new OpsPtr<float>(pp);
            For(chunks, (long)rows * workPerRow, c =>
            {
                int start = c * ChunkRows, end = Math.Min(rows, start + ChunkRows);
                chunk(start, end, p.Span((long)c * width, width));
            });
        }
        for (int c = 0; c < chunks; c++)
            System.Numerics.Tensors.TensorPrimitives.Add(accumulate, partials.AsSpan(c * width, width), accumulate);
    }
}
