namespace SkTuning.Gpu.Runs;

/// <summary>
/// Everything a resumed run needs: the trainable parameters, AdamW's first and second moments (same names and
/// shapes as the parameters) and the trainer's own state record (saved as <c>trainer.json</c>).
/// </summary>
/// <typeparam name="TState">The trainer's JSON-serializable state record, e.g. <see cref="TrainerState"/>.</typeparam>
/// <param name="Parameters">Trainable tensors by name.</param>
/// <param name="AdamM">AdamW first moments by parameter name.</param>
/// <param name="AdamV">AdamW second moments by parameter name.</param>
/// <param name="Trainer">Step, epoch, data position, RNG state, early-stopping state and so on.</param>
public sealed record TrainingCheckpoint<TState>(
    IReadOnlyDictionary<string, NamedTensor> Parameters,
    IReadOnlyDictionary<string, NamedTensor> AdamM,
    IReadOnlyDictionary<string, NamedTensor> AdamV,
    TState Trainer);

/// <summary>A trainer's resumable state: the default record for <see cref="TrainingCheckpoint{TState}.Trainer"/>.</summary>
/// <param name="Step">Optimizer steps taken.</param>
/// <param name="Epoch">Current epoch (0-based).</param>
/// <param name="DataPosition">Position in the current epoch's example order (examples consumed).</param>
/// <param name="Seed">The run's seed.</param>
/// <param name="RngState">The random generator's full state words, so the data order and dropout resume exactly.</param>
/// <param name="BestMetric">Best dev metric so far (NaN before the first evaluation).</param>
/// <param name="BestStep">Step of <paramref name="BestMetric"/> (-1 before the first evaluation).</param>
/// <param name="EvaluationsWithoutImprovement">The early-stopping counter.</param>
/// <param name="ElapsedSeconds">Training time so far, carried across resumes.</param>
/// <param name="ExamplesSeen">Training examples consumed so far.</param>
/// <param name="EvaluationSeconds">Part of <paramref name="ElapsedSeconds"/> spent evaluating on dev.</param>
public sealed record TrainerState(
    long Step,
    int Epoch,
    long DataPosition,
    long Seed,
    ulong[] RngState,
    double BestMetric,
    long BestStep,
    int EvaluationsWithoutImprovement,
    double ElapsedSeconds,
    long ExamplesSeen = 0,
    double EvaluationSeconds = 0);
