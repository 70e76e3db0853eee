namespace SkTuning.Gpu.Engine;

/// <summary>
/// A padded batch of token sequences on the host: ids, token types and the key mask (1 real, 0 padding),
/// each [B, T] row-major.
/// </summary>
public sealed class TokenBatch
{
    /// <summary>Creates a batch after checking that the arrays have B·T elements.</summary>
    /// <exception cref="ArgumentException">An array's length is not B·T (the message names the sizes).</exception>
    public TokenBatch(int batch, int seqLen, int[] ids, int[] types, float[] mask)
    {
        if (batch <= 0 || seqLen <= 0) throw new ArgumentException($"batch {batch} × sequence {seqLen}: both must be positive");
        long n = (long)batch * seqLen;
        if (ids.Length != n || types.Length != n || mask.Length != n)
            throw new ArgumentException(
                $"batch arrays disagree: ids {ids.Length}, types {types.Length}, mask {mask.Length}; expected B·T = {batch}·{seqLen} = {n}");
        Batch = batch; SeqLen = seqLen; Ids = ids; Types = types; Mask = mask;
    }

    /// <summary>B.</summary>
    public int Batch { get; }

    /// <summary>T (padded length).</summary>
    public int SeqLen { get; }

    /// <summary>Token ids [B, T].</summary>
    public int[] Ids { get; }

    /// <summary>Token type ids [B, T].</summary>
    public int[] Types { get; }

    /// <summary>Key mask [B, T]: 1 for real tokens, 0 for padding.</summary>
    public float[] Mask { get; }

    /// <summary>Builds a right-padded batch from encoded sequences.</summary>
    public static TokenBatch FromSequences(IReadOnlyList<(int[] Ids, int[] Types)> sequences, int padId = 0)
    {
        int b = sequences.Count, t = sequences.Max(s => s.Ids.Length);
        var ids = new int[b * t]; var types = new int[b * t]; var mask = new float[b * t];
        Array.Fill(ids, padId);
        for (int i = 0; i < b; i++)
        {
            var (sid, sty) = sequences[i];
            sid.CopyTo(ids, i * t);
            sty.CopyTo(types, i * t);
            mask.AsSpan(i * t, sid.Length).Fill(1f);
        }
        return new TokenBatch(b, t, ids, types, mask);
    }
}
