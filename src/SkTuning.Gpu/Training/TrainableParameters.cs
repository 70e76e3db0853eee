using SkTuning.Gpu.Engine;
using SkTuning.Gpu.Runs;

namespace SkTuning.Gpu.Training;

/// <summary>One named trainable tensor: its shape and where it sits in the flat buffer.</summary>
public sealed record ParameterInfo(string Name, int[] Shape, int Offset)
{
    /// <summary>Number of elements.</summary>
    public int Length => Shape.Aggregate(1, (a, b) => a * b);
}

/// <summary>
/// All trainable tensors (adapter + head) in one flat device buffer, with their gradient and AdamW moments in
/// three more buffers of the same layout: one fused optimizer kernel and one norm reduction cover everything.
/// </summary>
public sealed class TrainableParameters : IDisposable
{
    private readonly Dictionary<string, ParameterInfo> _byName;

    /// <summary>Allocates zeroed buffers for the given tensors on <paramref name="backend"/>.</summary>
    public TrainableParameters(Backend backend, IEnumerable<(string Name, int[] Shape)> tensors)
    {
        Backend = backend;
        var list = new List<ParameterInfo>();
        int offset = 0;
        foreach (var (name, shape) in tensors)
        {
            var info = new ParameterInfo(name, shape, offset);
            list.Add(info);
            offset += info.Length;
        }
        Infos = list;
        _byName = list.ToDictionary(p => p.Name);
        Count = offset;
        Values = backend.Allocate(offset);
        Gradients = backend.Allocate(offset);
        AdamM = backend.Allocate(offset);
        AdamV = backend.Allocate(offset);
    }

    /// <summary>The backend the buffers live on.</summary>
    public Backend Backend { get; }

    /// <summary>The tensors in buffer order.</summary>
    public IReadOnlyList<ParameterInfo> Infos { get; }

    /// <summary>Total number of trainable values.</summary>
    public int Count { get; }

    /// <summary>Parameter values.</summary>
    public DeviceArray<float> Values { get; }

    /// <summary>Gradients (accumulated by the backward; zeroed by <see cref="ZeroGradients"/>).</summary>
    public DeviceArray<float> Gradients { get; }

    /// <summary>AdamW first moments.</summary>
    public DeviceArray<float> AdamM { get; }

    /// <summary>AdamW second moments.</summary>
    public DeviceArray<float> AdamV { get; }

    /// <summary>A tensor by name.</summary>
    public ParameterInfo this[string name] => _byName[name];

    /// <summary>True when a tensor of that name is registered.</summary>
    public bool Contains(string name) => _byName.ContainsKey(name);

    /// <summary>The value view of a tensor.</summary>
    public DeviceView<float> Value(ParameterInfo p) => Values.Slice(p.Offset, p.Length);

    /// <summary>The gradient view of a tensor.</summary>
    public DeviceView<float> Gradient(ParameterInfo p) => Gradients.Slice(p.Offset, p.Length);

    /// <summary>Sets every gradient to zero.</summary>
    public void ZeroGradients() => Backend.Zero(Gradients.All);

    /// <summary>Uploads one tensor's values.</summary>
    public void Set(ParameterInfo p, ReadOnlySpan<float> values)
    {
        if (values.Length != p.Length) throw new ArgumentException($"{p.Name}: {values.Length} values for shape [{string.Join(",", p.Shape)}]");
        Backend.Upload(values, Value(p));
    }

    /// <summary>Downloads one of the four buffers as named host tensors.</summary>
    public Dictionary<string, float[]> Export(DeviceArray<float> buffer)
    {
        var all = Backend.ToHost(buffer.All);
        return Infos.ToDictionary(p => p.Name, p => all.AsSpan(p.Offset, p.Length).ToArray());
    }

    /// <summary>
    /// Uploads loaded tensors into one of the four buffers. Every tensor must be present, F32, of its exact shape (a
    /// transposed [C, d] for [d, C] holds the right count but the wrong layout) and finite: a NaN loaded here would
    /// only show later as a silently wrong metric.
    /// </summary>
    /// <exception cref="SkTuningException">A tensor is missing, of another type or shape, or holds NaN/Inf (names <paramref name="source"/>).</exception>
    public void Import(DeviceArray<float> buffer, IReadOnlyDictionary<string, NamedTensor> tensors, string source)
    {
        var all = new float[Count];
        foreach (var p in Infos)
        {
            if (!tensors.TryGetValue(p.Name, out var t))
                throw new SkTuningException($"{source}: tensor '{p.Name}' is missing");
            if (t.DType != TensorDType.F32)
                throw new SkTuningException($"{source}: tensor '{p.Name}' is {NamedTensor.NameOf(t.DType)}, expected F32");
            if (!t.Shape.AsSpan().SequenceEqual(p.Shape))
                throw new SkTuningException($"{source}: tensor '{p.Name}' has shape [{string.Join(",", t.Shape)}], expected [{string.Join(",", p.Shape)}]");
            int bad = IndexOfNonFinite(t.Data);
            if (bad >= 0)
                throw new SkTuningException(string.Create(System.Globalization.CultureInfo.InvariantCulture,
                    $"{source}: tensor '{p.Name}' holds {t.Data[bad]} at element {bad}; the file is damaged (retrain, or restore it from a copy)"));
            t.Data.CopyTo(all, p.Offset);
        }
        Backend.Upload(all, buffer.All);
    }

    private static int IndexOfNonFinite(float[] data)
    {
        for (int i = 0; i < data.Length; i++)
            if (!float.IsFinite(data[i])) return i;
        return -1;
    }

    /// <inheritdoc />
    public void Dispose()
    {
        Values.Dispose(); Gradients.Dispose(); AdamM.Dispose(); AdamV.Dispose();
    }
}
