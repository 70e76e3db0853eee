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

    /// <summary>The first bytes of a cache entry: names the format, so an entry of an older layout reads as invalid.</summary>
    private static ReadOnlySpan<byte> Magic => "SKZS0002"u8;

    private const int HeaderBytes = 8 + 3 * 4, ChecksumBytes = 32;

    /// <summary>
    /// Writes the states as a cache entry: magic, layers, tokens, dim, the floats, then the SHA-256 of everything
    /// before it, so that <see cref="TryRead"/> detects any change to the file, same-size tampering included.
    /// </summary>
    public void Write(Stream stream)
    {
        using var sha = System.Security.Cryptography.IncrementalHash.CreateHash(System.Security.Cryptography.HashAlgorithmName.SHA256);
        void Put(ReadOnlySpan<byte> bytes)
        {
            sha.AppendData(bytes);
            stream.Write(bytes);
        }
        Span<byte> header = stackalloc byte[HeaderBytes];
        Magic.CopyTo(header);
        System.Buffers.Binary.BinaryPrimitives.WriteInt32LittleEndian(header[8..], Layers.Count);
        System.Buffers.Binary.BinaryPrimitives.WriteInt32LittleEndian(header[12..], Tokens);
        System.Buffers.Binary.BinaryPrimitives.WriteInt32LittleEndian(header[16..], Dim);
        Put(header);
        foreach (var layer in Layers) Put(System.Runtime.InteropServices.MemoryMarshal.AsBytes(layer.AsSpan()));
        stream.Write(sha.GetHashAndReset());
    }

    /// <summary>Reads what <see cref="Write"/> wrote; null if the bytes are short, inconsistent or fail the checksum.</summary>
    public static HiddenStates? TryRead(ReadOnlySpan<byte> bytes)
    {
        if (bytes.Length < HeaderBytes + ChecksumBytes || !bytes.StartsWith(Magic)) return null;
        var body = bytes[..^ChecksumBytes];
        if (!System.Security.Cryptography.SHA256.HashData(body).AsSpan().SequenceEqual(bytes[^ChecksumBytes..])) return null;
        int count = System.Buffers.Binary.BinaryPrimitives.ReadInt32LittleEndian(body[8..]);
        int tokens = System.Buffers.Binary.BinaryPrimitives.ReadInt32LittleEndian(body[12..]);
        int dim = System.Buffers.Binary.BinaryPrimitives.ReadInt32LittleEndian(body[16..]);
        if (count <= 0 || tokens <= 0 || dim <= 0 || (long)count * tokens * dim * 4 != body.Length - HeaderBytes) return null;
        var floats = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(body[HeaderBytes..]);
        var layers = new float[count][];
        for (int l = 0; l < count; l++) layers[l] = floats.Slice(l * tokens * dim, tokens * dim).ToArray();
        return new HiddenStates(tokens, dim, layers);
    }
}
