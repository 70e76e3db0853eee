using System.Diagnostics.Metrics;

namespace SkTuning.Gpu.Hosting;

/// <summary>
/// The host API's <see cref="System.Diagnostics.Metrics"/> instruments, on the meter <see cref="MeterName"/>: requests,
/// rows per engine batch, and request latency from arrival to answer.
/// </summary>
public static class SkTunerMetrics
{
    /// <summary>The meter's name, for listeners (OpenTelemetry's AddMeter, dotnet-counters --counters).</summary>
    public const string MeterName = "SkTuning.Gpu";

    private static readonly Meter Meter = new(MeterName);

    /// <summary>Prediction requests received.</summary>
    public static Counter<long> Requests { get; } = Meter.CreateCounter<long>("sktuning.requests", "{request}", "Prediction requests received");

    /// <summary>Requests run together in one engine batch.</summary>
    public static Histogram<int> BatchSize { get; } = Meter.CreateHistogram<int>("sktuning.batch_size", "{request}", "Requests per engine batch");

    /// <summary>Time from a request's arrival to its answer.</summary>
    public static Histogram<double> Latency { get; } = Meter.CreateHistogram<double>("sktuning.latency", "ms", "Request latency, arrival to answer");
}
