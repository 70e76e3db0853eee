using System.Reflection;
using ILGPU;
using ILGPU.Runtime;
using SkTuning.Gpu.Kernels.Gpu;
using SkTuning.Gpu.Tests.Support;

namespace SkTuning.Gpu.Tests.Kernels;

/// <summary>One ILGPU CPU simulator per test class.</summary>
public sealed class SimulatorFixture : IDisposable
{
    public GpuDevice Device { get; } = GpuDevice.CreateCpuSimulator();

    public void Dispose() => Device.Dispose();
}

/// <summary>Helpers shared by the op tests.</summary>
internal static class OpsTest
{
    public const BindingFlags Any = BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.Static;

    /// <summary>Compiles each named static kernel of <paramref name="type"/> to PTX and checks an entry point came out.</summary>
    public static void CompilesToPtx(Type type, params string[] kernels)
    {
        using var ptx = new PtxCompiler();
        foreach (var name in kernels)
        {
            var method = type.GetMethod(name, Any) ?? throw new InvalidOperationException($"no method {type.Name}.{name}");
            var text = ptx.CompileImplicitlyGrouped(method);
            Assert.Contains(".entry", text);
        }
    }

    /// <summary>Compiles each named single-group kernel (explicitly grouped) to PTX and checks it synchronises its group.</summary>
    public static void CompilesToPtxAsGroup(Type type, params string[] kernels)
    {
        using var ptx = new PtxCompiler();
        foreach (var name in kernels)
        {
            var method = type.GetMethod(name, Any) ?? throw new InvalidOperationException($"no method {type.Name}.{name}");
            var text = ptx.CompileExplicitlyGrouped(method);
            Assert.Contains(".entry", text);
            Assert.Contains("bar.sync", text);
        }
    }

    /// <summary>Compiles each named explicitly grouped kernel to PTX and checks it reduces with warp shuffles.</summary>
    public static void CompilesToPtxWithShuffles(Type type, params string[] kernels)
    {
        using var ptx = new PtxCompiler();
        foreach (var name in kernels)
        {
            var method = type.GetMethod(name, Any) ?? throw new InvalidOperationException($"no method {type.Name}.{name}");
            var text = ptx.CompileExplicitlyGrouped(method);
            Assert.Contains(".entry", text);
            Assert.Contains("shfl.sync.bfly", text);
        }
    }

    public static MemoryBuffer1D<float, Stride1D.Dense> Up(GpuDevice d, float[] a) => d.Accelerator.Allocate1D(a);

    public static MemoryBuffer1D<int, Stride1D.Dense> Up(GpuDevice d, int[] a) => d.Accelerator.Allocate1D(a);

    /// <summary>A buffer holding <paramref name="a"/>, or null when it is empty (ILGPU cannot allocate an empty one); see <see cref="View(MemoryBuffer1D{float, Stride1D.Dense}?)"/>.</summary>
    public static MemoryBuffer1D<float, Stride1D.Dense>? UpOrNull(GpuDevice d, float[] a) => a.Length == 0 ? null : Up(d, a);

    /// <inheritdoc cref="UpOrNull(GpuDevice, float[])"/>
    public static MemoryBuffer1D<int, Stride1D.Dense>? UpOrNull(GpuDevice d, int[] a) => a.Length == 0 ? null : Up(d, a);

    /// <summary>The buffer's view, or an empty view for a null buffer (an absent optional operand).</summary>
    public static ArrayView<float> View(MemoryBuffer1D<float, Stride1D.Dense>? b) => b is null ? ArrayView<float>.Empty : b.View;

    /// <inheritdoc cref="View(MemoryBuffer1D{float, Stride1D.Dense}?)"/>
    public static ArrayView<int> View(MemoryBuffer1D<int, Stride1D.Dense>? b) => b is null ? ArrayView<int>.Empty : b.View;

    public static float[] Down(GpuDevice d, MemoryBuffer1D<float, Stride1D.Dense> b)
    {
        d.Synchronize();
        return b.GetAsArray1D();
    }

    public static int[] Ints(Random rng, int n, int max) => Enumerable.Range(0, n).Select(_ => rng.Next(max)).ToArray();

    public static double[] D(float[] a) => TestData.ToDouble(a);

    /// <summary>g − g0 in fp64.</summary>
    public static float[] Delta(float[] g, float[] g0) => g.Select((x, i) => x - g0[i]).ToArray();

    /// <summary>Asserts the max relative error is within the tolerance, printing it on failure.</summary>
    public static void Close(ReadOnlySpan<float> actual, ReadOnlySpan<double> expected, double tol = 1e-4, string what = "")
    {
        double err = TestData.MaxRelError(actual, expected);
        Assert.True(err <= tol, $"{what}: max rel error {err:g3} > {tol:g3}");
    }

    /// <inheritdoc cref="Close(ReadOnlySpan{float}, ReadOnlySpan{double}, double, string)"/>
    public static void Close(ReadOnlySpan<double> actual, ReadOnlySpan<double> expected, double tol = 1e-4, string what = "")
    {
        double err = TestData.MaxRelError(actual, expected);
        Assert.True(err <= tol, $"{what}: max rel error {err:g3} > {tol:g3}");
    }

    /// <summary>Asserts that <paramref name="act"/> throws an ArgumentException whose message contains every fragment.</summary>
    public static void Throws(Action act, params string[] fragments)
    {
        var ex = Assert.ThrowsAny<ArgumentException>(act);
        foreach (var f in fragments) Assert.Contains(f, ex.Message);
    }
}
