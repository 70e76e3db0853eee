using SkTuning.Gpu.Engine;

namespace SkTuning.Gpu.Tests.Support;

/// <summary>The committed RoBERTa-style encoder exports (tests/fixtures/make_encoder_fixtures.py) and their reference batches.</summary>
internal static class EncoderFixtures
{
    /// <summary>Fixtures/encoders.</summary>
    public static readonly string Root = Path.Combine(AppContext.BaseDirectory, "Fixtures", "encoders");

    /// <summary>Every fixture folder name, so a new fixture is covered without editing a list.</summary>
    public static TheoryData<string> Names()
    {
        var data = new TheoryData<string>();
        foreach (var dir in Directory.GetDirectories(Root).Order(StringComparer.Ordinal)) data.Add(Path.GetFileName(dir));
        return data;
    }

    /// <summary>The fixture's folder (model.onnx, vocab.json, merges.txt, reference.json/npz).</summary>
    public static string Folder(string name) => Path.Combine(Root, name);

    /// <summary>The fixture's model.onnx.</summary>
    public static string OnnxPath(string name) => Path.Combine(Root, name, "model.onnx");

    /// <summary>The "left" or "right" reference batch of <paramref name="reference"/> (types 0, padding holds padding_idx).</summary>
    public static TokenBatch Batch(Dictionary<string, NpzReader.Array> reference, string side)
    {
        var ids = reference[$"{side}.input_ids"];
        int B = ids.Shape[0], T = ids.Shape[1];
        var mask = reference[$"{side}.attention_mask"].Longs!.Select(v => (float)v).ToArray();
        return new TokenBatch(B, T, ids.Longs!.Select(v => (int)v).ToArray(), new int[B * T], mask);
    }
}
