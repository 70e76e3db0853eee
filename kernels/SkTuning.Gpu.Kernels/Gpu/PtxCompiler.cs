using System.Reflection;
using ILGPU;
using ILGPU.Backends.EntryPoints;
using ILGPU.Backends.PTX;
using ILGPU.Runtime;
using ILGPU.Runtime.Cuda;

namespace SkTuning.Gpu.Kernels.Gpu;

/// <summary>
/// Compiles ILGPU kernels to PTX without a GPU, so CI proves every kernel would build for CUDA.
/// </summary>
public sealed class PtxCompiler : IDisposable
{
    private readonly Context _context;
    private readonly PTXBackend _backend;

    /// <summary>Creates a compiler for the given architecture and PTX ISA (default sm_80, ISA 8.0; the H200 is sm_90, ISA ≥ 7.8).</summary>
    public PtxCompiler(CudaArchitecture? architecture = null, CudaInstructionSet? instructionSet = null)
    {
        var arch = architecture ?? CudaArchitecture.SM_80;
        _context = Context.Create(b => b.Cuda().EnableAlgorithms().Optimize(OptimizationLevel.O2));
        _backend = new PTXBackend(_context, new CudaCapabilityContext(arch), arch, instructionSet ?? CudaInstructionSet.ISA_80, null);
    }

    /// <summary>Compiles a kernel whose first parameter is an index (auto-grouped); returns the PTX text.</summary>
    public string CompileImplicitlyGrouped(MethodInfo kernel) =>
        Compile(EntryPointDescription.FromImplicitlyGroupedKernel(kernel));

    /// <summary>Compiles a kernel that uses groups/shared memory (explicitly grouped); returns the PTX text.</summary>
    public string CompileExplicitlyGrouped(MethodInfo kernel) =>
        Compile(EntryPointDescription.FromExplicitlyGroupedKernel(kernel));

    private string Compile(EntryPointDescription entry)
    {
        var specialization = KernelSpecialization.Empty;
        return ((PTXCompiledKernel)_backend.Compile(entry, specialization)).PTXAssembly;
    }

    /// <inheritdoc />
    public void Dispose()
    {
        _backend.Dispose();
        _context.Dispose();
    }
}
