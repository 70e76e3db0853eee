using SkTuning.Gpu.Data;
using SkTuning.Gpu.Engine;

namespace SkTuning.Gpu.Training;

/// <summary>
/// What evaluation and serving need of a tuned model: the head's outputs for a token batch. The engine's
/// <see cref="SkTuningModel"/> is one; an exported graph in ONNX Runtime (<see cref="Hosting.OrtTunedModel"/>) another.
/// </summary>
public interface ITunedPredictor : IDisposable
{
    /// <summary>The task kind of the head.</summary>
    TaskKind Kind { get; }

    /// <summary>Outputs per row: classes, or 1 for regression.</summary>
    int Classes { get; }

    /// <summary>Prompt rows before the tokens in token-level outputs.</summary>
    int SkipRows { get; }

    /// <summary>Head outputs on the host: logits [B, C], values [B, 1], or token logits [B·(SkipRows + T), C].</summary>
    float[] Predict(TokenBatch batch);
}
