using SkTuning.Gpu.Kernels;
using SkTuning.Gpu.Tests.Support;
using static SkTuning.Gpu.Tests.Kernels.OpsTest;

namespace SkTuning.Gpu.Tests.Kernels;

public class ColumnBlockTests(SimulatorFixture sim) : IClassFixture<SimulatorFixture>
{
    [Fact]
    public void ReferenceBackwardMatchesFiniteDifferences()
    {
        var rng = new Random(1);
        int rows = 3, width = 4, columns = 11, c0 = 5;
        var block = D(TestData.Random(rng, rows * width));
        var matrix0 = D(TestData.Random(rng, rows * columns));
        var w = D(TestData.Random(rng, rows * columns));
        double Loss() { var m = (double[])matrix0.Clone(); ColumnBlock.ForwardReference(block, m, rows, width, columns, c0, 0.75); return TestData.Dot(w, m); }
        var g = new double[rows * width];
        ColumnBlock.BackwardReference(w, g, rows, width, columns, c0, 0.75);
        Close(g, TestData.FiniteDifference(block, Loss));
    }

    [Theory]
    [InlineData(5, 16, 48, 0)]
    [InlineData(37, 16, 48, 32)]
    [InlineData(300, 384, 1152, 768)]
    public void CpuMatchesReference(int rows, int width, int columns, int c0)
    {
        var rng = new Random(rows + c0);
        float[] block = TestData.Random(rng, rows * width), matrix = TestData.Random(rng, rows * columns), g0 = TestData.Random(rng, rows * width);
        var m = (float[])matrix.Clone();
        ColumnBlock.Forward(block, m, rows, width, columns, c0, 2.5f);
        var mr = D(matrix); ColumnBlock.ForwardReference(D(block), mr, rows, width, columns, c0, 2.5);
        Close(m, mr);
        var g = (float[])g0.Clone();
        ColumnBlock.Backward(matrix, g, rows, width, columns, c0, 0.5f);
        var gr = new double[rows * width]; ColumnBlock.BackwardReference(D(matrix), gr, rows, width, columns, c0, 0.5);
        Close(Delta(g, g0), gr);
    }

    [Fact]
    public void SimulatorMatchesReference()
    {
        var dev = sim.Device;
        var rng = new Random(5);
        int rows = 7, width = 6, columns = 18, c0 = 12;
        float[] block = TestData.Random(rng, rows * width), matrix = TestData.Random(rng, rows * columns), g0 = TestData.Random(rng, rows * width);
        using var bb = Up(dev, block); using var bm = Up(dev, matrix); using var bg = Up(dev, g0); using var bdm = Up(dev, matrix);
        ColumnBlock.Forward(dev, bb.View, bm.View, rows, width, columns, c0, 1.5f);
        ColumnBlock.Backward(dev, bdm.View, bg.View, rows, width, columns, c0, -2f);
        var mr = D(matrix); ColumnBlock.ForwardReference(D(block), mr, rows, width, columns, c0, 1.5);
        var gr = new double[rows * width]; ColumnBlock.BackwardReference(D(matrix), gr, rows, width, columns, c0, -2);
        Close(Down(dev, bm), mr);
        Close(Delta(Down(dev, bg), g0), gr);
    }

    [Fact]
    public void KernelsCompileToPtx() => CompilesToPtx(typeof(ColumnBlock), "ForwardKernel", "BackwardKernel");

    [Fact]
    public void BadSizesThrow()
    {
        Throws(() => ColumnBlock.Forward(new float[8], new float[24], 2, 4, 12, 10, 1f), "column block", "[10, 14)", "12");
        Throws(() => ColumnBlock.Forward(new float[7], new float[24], 2, 4, 12, 0, 1f), "block", "7", "8");
        Throws(() => ColumnBlock.Backward(new float[23], new float[8], 2, 4, 12, 0, 1f), "dMatrix", "23", "24");
    }
}
