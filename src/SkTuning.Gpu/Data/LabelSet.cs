using System.Globalization;

namespace SkTuning.Gpu.Data;

/// <summary>
/// The ordered label names of a classification or token-classification task, and their ids (positions).
/// Built from the training data; a dev or test label that training never saw is a user error.
/// </summary>
public sealed class LabelSet
{
    private readonly string[] _names;
    private readonly Dictionary<string, int> _ids;

    private LabelSet(string[] names)
    {
        _names = names;
        _ids = new Dictionary<string, int>(StringComparer.Ordinal);
        for (int i = 0; i < names.Length; i++)
            if (!_ids.TryAdd(names[i], i)) throw new ArgumentException($"duplicate label '{names[i]}'");
    }

    /// <summary>The label names in id order.</summary>
    public IReadOnlyList<string> Names => _names;

    /// <summary>The number of labels.</summary>
    public int Count => _names.Length;

    /// <summary>The name of label <paramref name="id"/>.</summary>
    public string this[int id] => _names[id];

    /// <summary>A label set with exactly these names, in this order.</summary>
    public static LabelSet FromNames(IEnumerable<string> names) => new(names.ToArray());

    /// <summary>
    /// The distinct labels of the training data: sorted numerically when every label is an integer
    /// ("0","1" → ids 0, 1), else in ordinal string order (ham, spam; entailment, not_entailment).
    /// </summary>
    public static LabelSet FromTraining(IEnumerable<string> labels)
    {
        var distinct = labels.Distinct(StringComparer.Ordinal).ToArray();
        if (distinct.Length > 0 && distinct.All(l => long.TryParse(l, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out _)))
            return new(distinct.OrderBy(l => long.Parse(l, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture)).ToArray());
        Array.Sort(distinct, StringComparer.Ordinal);
        return new(distinct);
    }

    /// <summary>
    /// The BIO tag set of the training tags: "O" first, then B-type and I-type for every entity type seen
    /// (types in ordinal order), so a dev B-X is known whenever training saw X in any position.
    /// Tags that are not BIO are added as they are, in ordinal order after the BIO tags.
    /// </summary>
    public static LabelSet FromTags(IEnumerable<string> tags)
    {
        var types = new SortedSet<string>(StringComparer.Ordinal);
        var other = new SortedSet<string>(StringComparer.Ordinal);
        foreach (var t in tags)
        {
            if (t == "O") continue;
            if (t.Length > 2 && (t[0] == 'B' || t[0] == 'I') && t[1] == '-') types.Add(t[2..]);
            else other.Add(t);
        }
        var names = new List<string> { "O" };
        foreach (var type in types) { names.Add("B-" + type); names.Add("I-" + type); }
        names.AddRange(other.Where(o => !names.Contains(o)));
        return new(names.ToArray());
    }

    /// <summary>The id of <paramref name="name"/>, if known.</summary>
    public bool TryGetId(string name, out int id) => _ids.TryGetValue(name, out id);

    /// <summary>The id of <paramref name="name"/>; an unknown label throws <see cref="ArgumentException"/>.</summary>
    public int IdOf(string name) =>
        _ids.TryGetValue(name, out int id) ? id : throw new ArgumentException($"unknown label '{name}'");

    /// <summary>
    /// The id of a label read at <paramref name="file"/>:<paramref name="line"/>; an unknown label is a
    /// <see cref="SkTuningException"/> naming the file, line and label.
    /// </summary>
    public int Encode(string name, string file, int line)
    {
        if (_ids.TryGetValue(name, out int id)) return id;
        string known = string.Join(", ", _names.Take(20)) + (_names.Length > 20 ? ", …" : "");
        throw new SkTuningException($"{file}:{line}: label '{Printable(name)}' does not occur in the training data (labels: {known})");
    }

    /// <summary>Maps ids back to names.</summary>
    public string[] Decode(ReadOnlySpan<int> ids)
    {
        var r = new string[ids.Length];
        for (int i = 0; i < ids.Length; i++) r[i] = _names[ids[i]];
        return r;
    }

    /// <inheritdoc/>
    public override string ToString() => string.Join(", ", _names);

    internal static string Printable(string s)
    {
        if (s.Length > 60) s = s[..60] + "…";
        return s.ReplaceLineEndings(" ").Replace('\t', ' ');
    }
}
