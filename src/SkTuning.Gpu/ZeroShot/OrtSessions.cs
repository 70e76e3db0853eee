using Microsoft.ML.OnnxRuntime;

namespace SkTuning.Gpu.ZeroShot;

/// <summary>Creates ONNX Runtime sessions: the CUDA execution provider when it loads, else the CPU one (logged).</summary>
public static class OrtSessions
{
    private static readonly Lock Gate = new();
    private static bool _cudaUnavailable;

    static OrtSessions()
    {
        // ORT logs a failed CUDA provider load as an error with its own colours; we log one plain line instead.
        try
        {
            var options = new EnvironmentCreationOptions { logLevel = OrtLoggingLevel.ORT_LOGGING_LEVEL_FATAL };
            OrtEnv.CreateInstanceWithOptions(ref options);
        }
        catch (OnnxRuntimeException)
        {
            // Another component created the environment first; its log level stays.
        }
    }

    /// <summary>Which execution provider the last created session uses ("cuda" or "cpu").</summary>
    public static string LastProvider { get; private set; } = "cpu";

    /// <summary>A session over a model file or in-memory model bytes.</summary>
    public static InferenceSession Create(string onnxPath, byte[]? modelBytes = null, Action<string>? log = null, bool tryCuda = true)
    {
        var options = new SessionOptions { GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL };
        // Bytes carry no location: external-data initializers resolve against the model file's folder.
        if (modelBytes is not null)
            options.AddSessionConfigEntry("session.model_external_initializers_file_folder_path", Path.GetDirectoryName(Path.GetFullPath(onnxPath))!);
        LastProvider = "cpu";
        lock (Gate)
        {
            if (tryCuda && !_cudaUnavailable)
            {
                try
                {
                    options.AppendExecutionProvider_CUDA(0);
                    LastProvider = "cuda";
                }
                catch (Exception e)
                {
                    // The GPU package's CUDA provider needs CUDA 13 libraries; without them ORT throws here. Tried once per process.
                    _cudaUnavailable = true;
                    log?.Invoke($"onnxruntime: CUDA execution provider unavailable ({FirstLine(e.Message)}); using CPU");
                }
            }
        }
        try
        {
            var session = modelBytes is null ? new InferenceSession(onnxPath, options) : new InferenceSession(modelBytes, options);
            log?.Invoke($"onnxruntime: {LastProvider} execution provider");
            return session;
        }
        catch (OnnxRuntimeException e) when (LastProvider == "cuda")
        {
            _cudaUnavailable = true;
            log?.Invoke($"onnxruntime: CUDA session failed ({e.Message.ReplaceLineEndings(" ")}); using CPU");
            return Create(onnxPath, modelBytes, log, tryCuda: false);
        }
        catch (OnnxRuntimeException e)
        {
            throw new SkTuningException($"{onnxPath}: ONNX Runtime cannot load the model: {e.Message.ReplaceLineEndings(" ")}", e);
        }
    }

    private static string FirstLine(string message)
    {
        var line = message.ReplaceLineEndings("\n").Split('\n')[0];
        var lib = line.IndexOf("with error: ", StringComparison.Ordinal);
        return lib >= 0 ? line[(lib + 12)..] : line;
    }
}
