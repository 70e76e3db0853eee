using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace SkTuning.Gpu.Hosting;

/// <summary>Registers a tuned model with a host's dependency injection.</summary>
public static class SkTunerServiceCollectionExtensions
{
    /// <summary>
    /// Adds <see cref="SkTuner"/> as a singleton loaded from <paramref name="runDirectory"/> on first use, logging through the
    /// host's <see cref="ILogger{SkTuner}"/> when one is registered; the container disposes it.
    /// </summary>
    /// <param name="services">The host's services.</param>
    /// <param name="runDirectory">The run folder written by training.</param>
    /// <param name="configure">Sets model, device and batching options.</param>
    public static IServiceCollection AddSkTuner(this IServiceCollection services, string runDirectory, Action<SkTunerOptions>? configure = null)
    {
        services.AddSingleton(provider =>
        {
            var options = new SkTunerOptions();
            configure?.Invoke(options);
            return SkTuner.Load(runDirectory, options, provider.GetService<ILogger<SkTuner>>());
        });
        return services;
    }
}
