using ILGPU;
using ILGPU.Runtime;

namespace SkTuning.Gpu.Engine;

/// <summary>
/// Page-locked staging for a training step's inputs (token ids, types, mask, positions, labels): the host copies each
/// input into page-locked memory and enqueues an asynchronous copy on the stream, so an upload no longer waits for the
/// device (ILGPU's CopyFromCPU copies from pageable memory and synchronises the stream). Two slots, used by alternate
/// steps: the host fills step n + 1's slot while step n runs; before it refills a slot it waits on the marker recorded
/// after the step that last used it (two steps back, normally long done). Each upload of a step has its own page-locked
/// array of its exact length (reallocated when a shape changes). Where the accelerator cannot page-lock or place
/// markers, <see cref="Supported"/> is false and uploads stay synchronous.
/// </summary>
internal sealed class StagingRing(Accelerator accelerator) : IDisposable
{
    private const int Slots = 2;
    private readonly List<IDisposable>[] _arrays = [[], []];
    private readonly ProfilingMarker?[] _released = new ProfilingMarker?[Slots];
    private int _slot = -1, _next;
    private bool _open;

    /// <summary>False once page-locked memory or a stream marker was refused: uploads are then synchronous.</summary>
    public bool Supported { get; private set; } = true;

    /// <summary>
    /// Times a step synchronised on the marker of the step that last used its slot (two steps back): a real wait only when
    /// the device is still two steps behind, else the marker has already passed.
    /// </summary>
    public long Waits { get; private set; }

    /// <summary>Opens the next slot for a step's uploads, waiting first for the step that used it last.</summary>
    public void Begin()
    {
        _slot = (_slot + 1) % Slots;
        _next = 0;
        _open = Supported;
        if (_released[_slot] is { } marker)
        {
            Waits++;
            marker.Synchronize();
            marker.Dispose();
            _released[_slot] = null;
        }
    }

    /// <summary>Closes the step: a marker after its work tells when its slot may be refilled.</summary>
    public void End()
    {
        if (!_open) return;
        _open = false;
        try
        {
            _released[_slot] = accelerator.DefaultStream.AddProfilingMarker();
        }
        catch (NotSupportedException)
        {
            // Without markers a slot's reuse cannot be ordered after its copies: stage nothing from now on.
            Supported = false;
            accelerator.Synchronize();
        }
    }

    /// <summary>
    /// Stages <paramref name="source"/> and enqueues its asynchronous copy into <paramref name="target"/> when a step is open;
    /// false (nothing done) otherwise.
    /// </summary>
    public bool TryUpload<T>(ReadOnlySpan<T> source, ArrayView<T> target) where T : unmanaged
    {
        if (!_open) return false;
        var arrays = _arrays[_slot];
        if (_next == arrays.Count || arrays[_next] is not PageLockedArray1D<T> staged || staged.Length != source.Length)
        {
            try
            {
                staged = accelerator.AllocatePageLocked1D<T>(source.Length);
            }
            catch (NotSupportedException)
            {
                Supported = _open = false;
                return false;
            }
            if (_next == arrays.Count) arrays.Add(staged);
            else
            {
                arrays[_next].Dispose();
                arrays[_next] = staged;
            }
        }
        _next++;
        source.CopyTo(staged.Span);
        target.CopyFromPageLockedAsync(accelerator.DefaultStream, staged);
        return true;
    }

    /// <inheritdoc />
    public void Dispose()
    {
        foreach (var marker in _released) marker?.Dispose();
        foreach (var slot in _arrays)
            foreach (var array in slot) array.Dispose();
    }
}
