using System.Collections.Concurrent;
using ILGPU;
using ILGPU.Runtime;
using ILGPU.Runtime.CPU;
using ILGPU.Runtime.Cuda;

namespace SkTuning.Gpu.Kernels.Gpu;

/// <summary>
/// One ILGPU context and accelerator, plus a cache of loaded kernels: each kernel is compiled and
/// loaded once per device and its launch delegate reused (loading costs milliseconds, a launch microseconds).
/// </summary>
public sealed class GpuDevice : IDisposable
{
    private readonly Context _context;
    private readonly ConcurrentDictionary<string, object> _kernels = new();

    private GpuDevice(Context context, Accelerator accelerator)
    {
        _context = context;
        Accelerator = accelerator;
    }

    /// <summary>The ILGPU accelerator kernels run on.</summary>
    public Accelerator Accelerator { get; }

    /// <summary>
    /// The SM count the GEMM planner (<see cref="GemmGpu.Plan"/>) plans for: the accelerator's, unless set. Tests set 132 so
    /// that the simulator (which reports few multiprocessors) launches what an H200 would: split-K for the deep, narrow GEMMs.
    /// </summary>
    internal int PlannedMultiprocessors
    {
        get => _plannedMultiprocessors ?? Accelerator.NumMultiprocessors;
        set => _plannedMultiprocessors = value;
    }

    private int? _plannedMultiprocessors;

    /// <summary>True when this is a real CUDA device (not ILGPU's CPU simulator).</summary>
    public bool IsCuda => Accelerator.AcceleratorType == AcceleratorType.Cuda;

    /// <summary>True when ILGPU finds at least one CUDA device on this machine.</summary>
    public static bool CudaAvailable() => ProbeCuda().Available;

    /// <summary>
    /// Looks for a CUDA device; <c>Detail</c> says what was found, or why nothing was (the driver library that failed
    /// to load, ILGPU's exception) — a "no device" answer on a GPU machine must say why.
    /// </summary>
    public static (bool Available, string Detail) ProbeCuda()
    {
        CudaDriverLibrary.Register();
        try
        {
            using var context = Context.Create(b => b.Cuda());
            var names = new List<string>();
            foreach (var device in context.GetCudaDevices()) names.Add(device.Name);
            return names.Count > 0
                ? (true, $"{names.Count} CUDA device(s): {string.Join(", ", names)}")
                : (false, $"no CUDA device ({CudaDriverLibrary.Describe()})");
        }
        catch (Exception e)
        {
            // No driver library or no device: ILGPU throws while probing. Not an error for the caller, but kept as the reason.
            var reason = e.GetBaseException();
            return (false, $"CUDA probe failed ({CudaDriverLibrary.Describe()}): {reason.GetType().Name}: {reason.Message}");
        }
    }

    /// <summary>
    /// The optimisation level of the CUDA path: O1 when the environment sets <c>SKTUNE_ILGPU_O1=1</c> (ILGPU's O2 adds
    /// experimental passes; this is the switch back if they miscompile on a real GPU), else O2.
    /// </summary>
    public static OptimizationLevel CudaOptimizationLevel =>
        Environment.GetEnvironmentVariable("SKTUNE_ILGPU_O1") == "1" ? OptimizationLevel.O1 : OptimizationLevel.O2;

    /// <summary>The CUDA optimisation level and where it came from, for logs.</summary>
    public static string OptimizationLevelName =>
        CudaOptimizationLevel == OptimizationLevel.O1 ? "O1 (SKTUNE_ILGPU_O1=1)" : "O2 (set SKTUNE_ILGPU_O1=1 for O1)";

    /// <summary>Opens the first CUDA device.</summary>
    public static GpuDevice CreateCuda()
    {
        CudaDriverLibrary.Register();
        var context = Context.Create(b => b.Cuda().EnableAlgorithms().Profiling().Optimize(CudaOptimizationLevel));
        if (context.GetCudaDevices().Count == 0)
        {
            context.Dispose();
            throw new InvalidOperationException($"no CUDA device found ({CudaDriverLibrary.Describe()})");
        }
        return new GpuDevice(context, context.CreateCudaAccelerator(0));
    }

    /// <summary>
    /// Opens ILGPU's CPU accelerator: a simulator that runs the same kernels 50-150x slower than SIMD C#.
    /// Tests use it at tiny sizes to check kernels without a GPU.
    /// </summary>
    public static GpuDevice CreateCpuSimulator()
    {
        var context = Context.Create(b => b.CPU().EnableAlgorithms().Profiling().Optimize(OptimizationLevel.O1));
        return new GpuDevice(context, CPUDevice.Nvidia.CreateCPUAccelerator(context, CPUAcceleratorMode.Auto));
    }

    private long _launches, _synchronizations;
    private readonly ConcurrentDictionary<string, long> _launchesByKernel = new();

    /// <summary>Kernel launches so far (every wrapper fetches its kernel here once per launch).</summary>
    public long Launches => Interlocked.Read(ref _launches);

    /// <summary>
    /// Launches so far per kernel key (a diagnostic: which kernels a step launches how often); a copy, so two readings
    /// can be subtracted.
    /// </summary>
    public IReadOnlyDictionary<string, long> LaunchesByKernel => new Dictionary<string, long>(_launchesByKernel);

    /// <summary>Host waits for the device so far (<see cref="Synchronize"/>: explicit, or before a read-back).</summary>
    public long Synchronizations => Interlocked.Read(ref _synchronizations);

    /// <summary>Returns the cached kernel under <paramref name="key"/>, loading it on first use; counts a launch.</summary>
    public TDelegate Kernel<TDelegate>(string key, Func<Accelerator, TDelegate> load) where TDelegate : Delegate
    {
        Interlocked.Increment(ref _launches);
        _launchesByKernel.AddOrUpdate(key, 1, static (_, n) => n + 1);
        return (TDelegate)_kernels.GetOrAdd(key, _ => load(Accelerator));
    }

    private readonly object _workspaceLock = new();
    private readonly Dictionary<string, MemoryBuffer1D<float, Stride1D.Dense>> _workspaces = new();
    private readonly Dictionary<string, MemoryBuffer1D<int, Stride1D.Dense>> _arrivalCounts = new();
    private readonly List<MemoryBuffer> _retiredWorkspaces = new();

    /// <summary>
    /// A device scratch buffer of at least <paramref name="length"/> floats under <paramref name="key"/> (split-K partial
    /// products, column-sum partials), allocated once and reused by every later launch: launches run in stream order, so
    /// one launcher's consecutive uses cannot overlap. Contents are undefined. A buffer outgrown is kept until
    /// <see cref="Dispose"/> (a launch still in flight may read it), so growing never waits for the device.
    /// </summary>
    public ArrayView<float> Workspace(string key, long length)
    {
        lock (_workspaceLock)
        {
            if (_workspaces.TryGetValue(key, out var buffer) && buffer.Length >= length) return buffer.View.SubView(0, length);
            if (buffer is not null) _retiredWorkspaces.Add(buffer);
            buffer = Accelerator.Allocate1D<float>(Math.Max(length, 1));
            _workspaces[key] = buffer;
            return buffer.View.SubView(0, length);
        }
    }

    /// <summary>
    /// <paramref name="length"/> arrival counts under <paramref name="key"/> for a last-arriving-block reduction (split-K's
    /// per-tile counts): zeroed when allocated, and every kernel that counts on them must leave them zero. Reused like
    /// <see cref="Workspace"/>; a grown buffer is zeroed in stream order, before any later launch.
    /// </summary>
    public ArrayView<int> ArrivalCounts(string key, long length)
    {
        lock (_workspaceLock)
        {
            if (_arrivalCounts.TryGetValue(key, out var buffer) && buffer.Length >= length) return buffer.View.SubView(0, length);
            if (buffer is not null) _retiredWorkspaces.Add(buffer);
            buffer = Accelerator.Allocate1D<int>(Math.Max(length, 1));
            buffer.MemSetToZero();
            _arrivalCounts[key] = buffer;
            return buffer.View.SubView(0, length);
        }
    }

    /// <summary>Waits for every launched kernel to finish.</summary>
    public void Synchronize()
    {
        Interlocked.Increment(ref _synchronizations);
        Accelerator.Synchronize();
    }

    /// <inheritdoc />
    public void Dispose()
    {
        foreach (var buffer in _workspaces.Values) buffer.Dispose();
        foreach (var buffer in _arrivalCounts.Values) buffer.Dispose();
        foreach (var buffer in _retiredWorkspaces) buffer.Dispose();
        Accelerator.Dispose();
        _context.Dispose();
    }
}
