using SkTuning.Gpu.Data;
using SkTuning.Gpu.Import;
using SkTuning.Gpu.Tests.Data;
using SkTuning.Gpu.Training;
using Xunit.Abstractions;

namespace SkTuning.Gpu.Tests.Batching;

public class BatchSamplerTests(ITestOutputHelper output)
{
    private static int[] RandomLengths(int n, int seed)
    {
        var r = new Random(seed);
        return Enumerable.Range(0, n).Select(_ => r.Next(3, 120)).ToArray();
    }

    [Fact]
    public void AnEpochIsTheSameForTheSameSeedAndEpoch()
    {
        var lengths = RandomLengths(5000, 1);
        var a = new BatchSampler(lengths, 32, seed: 7);
        var b = new BatchSampler(lengths, 32, seed: 7);
        _ = b.Epoch(5); // asking for other epochs first changes nothing: resume at any (epoch, batch)
        Assert.Equal(a.Epoch(2), b.Epoch(2));
        Assert.Equal(a.Epoch(0), a.Epoch(0));
        Assert.NotEqual(a.Epoch(0), a.Epoch(1));
        Assert.NotEqual(a.Epoch(0), new BatchSampler(lengths, 32, seed: 8).Epoch(0));
    }

    [Theory]
    [InlineData(5000, 32)]
    [InlineData(1, 8)]
    [InlineData(33, 32)]
    [InlineData(3201, 32)]
    public void EveryExampleIsInExactlyOneBatchPerEpoch(int n, int batchSize)
    {
        var s = new BatchSampler(RandomLengths(n, 2), batchSize, seed: 3);
        for (int epoch = 0; epoch < 3; epoch++)
        {
            var batches = s.Epoch(epoch);
            Assert.Equal(s.BatchesPerEpoch, batches.Count);
            Assert.All(batches, b => Assert.InRange(b.Length, 1, batchSize));
            Assert.Equal(1, batches.Count(b => b.Length < batchSize) + (n % batchSize == 0 ? 1 : 0));
            Assert.Equal(Enumerable.Range(0, n), batches.SelectMany(b => b).Order());
        }
    }

    [Fact]
    public void BatchesHaveSimilarLengthsAndARandomOrder()
    {
        var lengths = RandomLengths(20000, 4);
        var batches = new BatchSampler(lengths, 32, seed: 5).Epoch(0);
        double padding = MeanPadding(lengths, batches);
        double unsorted = MeanPadding(lengths, Enumerable.Range(0, lengths.Length).Chunk(32).ToArray());
        output.WriteLine($"uniform 3..119: padding {padding:P2} bucketed vs {unsorted:P2} in file order");
        Assert.True(padding < 0.05, $"padding {padding:P2}");
        // The batch order is shuffled: consecutive batches are not sorted by length.
        var maxima = batches.Select(b => b.Max(i => lengths[i])).ToArray();
        Assert.False(maxima.Zip(maxima.Skip(1)).All(p => p.First <= p.Second));
    }

    [DataFact]
    public void Sst2TrainBatchesOf32AreLessThanTenPercentPadding()
    {
        var started = DateTime.UtcNow;
        var model = FrozenModel.Load("minilm");
        var train = TaskCatalog.Get("sst2").Load(SharedData.Root!).Train;
        var encoded = ExampleEncoder.Encode(model.Tokenizer, train, TaskKind.Classification, model.Spec.MaxPositions);
        var lengths = encoded.Lengths();
        var loaded = DateTime.UtcNow;
        var sampler = new BatchSampler(lengths, 32, seed: 42);
        var batches = sampler.Epoch(0);
        double padding = MeanPadding(lengths, batches);
        double inFileOrder = MeanPadding(lengths, Enumerable.Range(0, lengths.Length).Chunk(32).ToArray());
        long real = lengths.Sum(l => (long)l), padded = batches.Sum(b => (long)b.Length * b.Max(i => lengths[i]));
        output.WriteLine($"SST-2 train: {train.Count} examples, {encoded.TruncatedCount} truncated, mean length {lengths.Average():F1}, max {lengths.Max()}");
        output.WriteLine($"B=32 bucketed: mean padding fraction {padding:P2} (of all tokens {1 - (double)real / padded:P2}); file order {inFileOrder:P2}");
        output.WriteLine($"load+encode {(loaded - started).TotalSeconds:F1} s, epoch {(DateTime.UtcNow - loaded).TotalMilliseconds:F0} ms");
        Assert.Equal(0, encoded.TruncatedCount);
        Assert.Equal(Enumerable.Range(0, train.Count), batches.SelectMany(b => b).Order());
        Assert.True(padding < 0.10, $"padding {padding:P2}");
    }

    [Fact]
    public void EvalBatchesAreSortedLongestFirstAndResultsGoBackInOrder()
    {
        int[] lengths = [5, 9, 2, 9, 7, 1, 5];
        var s = new BatchSampler(lengths, 32, seed: 0);
        var batches = s.EvalBatches(3);
        Assert.Equal(new[] { new[] { 1, 3, 4 }, new[] { 0, 6, 2 }, new[] { 5 } }, batches);
        // A "model" that returns 10 × length for each row, evaluated batch after batch.
        var results = batches.SelectMany(b => b.Select(i => lengths[i] * 10)).ToArray();
        Assert.Equal(lengths.Select(l => l * 10), BatchSampler.Restore(batches, results));
        Assert.Throws<ArgumentException>(() => BatchSampler.Restore(batches, results[1..]));
        Assert.Throws<ArgumentException>(() => BatchSampler.Restore([[0, 0]], new[] { 1, 2 }));
    }

    private static double MeanPadding(int[] lengths, IReadOnlyList<int[]> batches) =>
        batches.Average(b => 1 - (double)b.Sum(i => lengths[i]) / (b.Length * b.Max(i => lengths[i])));
}
