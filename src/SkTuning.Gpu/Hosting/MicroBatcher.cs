using System.Diagnostics;
using System.Threading.Channels;

namespace SkTuning.Gpu.Hosting;

/// <summary>
/// Serves concurrent callers with one worker: requests queue, and the worker runs what has arrived as one batch — at most
/// <c>maxBatchSize</c>, waiting up to <c>window</c> for more only while requests are arriving concurrently (the previous
/// batch had more than one, or more are already queued), so a lone caller pays no wait. A request cancelled while queued
/// is dropped before its batch runs. Results go back in each request's own task. A blocking caller that finds the batcher
/// idle runs its request on its own thread instead (<see cref="TryRunAlone"/>).
/// </summary>
/// <typeparam name="TInput">One request.</typeparam>
/// <typeparam name="TResult">Its answer.</typeparam>
internal sealed class MicroBatcher<TInput, TResult> : IDisposable
{
    private sealed class Request(TInput input, TaskCompletionSource<TResult> answer, long arrived)
    {
        public TInput Input { get; } = input;
        public TaskCompletionSource<TResult> Answer { get; } = answer;
        public long Arrived { get; } = arrived;
        public CancellationTokenRegistration Cancellation;
    }

    private readonly Channel<Request> _queue = Channel.CreateUnbounded<Request>(new UnboundedChannelOptions { SingleReader = true });
    private readonly Func<IReadOnlyList<TInput>, IReadOnlyList<TResult>> _run;
    private readonly int _maxBatchSize;
    private readonly long _windowTicks;
    private readonly Task _worker;
    // Held while a batch runs, on the worker or on a lone caller's thread.
    private readonly Lock _running = new();
    private volatile bool _disposed;
    // Requests written and not yet read by the worker (the single-reader channel keeps no count).
    private int _queued;

    /// <summary>Starts the worker.</summary>
    /// <param name="run">Runs one batch; returns one result per input, in order. Called on the worker only.</param>
    /// <param name="maxBatchSize">The most requests per batch.</param>
    /// <param name="window">How long to wait for more requests while they arrive concurrently.</param>
    public MicroBatcher(Func<IReadOnlyList<TInput>, IReadOnlyList<TResult>> run, int maxBatchSize, TimeSpan window)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(maxBatchSize, 1);
        _run = run;
        _maxBatchSize = maxBatchSize;
        _windowTicks = (long)(window.TotalSeconds * Stopwatch.Frequency);
        _worker = Task.Factory.StartNew(Work, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);
    }

    /// <summary>Queues <paramref name="input"/>; the task completes with its result, or is cancelled if <paramref name="cancel"/> fires before its batch runs.</summary>
    public Task<TResult> Submit(TInput input, CancellationToken cancel)
    {
        cancel.ThrowIfCancellationRequested();
        var request = new Request(input, new TaskCompletionSource<TResult>(TaskCreationOptions.RunContinuationsAsynchronously), Stopwatch.GetTimestamp());
        if (cancel.CanBeCanceled)
            request.Cancellation = cancel.Register(static state =>
            {
                var (answer, token) = ((TaskCompletionSource<TResult>, CancellationToken))state!;
                answer.TrySetCanceled(token);
            }, (request.Answer, cancel));
        Interlocked.Increment(ref _queued);
        if (!_queue.Writer.TryWrite(request))
        {
            Interlocked.Decrement(ref _queued);
            request.Cancellation.Dispose();
            throw new ObjectDisposedException(nameof(SkTuner));
        }
        SkTunerMetrics.Requests.Add(1);
        return request.Answer.Task;
    }

    /// <summary>
    /// Runs <paramref name="input"/> as a batch of one on the calling thread when nothing is queued and no batch is running,
    /// and returns true; otherwise returns false (then <see cref="Submit"/> it). A lone blocking caller so skips the hand-off
    /// to the worker and back: two thread wake-ups, each up to milliseconds on a loaded machine. A request arriving
    /// meanwhile waits for this one, as it would behind a batch.
    /// </summary>
    /// <exception cref="ObjectDisposedException">After <see cref="Dispose"/>.</exception>
    public bool TryRunAlone(TInput input, out TResult result)
    {
        ObjectDisposedException.ThrowIf(_disposed, typeof(SkTuner));
        result = default!;
        if (Volatile.Read(ref _queued) > 0 || !_running.TryEnter()) return false;
        try
        {
            long arrived = Stopwatch.GetTimestamp();
            SkTunerMetrics.Requests.Add(1);
            SkTunerMetrics.BatchSize.Record(1);
            result = _run([input])[0];
            SkTunerMetrics.Latency.Record(Stopwatch.GetElapsedTime(arrived).TotalMilliseconds);
            return true;
        }
        finally
        {
            _running.Exit();
        }
    }

    private void Work()
    {
        var batch = new List<Request>(_maxBatchSize);
        var inputs = new List<TInput>(_maxBatchSize);
        bool concurrent = false;
        while (_queue.Reader.WaitToReadAsync().AsTask().GetAwaiter().GetResult())
        {
            batch.Clear();
            long first = Stopwatch.GetTimestamp();
            var spin = new SpinWait();
            while (batch.Count < _maxBatchSize)
            {
                if (_queue.Reader.TryRead(out var request))
                {
                    Interlocked.Decrement(ref _queued);
                    // Answered already: cancelled while queued.
                    if (!request.Answer.Task.IsCompleted) batch.Add(request);
                    if (batch.Count > 1) concurrent = true;
                    continue;
                }
                if (!concurrent || Stopwatch.GetTimestamp() - first >= _windowTicks) break;
                spin.SpinOnce(sleep1Threshold: -1);
            }
            concurrent = batch.Count > 1;
            if (batch.Count == 0) continue;
            Run(batch, inputs);
        }
    }

    private void Run(List<Request> batch, List<TInput> inputs)
    {
        inputs.Clear();
        foreach (var r in batch) inputs.Add(r.Input);
        SkTunerMetrics.BatchSize.Record(batch.Count);
        try
        {
            IReadOnlyList<TResult> results;
            lock (_running) results = _run(inputs);
            long now = Stopwatch.GetTimestamp();
            for (int i = 0; i < batch.Count; i++)
            {
                batch[i].Cancellation.Dispose();
                batch[i].Answer.TrySetResult(results[i]);
                SkTunerMetrics.Latency.Record(Stopwatch.GetElapsedTime(batch[i].Arrived, now).TotalMilliseconds);
            }
        }
        catch (Exception e)
        {
            foreach (var r in batch) { r.Cancellation.Dispose(); r.Answer.TrySetException(e); }
        }
    }

    /// <summary>Stops taking requests, lets the worker finish those queued, and waits for it.</summary>
    public void Dispose()
    {
        _disposed = true;
        _queue.Writer.TryComplete();
        _worker.GetAwaiter().GetResult();
    }
}
