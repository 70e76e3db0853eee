using SkTuning.Gpu.Kernels;
using SkTuning.Gpu.Tests.Support;
using static SkTuning.Gpu.Tests.Kernels.OpsTest;

namespace SkTuning.Gpu.Tests.Kernels;

public class PrependTests(SimulatorFixture sim) : IClassFixture<SimulatorFixture>
{
    [Fact]
    public void ReferenceBackwardMatchesFiniteDifferences()
    {
        var rng = new Random(2);
        int B = 3, m = 2, T = 3, d = 4;
        var prompt = D(TestData.Random(rng, m * d)); var x = D(TestData.Random(rng, B * T * d));
        var w = D(TestData.Random(rng, B * (m + T) * d));
        double Loss()
        {
            var y = new double[w.Length];
            Prepend.ForwardReference(prompt, x, y, B, m, T, d);
            return TestData.Dot(w, y);
        }
        var gp = new double[prompt.Length]; var gx = new double[x.Length];
        Prepend.PromptGradientReference(w, gp, B, m, T, d);
        Prepend.InputGradientReference(w, gx, B, m, T, d);
        Close(gp, TestData.FiniteDifference(prompt, Loss), what: "dPrompt");
        Close(gx, TestData.FiniteDifference(x, Loss), what: "dx");
    }

    [Theory]
    [InlineData(5, 7, 37, 67)]
    [InlineData(16, 10, 54, 384)]
    [InlineData(2, 0, 3, 8)]
    public void CpuMatchesReference(int B, int m, int T, int d)
    {
        var rng = new Random(B + m + T + d);
        float[] prompt = TestData.Random(rng, m * d), x = TestData.Random(rng, B * T * d);
        var y = TestData.Poisoned(B * (m + T) * d);
        Prepend.Forward(prompt, x, y, B, m, T, d);
        var yr = new double[y.Length];
        Prepend.ForwardReference(D(prompt), D(x), yr, B, m, T, d);
        Close(y, yr, what: "y");

        var dy = TestData.Random(rng, y.Length);
        float[] gp0 = TestData.Random(rng, prompt.Length), gx0 = TestData.Random(rng, x.Length);
        float[] gp = (float[])gp0.Clone(), gx = (float[])gx0.Clone();
        Prepend.PromptGradient(dy, gp, B, m, T, d);
        Prepend.InputGradient(dy, gx, B, m, T, d);
        double[] rp = new double[gp.Length], rx = new double[gx.Length];
        Prepend.PromptGradientReference(D(dy), rp, B, m, T, d);
        Prepend.InputGradientReference(D(dy), rx, B, m, T, d);
        if (m > 0) Close(Delta(gp, gp0), rp, what: "dPrompt");
        Close(Delta(gx, gx0), rx, what: "dx");
    }

    [Fact]
    public void SimulatorMatchesReference()
    {
        var dev = sim.Device;
        var rng = new Random(3);
        int B = 3, m = 2, T = 4, d = 5;
        float[] prompt = TestData.Random(rng, m * d), x = TestData.Random(rng, B * T * d), dy = TestData.Random(rng, B * (m + T) * d);
        float[] gp0 = TestData.Random(rng, prompt.Length), gx0 = TestData.Random(rng, x.Length);
        using var bp = Up(dev, prompt); using var bx = Up(dev, x); using var by = Up(dev, TestData.Poisoned(dy.Length));
        using var bdy = Up(dev, dy); using var bgp = Up(dev, gp0); using var bgx = Up(dev, gx0);
        Prepend.Forward(dev, bp.View, bx.View, by.View, B, m, T, d);
        Prepend.PromptGradient(dev, bdy.View, bgp.View, B, m, T, d);
        Prepend.InputGradient(dev, bdy.View, bgx.View, B, m, T, d);
        var yr = new double[dy.Length]; double[] rp = new double[gp0.Length], rx = new double[gx0.Length];
        Prepend.ForwardReference(D(prompt), D(x), yr, B, m, T, d);
        Prepend.PromptGradientReference(D(dy), rp, B, m, T, d);
        Prepend.InputGradientReference(D(dy), rx, B, m, T, d);
        Close(Down(dev, by), yr, what: "y");
        Close(Delta(Down(dev, bgp), gp0), rp, what: "dPrompt");
        Close(Delta(Down(dev, bgx), gx0), rx, what: "dx");
    }

    /// <summary>
    /// A per-example prompt choice over A stacked prompts: the reference gives example b exactly the shared-prompt
    /// reference's rows with prompt choice[b]; the CPU and simulator forwards (poisoned outputs) match it; A = 1 is the
    /// shared path bit for bit.
    /// </summary>
    [Theory]
    [InlineData(3)]
    [InlineData(1)]
    public void PromptChoiceMatchesReferenceOnCpuAndSimulator(int A)
    {
        var rng = new Random(40 + A);
        int B = 4, m = 3, T = 5, d = 6, row = (m + T) * d;
        float[] prompts = TestData.Random(rng, A * m * d), x = TestData.Random(rng, B * T * d);
        int[] choice = Enumerable.Range(0, B).Select(b => (b * 2 + 1) % A).ToArray();
        var yr = new double[B * row];
        Prepend.ForwardReference(D(prompts), D(x), yr, B, m, T, d, choice);
        for (int b = 0; b < B; b++)
        {
            var alone = new double[B * row];
            Prepend.ForwardReference(D(prompts.AsSpan(choice[b] * m * d, m * d).ToArray()), D(x), alone, B, m, T, d);
            Assert.Equal(alone.AsSpan(b * row, row).ToArray(), yr.AsSpan(b * row, row).ToArray());
        }

        var y = TestData.Poisoned(B * row);
        Prepend.Forward(prompts, x, y, B, m, T, d, choice);
        Close(y, yr, what: "y");
        var dev = sim.Device;
        using var bp = Up(dev, prompts); using var bx = Up(dev, x); using var by = Up(dev, TestData.Poisoned(y.Length));
        using var bc = Up(dev, choice);
        Prepend.Forward(dev, bp.View, bx.View, by.View, B, m, T, d, bc.View);
        Close(Down(dev, by), yr, what: "y (simulator)");
        if (A > 1)
        {
            var ex = Assert.Throws<ArgumentException>(() => Prepend.Forward(prompts, x, y, B, m, T, d, new[] { 0, 1, A, 0 }));
            Assert.Contains($"promptChoice[2] = {A} is outside the {A} stacked prompts", ex.Message);
            return;
        }
        var shared = TestData.Poisoned(y.Length);
        Prepend.Forward(prompts, x, shared, B, m, T, d);
        Assert.Equal(shared, y);
    }

    [Fact]
    public void KernelsCompileToPtx() => CompilesToPtx(typeof(Prepend), "ForwardKernel", "PromptGradientKernel", "InputGradientKernel");

    [Fact]
    public void BadSizesThrow()
    {
        Throws(() => Prepend.Forward(new float[7], new float[24], new float[40], 2, 2, 3, 4), "prompt", "7", "8");
        Throws(() => Prepend.Forward(new float[8], new float[24], new float[41], 2, 2, 3, 4), "output", "41", "40");
        Throws(() => Prepend.PromptGradient(new float[40], new float[9], 2, 2, 3, 4), "dPrompt", "9");
        Throws(() => Prepend.InputGradient(new float[40], new float[23], 2, 2, 3, 4), "dX", "23", "24");
    }
}
