namespace SkTuning.Gpu.Engine;

/// <summary>
/// Which of several stacked adapters' outputs each example of an inference forward reads: several runs' rows in one batch
/// over one frozen model (<see cref="TransformerEngine.Forward"/>). The SK-Prefix is then [L, 2, A, m, kvDim] (layer l's
/// keys of adapter a at (2l, a), its values at (2l + 1, a)) and the SK-Prompt [A, m_p, d]. Inference only: the backward
/// takes one prompt or prefix shared by the batch.
/// </summary>
/// <param name="Adapters">A, the adapters stacked.</param>
/// <param name="Index">Per example [B]: the adapter it reads, in [0, A).</param>
public sealed record AdapterChoice(int Adapters, int[] Index);
