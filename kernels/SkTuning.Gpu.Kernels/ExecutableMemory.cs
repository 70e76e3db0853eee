using System.Runtime.InteropServices;

namespace SkTuning.Gpu.Kernels;

/// <summary>
/// Machine code generated at run time, placed in its own pages: written while the pages are read/write, then switched to
/// read/execute (never writable and executable at once). Linux only (libc <c>mmap</c>/<c>mprotect</c>); the pages live
/// for the rest of the process, like a loaded kernel.
/// </summary>
internal static partial class ExecutableMemory
{
    private const int ProtRead = 1, ProtWrite = 2, ProtExec = 4;
    private const int MapPrivate = 0x02, MapAnonymous = 0x20;

    /// <summary>True where code can be placed: 64-bit Linux.</summary>
    public static bool IsSupported => OperatingSystem.IsLinux() && Environment.Is64BitProcess;

    /// <summary>Copies <paramref name="code"/> into new executable pages and returns their address.</summary>
    /// <exception cref="InvalidOperationException">The pages could not be mapped or protected.</exception>
    public static unsafe nint Place(ReadOnlySpan<byte> code)
    {
        if (!IsSupported) throw new PlatformNotSupportedException("run-time code generation needs 64-bit Linux");
        nuint length = (nuint)code.Length;
        nint pages = Mmap(0, length, ProtRead | ProtWrite, MapPrivate | MapAnonymous, -1, 0);
        if (pages == -1) throw new InvalidOperationException($"mmap of {length} bytes failed (errno {Marshal.GetLastPInvokeError()})");
        code.CopyTo(new Span<byte>((void*)pages, code.Length));
        if (Mprotect(pages, length, ProtRead | ProtExec) != 0)
            throw new InvalidOperationException($"mprotect to read/execute failed (errno {Marshal.GetLastPInvokeError()})");
        return pages;
    }

    [LibraryImport("libc.so.6", EntryPoint = "mmap", SetLastError = true)]
    private static partial nint Mmap(nint address, nuint length, int protection, int flags, int fd, nint offset);

    [LibraryImport("libc.so.6", EntryPoint = "mprotect", SetLastError = true)]
    private static partial int Mprotect(nint address, nuint length, int protection);
}
