using System.CommandLine;

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

    public static int Run(RootCommand root, string[] args)
    {
        var parse = root.Parse(args);
        if (parse.Errors.Count > 0)
        {
            Console.Error.WriteLine($"error: {parse.Errors[0].Message}");
            return BadInput;
        }
        return parse.Invoke();
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
