using System.Globalization;
using System.Text;

namespace SkTuning.Gpu.Tokenization;

/// <summary>
/// BERT's BasicTokenizer (HF <c>BasicTokenizer</c>): clean control characters, space out CJK ideographs, lower-case and
/// strip accents (NFD, drop Mn marks) for uncased vocabularies, split on whitespace and punctuation. Hand-written
/// because Microsoft.ML.Tokenizers' own basic tokenization drops ASCII symbols BERT keeps as punctuation
/// (<c>` $ + &lt; = &gt; ^ | ~</c>: the backtick vanished from SST-2's <c>``</c> quotes).
/// </summary>
internal static class BertBasicTokenizer
{
    /// <summary>The words and punctuation marks of <paramref name="text"/>, joined by single spaces.</summary>
    public static string Split(string text, bool lowerCase, bool stripAccents)
    {
        var cleaned = new StringBuilder(text.Length + 16);
        foreach (var rune in text.Normalize(NormalizationForm.FormC).EnumerateRunes())
        {
            int cp = rune.Value;
            if (cp == 0 || cp == 0xFFFD) continue;
            if (cp is '\t' or '\n' or '\r' || Rune.GetUnicodeCategory(rune) == UnicodeCategory.SpaceSeparator) { cleaned.Append(' '); continue; }
            if (Rune.GetUnicodeCategory(rune) is UnicodeCategory.Control or UnicodeCategory.Format) continue;
            if (IsCjk(cp)) cleaned.Append(' ').Append(rune.ToString()).Append(' ');
            else cleaned.Append(rune.ToString());
        }
        var output = new StringBuilder(cleaned.Length + 16);
        foreach (var word in cleaned.ToString().Split(' ', StringSplitOptions.RemoveEmptyEntries))
        {
            var w = lowerCase ? word.ToLowerInvariant() : word;
            if (stripAccents) w = StripAccents(w);
            foreach (var rune in w.EnumerateRunes())
            {
                if (IsPunctuation(rune)) output.Append(' ').Append(rune.ToString()).Append(' ');
                else output.Append(rune.ToString());
            }
            output.Append(' ');
        }
        return output.ToString();
    }

    private static string StripAccents(string word)
    {
        var sb = new StringBuilder(word.Length);
        foreach (var c in word.Normalize(NormalizationForm.FormD))
            if (CharUnicodeInfo.GetUnicodeCategory(c) != UnicodeCategory.NonSpacingMark) sb.Append(c);
        return sb.ToString();
    }

    // BERT treats every non-alphanumeric ASCII character as punctuation, plus the Unicode P* categories.
    private static bool IsPunctuation(Rune r) =>
        r.Value is >= 33 and <= 47 or >= 58 and <= 64 or >= 91 and <= 96 or >= 123 and <= 126
        || Rune.GetUnicodeCategory(r) is UnicodeCategory.ConnectorPunctuation or UnicodeCategory.DashPunctuation
            or UnicodeCategory.OpenPunctuation or UnicodeCategory.ClosePunctuation or UnicodeCategory.InitialQuotePunctuation
            or UnicodeCategory.FinalQuotePunctuation or UnicodeCategory.OtherPunctuation;

    private static bool IsCjk(int cp) =>
        cp is >= 0x4E00 and <= 0x9FFF or >= 0x3400 and <= 0x4DBF or >= 0x20000 and <= 0x2A6DF or >= 0x2A700 and <= 0x2B73F
            or >= 0x2B740 and <= 0x2B81F or >= 0x2B820 and <= 0x2CEAF or >= 0xF900 and <= 0xFAFF or >= 0x2F800 and <= 0x2FA1F;
}
