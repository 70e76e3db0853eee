namespace SkTuning.Gpu.Training;

/// <summary>
/// Groups examples of similar length into batches, so that little of a padded batch is padding.
/// Training: each epoch shuffles all examples (seeded by seed and epoch), sorts chunks of
/// <see cref="ChunkBatches"/> × batch size examples by length, cuts them into batches and shuffles the batch
/// order — random, but the same for the same seed and epoch, so a run resumes exactly at (epoch, batch).
/// Evaluation: all examples sorted by length, longest first, no shuffle; <see cref="Restore{T}"/> puts results
/// back in example order.
/// </summary>
public sealed class BatchSampler
{
    private readonly int[] _lengths;

    /// <summary>A sampler over examples of the given token lengths.</summary>
    /// <param name="lengths">Token length of each example (index i is example i).</param>
    /// <param name="batchSize">Examples per training batch (the last batch of an epoch may be smaller).</param>
    /// <param name="seed">Seed of the shuffles.</param>
    /// <param name="chunkBatches">Batches per length-sorted chunk: larger gives less padding but less randomness.</param>
    /// <exception cref="ArgumentOutOfRangeException">A size is not positive, or a length is negative.</exception>
    public BatchSampler(IReadOnlyList<int> lengths, int batchSize, int seed, int chunkBatches = 50)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(batchSize, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(chunkBatches, 1);
        _lengths = [.. lengths];
        if (_lengths.Any(l => l < 0)) throw new ArgumentOutOfRangeException(nameof(lengths), "a length is negative");
        BatchSize = batchSize;
        Seed = seed;
        ChunkBatches = chunkBatches;
    }

    /// <summary>Number of examples.</summary>
    public int Count => _lengths.Length;

    /// <summary>Examples per training batch.</summary>
    public int BatchSize { get; }

    /// <summary>Seed of the shuffles.</summary>
    public int Seed { get; }

    /// <summary>Batches per length-sorted chunk.</summary>
    public int ChunkBatches { get; }

    /// <summary>Training batches per epoch (the last may be smaller than <see cref="BatchSize"/>).</summary>
    public int BatchesPerEpoch => (Count + BatchSize - 1) / BatchSize;

    /// <summary>
    /// The training batches of epoch <paramref name="epoch"/> (0-based), each a list of example indices; every
    /// example is in exactly one batch. Deterministic for (seed, epoch), whatever epochs were asked for before.
    /// </summary>
    public IReadOnlyList<int[]> Epoch(int epoch)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(epoch);
        var rng = new SplitMix((ulong)(uint)Seed * 0x9E3779B97F4A7C15UL ^ ((ulong)(uint)epoch + 1) * 0xD1B54A32D192ED03UL);
        var order = new int[Count];
        for (int i = 0; i < order.Length; i++) order[i] = i;
        rng.Shuffle(order);
        int chunk = checked(ChunkBatches * BatchSize);
        var batches = new List<int[]>(BatchesPerEpoch);
        for (int start = 0; start < order.Length; start += chunk)
        {
            // Sort by (length, position in the shuffle): a stable sort of the shuffled chunk.
            var span = order.AsSpan(start, Math.Min(chunk, order.Length - start));
            var keys = new long[span.Length];
            for (int i = 0; i < span.Length; i++) keys[i] = ((long)_lengths[span[i]] << 32) | (uint)i;
            keys.AsSpan().Sort(span);
            for (int b = 0; b < span.Length; b += BatchSize) batches.Add(span.Slice(b, Math.Min(BatchSize, span.Length - b)).ToArray());
        }
        var shuffled = batches.ToArray();
        rng.Shuffle(shuffled);
        return shuffled;
    }

    /// <summary>
    /// Evaluation batches of up to <paramref name="batchSize"/> example indices: all examples sorted by length,
    /// longest first (ties in index order), no shuffle. Feed the results, batch by batch, to <see cref="Restore{T}"/>.
    /// </summary>
    public IReadOnlyList<int[]> EvalBatches(int batchSize) => EvalBatches(_lengths, batchSize);

    /// <summary>Evaluation batches over examples of the given lengths; see the instance method.</summary>
    public static IReadOnlyList<int[]> EvalBatches(IReadOnlyList<int> lengths, int batchSize)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(batchSize, 1);
        var order = Enumerable.Range(0, lengths.Count).OrderByDescending(i => lengths[i]).ThenBy(i => i).ToArray();
        return order.Chunk(batchSize).ToArray();
    }

    /// <summary>
    /// Puts per-example results back in example order: <paramref name="results"/> holds one result per index of
    /// <paramref name="batches"/>, in batch order (what evaluating the batches one after another produced).
    /// </summary>
    /// <exception cref="ArgumentException">The counts disagree, or an index is repeated or out of range.</exception>
    public static T[] Restore<T>(IReadOnlyList<int[]> batches, IReadOnlyList<T> results)
    {
        int n = batches.Sum(b => b.Length);
        if (results.Count != n) throw new ArgumentException($"{results.Count} results for {n} batched examples");
        var restored = new T[n];
        var seen = new bool[n];
        int k = 0;
        foreach (var batch in batches)
        {
            foreach (int i in batch)
            {
                if ((uint)i >= (uint)n || seen[i]) throw new ArgumentException($"example index {i} is out of range or repeated");
                seen[i] = true;
                restored[i] = results[k++];
            }
        }
        return restored;
    }

    /// <summary>SplitMix64: a small generator whose sequence is fixed here, not by the runtime, so resumes reproduce.</summary>
    private struct SplitMix(ulong state)
    {
        private ulong _state = state;

        private ulong Next()
        {
            ulong z = _state += 0x9E3779B97F4A7C15UL;
            z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
            z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
            return z ^ (z >> 31);
        }

        // Uniform in [0, n) by rejection (no modulo bias).
        private int Below(int n)
        {
            ulong bound = (ulong)n, limit = ulong.MaxValue - ulong.MaxValue % bound;
            ulong x;
            do x = Next(); while (x >= limit);
            return (int)(x % bound);
        }

        public void Shuffle<T>(T[] a)
        {
            for (int i = a.Length - 1; i > 0; i--)
            {
                int j = Below(i + 1);
                (a[i], a[j]) = (a[j], a[i]);
            }
        }
    }
}
