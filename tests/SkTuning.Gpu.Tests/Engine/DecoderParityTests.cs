using SkTuning.Gpu.Engine;
using SkTuning.Gpu.Import;
using SkTuning.Gpu.Tests.Support;
using Xunit.Abstractions;

namespace SkTuning.Gpu.Tests.Engine;

/// <summary>
/// The engine on every committed decoder fixture (tests/SkTuning.Gpu.Tests/Fixtures/decoders/*) against the hidden states
/// PyTorch recorded in reference.npz: every layer input hidden_0..hidden_{L−1} and the final (normed) state hidden_L, on
/// the real tokens of the left- and right-padded batches.
/// </summary>
public class DecoderParityTests(ITestOutputHelper output)
{
    internal static readonly string Root = Path.Combine(AppContext.BaseDirectory, "Fixtures", "decoders");

    /// <summary>Every fixture folder, so a new fixture is covered without editing this list.</summary>
    public static TheoryData<string> Fixtures()
    {
        var data = new TheoryData<string>();
        foreach (var dir in Directory.GetDirectories(Root).Order(StringComparer.Ordinal)) data.Add(Path.GetFileName(dir));
        return data;
    }

    [Fact]
    public void EveryCommittedFixtureIsFound()
    {
        int count = Directory.GetDirectories(Root).Length;
        Assert.True(count >= 8, $"{count} fixtures under {Root}");
    }

    [Theory]
    [MemberData(nameof(Fixtures))]
    public void EngineMatchesPyTorchOnEveryLayer(string name)
    {
        var imported = ModelImporter.Import(Path.Combine(Root, name, "model.onnx"));
        var spec = imported.Spec;
        var reference = NpzReader.Read(Path.Combine(Root, name, "reference.npz"));
        // gpt2_opset17_no_position_ids has no position_ids input: its graph numbers positions 0..T−1 whatever the
        // padding, so in its left-padded batch PyTorch's positions are shifted by the padding, while the engine (by
        // design) numbers real tokens from 0. Only its right-padded batch has the same semantics on both sides. BLOOM has
        // no such input either, but its graph counts ALiBi positions from the mask (cumsum − 1), as the engine does.
        var sides = imported.PositionIdsName is null && spec.Positions != PositionKind.Alibi ? new[] { "right" } : ["left", "right"];
        using var backend = new CpuBackend();
        using var engine = new TransformerEngine(backend, spec, imported.Weights);
        foreach (var side in sides)
        {
            var ids = reference[$"{side}.input_ids"];
            int B = ids.Shape[0], T = ids.Shape[1], d = spec.Hidden;
            var mask = reference[$"{side}.attention_mask"].Longs!.Select(v => (float)v).ToArray();
            var batch = new TokenBatch(B, T, ids.Longs!.Select(v => (int)v).ToArray(), new int[B * T], mask);
            Assert.Contains(0f, mask);
            if (reference.TryGetValue($"{side}.position_ids", out var positions))
            {
                // The document-level rule: the engine's positions (cumsum(mask) − 1) are PyTorch's on every real token.
                var rule = EngineReference.Positions(spec, batch, 0, 0).Tokens;
                for (int i = 0; i < B * T; i++)
                    if (mask[i] != 0) Assert.Equal(positions.Longs![i], rule[i]);
            }
            var final = backend.ToHost(engine.Forward(batch));
            for (int l = 0; l <= spec.Layers; l++)
            {
                var ours = l < spec.Layers ? backend.ToHost(engine.LayerInput(l)) : final;
                var expected = reference[$"{side}.hidden_{l}"].Floats!;
                Assert.Equal(expected.Length, ours.Length);
                double diff = 0, scale = 0;
                for (int r = 0; r < B * T; r++)
                {
                    if (mask[r] == 0) continue; // padded positions: neither side's contract
                    for (int j = 0; j < d; j++)
                    {
                        diff = Math.Max(diff, Math.Abs(ours[r * d + j] - expected[r * d + j]));
                        scale = Math.Max(scale, Math.Abs(expected[r * d + j]));
                    }
                }
                output.WriteLine($"{name} {side} hidden_{l}: max|diff| {diff:E2}, max|ref| {scale:G3}, ratio {diff / scale:E2}");
                Assert.True(diff <= 1e-4 * scale, $"{name} {side} hidden_{l}: max|diff| / max|ref| = {diff / scale:E2}");
            }
        }
    }
}
