using System.Text.RegularExpressions;
using Microsoft.ML.Tokenizers;

namespace SkTuning.Gpu.Tokenization;

/// <summary>
/// A pre-tokenizer that keeps the text whole: the HF pre-tokenization (split regex, ▁ handling, byte fallback) is done
/// before Microsoft.ML.Tokenizers' BPE sees a piece, and re-splitting a piece alone could differ from splitting it in
/// context (<c>\s+(?!\S)</c> looks at the next character).
/// </summary>
internal static class WholeTextPreTokenizer
{
    /// <summary>The shared instance.</summary>
    public static PreTokenizer Instance { get; } = new RegexPreTokenizer(new Regex(@"[\s\S]+", RegexOptions.Compiled), null);
}
