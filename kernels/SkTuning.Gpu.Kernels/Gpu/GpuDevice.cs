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

    /// <summary>True when this is a real CUDA device (not ILGPU's CPU simulator).</summary>
    public bool IsCuda => Accelerator.AcceleratorType == AcceleratorType.Cuda;

    /// <summary>True when ILGPU finds at least one CUDA device on this machine.</summary>
    public static bool CudaAvailable()
    {
        try
        {
            using var context = Context.Create(b => b.Cuda());
            return context.GetCudaDevices().Count > 0;
        }
        catch (Exception)
        {
            // No driver library: ILGPU throws while probing. That simply means no CUDA.
            return false;
        }
    }

    /// <summary>Opens the first CUDA device.</summary>
    public static GpuDevice CreateCuda()
    {
        var context = Context.Create(b => b.Cuda().EnableAlgorithms().Optimize(OptimizationLevel.O2));
        if (context.GetCudaDevices().Count == 0)
        {
            context.Dispose();
            throw new InvalidOperationException("no CUDA device found");
        }
        return new GpuDevice(context, context.CreateCudaAccelerator(0));
    }

    /// <summary>
    /// Opens ILGPU's CPU accelerator: a simulator that runs the same kernels 50-150x slower than SIMD C#.
    /// Tests use it at tiny sizes to check kernels without a GPU.
    /// </summary>
    public static GpuDevice CreateCpuSimulator()
    {
        var context = Context.Create(b => b.CPU().EnableAlgorithms().Optimize(OptimizationLevel.O1));
        return new GpuDevice(context, CPUDevice.Nvidia.CreateCPUAccelerator(context, CPUAcceleratorMode.Auto));
    }

    /// <summary>Returns the cached kernel under <paramref name="key"/>, loading it on first use.</summary>
    public TDelegate Kernel<TDelegate>(string key, Func<Accelerator, TDelegate> load) where TDelegate : Delegate =>
        (TDelegate)_kernels.GetOrAdd(key, _ => load(Accelerator));

    /// <summary>Waits for every launched kernel to finish.</summary>
    public void Synchronize() => Accelerator.Synchronize();

    /// <inheritdoc />
    public void Dispose()
    {
        Accelerator.Dispose();
        _context.Dispose();
    }
}
