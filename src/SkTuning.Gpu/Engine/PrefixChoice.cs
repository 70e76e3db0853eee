namespace SkTuning.Gpu.Engine;

/// <summary>
/// Which of several stacked SK-Prefixes each example of an inference forward reads: several runs' rows in one batch over
/// one frozen model (<see cref="TransformerEngine.Forward"/>). The prefix is then [L, 2, A, m, kvDim]: layer l's keys of
/// adapter a at (2l, a), its values at (2l + 1, a). Inference only: the backward takes one prefix shared by the batch.
/// </summary>
/// <param name="Adapters">A, the prefixes stacked (each m keys and values per layer).</param>
/// <param name="Index">Per example [B]: the adapter whose prefix it reads, in [0, A).</param>
public sealed record PrefixChoice(int Adapters, int[] Index);
