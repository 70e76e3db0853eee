using System.Text.Json.Nodes;
using SkTuning.Gpu.Runs;

namespace SkTuning.Gpu.Tests.Support;

/// <summary>
/// What two runs of the same configuration must share byte for byte: the saved adapter and <c>metrics.json</c>
/// without its wall-clock fields (elapsed seconds differ from run to run).
/// </summary>
internal sealed record RunFingerprint(byte[] Adapter, string Metrics)
{
    public static RunFingerprint Of(string run)
    {
        var metrics = JsonNode.Parse(File.ReadAllText(Path.Combine(run, RunFolder.MetricsFileName)))!.AsObject();
        foreach (var point in metrics["points"]!.AsArray()) point!.AsObject().Remove("elapsed_seconds");
        return new RunFingerprint(File.ReadAllBytes(Path.Combine(run, RunFolder.AdapterFileName)), metrics.ToJsonString());
    }

    /// <summary>Asserts equality with a readable message for the metrics.</summary>
    public void AssertSameAs(RunFingerprint expected, string what)
    {
        Assert.True(expected.Metrics == Metrics, $"{what}: metrics.json differs\nexpected {expected.Metrics}\nactual   {Metrics}");
        Assert.True(expected.Adapter.AsSpan().SequenceEqual(Adapter), $"{what}: adapter.safetensors differs");
    }
}
