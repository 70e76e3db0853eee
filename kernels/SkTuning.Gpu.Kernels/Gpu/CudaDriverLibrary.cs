using System.Reflection;
using System.Runtime.InteropServices;
using ILGPU;

namespace SkTuning.Gpu.Kernels.Gpu;

/// <summary>
/// Finds the CUDA driver for ILGPU. ILGPU imports it as <c>cuda</c>, so .NET probes <c>libcuda.so</c> — the development
/// symlink, which containers with only the driver's runtime files lack (their loader cache holds <c>libcuda.so.1</c>).
/// This resolver tries the default probe first, then <c>libcuda.so.1</c>, and remembers what it loaded for diagnostics.
/// </summary>
public static class CudaDriverLibrary
{
    private static readonly object Gate = new();
    private static bool _registered;
    private static string _loaded = "driver library not requested yet";

    /// <summary>Installs the resolver on ILGPU's assembly (once; harmless if another resolver is already installed).</summary>
    public static void Register()
    {
        lock (Gate)
        {
            if (_registered) return;
            _registered = true;
            try
            {
                NativeLibrary.SetDllImportResolver(typeof(Context).Assembly, Resolve);
            }
            catch (InvalidOperationException)
            {
                _loaded = "another DllImport resolver owns ILGPU's imports";
            }
        }
    }

    /// <summary>What the resolver did: the library it loaded, or the names it tried.</summary>
    public static string Describe()
    {
        lock (Gate) return _loaded;
    }

    /// <summary>The names tried for ILGPU's <c>cuda</c> import, in order.</summary>
    public static IReadOnlyList<string> Candidates(string libraryName) =>
        libraryName is "cuda" or "nvcuda" ? [libraryName, "libcuda.so.1", "libcuda.so"] : [libraryName];

    private static IntPtr Resolve(string libraryName, Assembly assembly, DllImportSearchPath? searchPath)
    {
        if (libraryName is not ("cuda" or "nvcuda")) return IntPtr.Zero;   // not ours: the default probe
        foreach (var name in Candidates(libraryName))
        {
            if (NativeLibrary.TryLoad(name, assembly, searchPath, out var handle))
            {
                lock (Gate) _loaded = $"driver library '{name}' loaded";
                return handle;
            }
        }
        lock (Gate) _loaded = $"no CUDA driver library: tried {string.Join(", ", Candidates(libraryName))}";
        return IntPtr.Zero;
    }
}
