namespace SkTuning.Gpu.ZeroShot;

/// <summary>
/// Hidden states of one text from the frozen model: one [tokens × dim] row-major matrix per layer
/// (with every layer requested: the embedding output first, then each transformer layer's output;
/// otherwise only the last layer).
/// </summary>
/// <param name="Tokens">Number of tokens m (special tokens included).</param>
/// <param name="Dim">Hidden size d.</param>
/// <param name="Layers">The states, last entry = the model's last_hidden_state.</param>
public sealed record HiddenStates(int Tokens, int Dim, IReadOnlyList<float[]> Layers)
{
    /// <summary>The last layer's states.</summary>
    public float[] Last => Layers[^1];

    /// <summary>Mean over tokens of the last layer (the sentence embedding of mean-pooling models).</summary>
    public float[] MeanPooled()
    {
        var mean = new float[Dim];
        for (int t = 0; t < Tokens; t++)
            for (int j = 0; j < Dim; j++) mean[j] += Last[t * Dim + j];
        for (int j = 0; j < Dim; j++) mean[j] /= Tokens;
        return mean;
    }

    /// <summary>Writes the states in a small binary format (layers, tokens, dim, then floats).</summary>
    public void Write(Stream stream)
    {
        using var w = new BinaryWriter(stream, System.Text.Encoding.UTF8, leaveOpen: true);
        w.Write(Layers.Count); w.Write(Tokens); w.Write(Dim);
        foreach (var layer in Layers)
            w.Write(System.Runtime.InteropServices.MemoryMarshal.AsBytes(layer.AsSpan()));
    }

    /// <summary>Reads what <see cref="Write"/> wrote; null if the data is short or inconsistent.</summary>
    public static HiddenStates? TryRead(Stream stream)
    {
        using var r = new BinaryReader(stream, System.Text.Encoding.UTF8, leaveOpen: true);
        try
        {
            int count = r.ReadInt32(), tokens = r.ReadInt32(), dim = r.ReadInt32();
            if (count <= 0 || tokens <= 0 || dim <= 0 || (long)count * tokens * dim * 4 != stream.Length - 12) return null;
            var layers = new float[count][];
            for (int l = 0; l < count; l++)
            {
                layers[l] = new float[tokens * dim];
                r.BaseStream.ReadExactly(System.Runtime.InteropServices.MemoryMarshal.AsBytes(layers[l].AsSpan()));
            }
            return new HiddenStates(tokens, dim, layers);
        }
        catch (EndOfStreamException)
        {
            return null;
        }
    }
}
