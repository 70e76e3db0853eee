using System.CommandLine;
using System.CommandLine.Parsing;

namespace SkTuning.Gpu.Cli;

/// <summary>
/// Runs a parsed command and maps failures to exit codes: 0 success, 2 bad input (usage errors and
/// <see cref="SkTuningException"/>, printed as one line), 3 an environment failure (<see cref="SkTuningEnvironmentException"/>:
/// full disk, unwritable folder; one line naming the path and the variable or flag), 1 an internal error (one line; the
/// stack trace only with SKTUNE_DEBUG=1). docs/RELIABILITY.md lists the cases.
/// </summary>
internal static class CliRunner
{
    public const int BadInput = 2;
    public const int InternalError = 1;
    public const int EnvironmentError = 3;

    /// <summary>
    /// Parses and runs <paramref name="args"/>. A bare <c>sktune</c> prints the help (exit 0); an unknown command prints
    /// "did you mean" and the help (exit 2); any other usage error prints its first error, with "did you mean" for a
    /// mistyped option, and the command's usage line (exit 2).
    /// </summary>
    public static int Run(RootCommand root, string[] args)
    {
        var parse = root.Parse(args);
        if (parse.Errors.Count == 0) return parse.Invoke();
        var command = parse.CommandResult.Command;
        if (command == root && args.Length == 0)
        {
            WriteHelp(root, Console.Out);
            return 0;
        }
        if (command == root && !args[0].StartsWith('-'))
        {
            Console.Error.WriteLine($"error: unknown command '{args[0]}'{DidYouMean(args[0], root.Subcommands.Select(c => c.Name))}");
            WriteHelp(root, Console.Error);
            return BadInput;
        }
        // An unrecognized token is reported first: it is usually the cause of the errors after it (a missing value, say).
        string? token = parse.UnmatchedTokens.FirstOrDefault();
        var first = parse.Errors.FirstOrDefault(e => token is not null && e.Message.Contains($"'{token}'", StringComparison.Ordinal)) ?? parse.Errors[0];
        string hint = token is null ? "" : DidYouMean(token, command.Options.Select(o => o.Name).Concat(command.Subcommands.Select(c => c.Name)));
        Console.Error.WriteLine($"error: {first.Message.ReplaceLineEndings(" ").TrimEnd('.')}{hint}");
        Console.Error.WriteLine($"usage: {CommandPath(parse.CommandResult)}{(command.Subcommands.Count > 0 ? " <command>" : "")} [options]; {CommandPath(parse.CommandResult)} --help lists them");
        return BadInput;
    }

    private static void WriteHelp(RootCommand root, TextWriter to) =>
        root.Parse(["--help"]).Invoke(new InvocationConfiguration { Output = to });

    private static string CommandPath(CommandResult result) =>
        result.Parent is CommandResult parent ? $"{CommandPath(parent)} {result.Command.Name}" : result.Command.Name;

    // The nearest names by edit distance (at most 3 edits, or the token is a prefix), as System.CommandLine's own
    // suggestions do; empty when nothing is near.
    private static string DidYouMean(string token, IEnumerable<string> names)
    {
        var near = names.Select(n => (Name: n, Distance: n.StartsWith(token, StringComparison.Ordinal) ? 0 : EditDistance(token, n)))
            .Where(x => x.Distance <= 3).ToList();
        if (near.Count == 0) return "";
        int best = near.Min(x => x.Distance);
        return $"; did you mean {string.Join(" or ", near.Where(x => x.Distance == best).Select(x => $"'{x.Name}'"))}?";
    }

    private static int EditDistance(string a, string b)
    {
        var row = Enumerable.Range(0, b.Length + 1).ToArray();
        for (int i = 1; i <= a.Length; i++)
        {
            int diagonal = row[0];
            row[0] = i;
            for (int j = 1; j <= b.Length; j++)
            {
                int above = row[j];
                row[j] = Math.Min(Math.Min(row[j] + 1, row[j - 1] + 1), diagonal + (a[i - 1] == b[j - 1] ? 0 : 1));
                diagonal = above;
            }
        }
        return row[b.Length];
    }

    /// <summary>Wraps a command body with the error policy.</summary>
    public static Func<ParseResult, int> Guard(Func<ParseResult, int> body) => parse =>
    {
        try
        {
            return body(parse);
        }
        catch (SkTuningException e)
        {
            Console.Error.WriteLine($"error: {e.Message.ReplaceLineEndings(" ")}");
            return BadInput;
        }
        catch (SkTuningEnvironmentException e)
        {
            Console.Error.WriteLine($"error: {e.Message.ReplaceLineEndings(" ")}");
            return EnvironmentError;
        }
        catch (ArgumentException e)
        {
            Console.Error.WriteLine($"error: {e.Message.ReplaceLineEndings(" ")}");
            return BadInput;
        }
        catch (Exception e)
        {
            Console.Error.WriteLine($"internal error: {e.GetType().Name}: {e.Message.ReplaceLineEndings(" ")}");
            if (Environment.GetEnvironmentVariable("SKTUNE_DEBUG") == "1") Console.Error.WriteLine(e);
            return InternalError;
        }
    };

    /// <summary>Logs to stderr with a timestamp, so stdout stays clean for results and JSON.</summary>
    public static void Log(string message) => Console.Error.WriteLine($"[{DateTime.Now:HH:mm:ss}] {message}");
}
