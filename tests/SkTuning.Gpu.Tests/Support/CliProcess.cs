using System.Diagnostics;

namespace SkTuning.Gpu.Tests.Support;

/// <summary>Runs the real <c>sktune</c> (copied beside the tests) as a child process, as a user would.</summary>
internal static class CliProcess
{
    public sealed record Result(int ExitCode, string Stdout, string Stderr);

    /// <summary>A started <c>sktune</c>: wait for it, or kill it (SIGKILL) mid-run.</summary>
    public sealed class Running : IDisposable
    {
        private readonly Process _process;
        private readonly Task<string> _stdout, _stderr;
        private readonly string _command;

        internal Running(Process process, string command)
        {
            _process = process;
            _command = command;
            _stdout = process.StandardOutput.ReadToEndAsync();
            _stderr = process.StandardError.ReadToEndAsync();
        }

        public int Id => _process.Id;

        public bool HasExited => _process.HasExited;

        public Result Wait()
        {
            if (!_process.WaitForExit(TimeSpan.FromMinutes(5))) { _process.Kill(true); throw new TimeoutException(_command); }
            return new Result(_process.ExitCode, _stdout.Result, _stderr.Result);
        }

        /// <summary>SIGKILL, as <c>kill -9</c>: no handler, no cleanup runs in the child.</summary>
        public Result Kill()
        {
            if (!_process.HasExited) _process.Kill();
            return Wait();
        }

        public void Dispose() => _process.Dispose();
    }

    public static Result Run(params string[] args) => RunIn(null, args);

    public static Result RunIn(string? workingDirectory, params string[] args) => Start(workingDirectory, null, args).Wait();

    /// <summary>Runs with extra environment variables (e.g. SKTUNE_CACHE).</summary>
    public static Result RunWith(string? workingDirectory, IReadOnlyDictionary<string, string>? environment, params string[] args) =>
        Start(workingDirectory, environment, args).Wait();

    /// <summary>Starts <c>sktune</c> with extra environment variables.</summary>
    public static Running Start(string? workingDirectory, IReadOnlyDictionary<string, string>? environment, params string[] args)
    {
        var start = new ProcessStartInfo("dotnet")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            WorkingDirectory = workingDirectory ?? Environment.CurrentDirectory,
        };
        start.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "sktune.dll"));
        foreach (var a in args) start.ArgumentList.Add(a);
        foreach (var (name, value) in environment ?? new Dictionary<string, string>()) start.Environment[name] = value;
        return new Running(Process.Start(start)!, "sktune " + string.Join(' ', args));
    }

    /// <summary>The lines of stderr that are not timestamped log lines.</summary>
    public static string[] ErrorLines(Result r) =>
        r.Stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Where(l => !l.StartsWith('[')).ToArray();
}
