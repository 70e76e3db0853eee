using System.Text.Json;

namespace SkTuning.Gpu.Runs;

/// <summary>Who holds a run folder's lock: written into <see cref="RunLock.FileName"/>.</summary>
/// <param name="Pid">The owner's process id.</param>
/// <param name="Host">The owner's machine.</param>
/// <param name="Started">When the owner took the lock.</param>
public sealed record LockOwner(int Pid, string Host, DateTimeOffset Started);

/// <summary>
/// The exclusive right to write a run folder (<c>train --out</c>). The lock file <c>.lock</c> names its owner (pid, host,
/// start time); the operating system holds a byte-range lock on it for the owner's lifetime and drops it however the
/// owner ends, <c>kill -9</c> included. So a lock whose owner is alive refuses every other writer with a one-line error
/// naming it, and one left by a dead process is taken over (and logged). Readers (eval, predict) take no lock: they read
/// the last commit, which the owner only ever replaces atomically.
/// </summary>
public sealed class RunLock : IDisposable
{
    /// <summary>The lock file's name inside the run folder.</summary>
    public const string FileName = ".lock";

    // Byte-range locks are per process on POSIX: these are the folders this process holds, so a second writer in the
    // same process is refused too. The range lies past the owner record so that reading the record is never blocked.
    private static readonly HashSet<string> HeldByThisProcess = new(StringComparer.Ordinal);
    private const long LockedByte = 1L << 20;

    private readonly FileStream _file;
    private readonly string _fullPath;

    private RunLock(FileStream file, string fullPath)
    {
        _file = file;
        _fullPath = fullPath;
    }

    /// <summary>Takes the lock of <paramref name="folder"/> (created if missing).</summary>
    /// <exception cref="SkTuningException">Another live process (or this one) writes the folder, or the lock file cannot be opened.</exception>
    public static RunLock Acquire(string folder, Action<string>? log = null)
    {
        string fullPath = Path.GetFullPath(folder), path = Path.Combine(fullPath, FileName);
        lock (HeldByThisProcess)
            if (!HeldByThisProcess.Add(fullPath))
                throw InUse(folder, new LockOwner(Environment.ProcessId, Environment.MachineName, default));
        FileStream? file = null;
        try
        {
            Directory.CreateDirectory(fullPath);
            if (OperatingSystem.IsMacOS())
            {
                // No byte-range locks in .NET on macOS: a whole-file lock, which also keeps others from reading the owner.
                try { file = new FileStream(path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None); }
                catch (IOException) when (File.Exists(path)) { throw InUse(folder, null); }
            }
            else
            {
                file = new FileStream(path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.ReadWrite | FileShare.Delete);
                try { file.Lock(LockedByte, 1); }
                catch (IOException) { throw InUse(folder, ReadOwnerOfLive(file)); }
            }
            if (ReadOwner(file) is { } dead)
                log?.Invoke($"{folder}: took over the lock of pid {dead.Pid} on {dead.Host} (taken {dead.Started:u}), which is no longer running");
            var owner = new LockOwner(Environment.ProcessId, Environment.MachineName, DateTimeOffset.UtcNow);
            file.SetLength(0);
            file.Write(JsonSerializer.SerializeToUtf8Bytes(owner, RunJson.Options));
            file.Flush(flushToDisk: true);
            return new RunLock(file, fullPath);
        }
        catch (Exception e)
        {
            file?.Dispose();
            lock (HeldByThisProcess) HeldByThisProcess.Remove(fullPath);
            if (e is IOException or UnauthorizedAccessException)
                throw new SkTuningException($"{path}: cannot open the run folder's lock file: {SafeTensors.OneLine(e.Message)}", e);
            throw;
        }
    }

    /// <summary>Releases the lock; the emptied file tells the next owner that nothing was left half-done by a crash.</summary>
    public void Dispose()
    {
        _file.SetLength(0);
        if (!OperatingSystem.IsMacOS()) _file.Unlock(LockedByte, 1);
        _file.Dispose();
        lock (HeldByThisProcess) HeldByThisProcess.Remove(_fullPath);
    }

    private static SkTuningException InUse(string folder, LockOwner? owner) => new(owner is null
        ? $"{folder}: in use by another sktune process; wait for it to finish or choose another --out"
        : $"{folder}: in use by sktune pid {owner.Pid} on {owner.Host}{(owner.Started == default ? "" : $" since {owner.Started:u}")}; wait for it to finish or choose another --out");

    // A live owner writes its record right after taking the lock: give it a moment.
    private static LockOwner? ReadOwnerOfLive(FileStream file)
    {
        for (int attempt = 0; attempt < 20; attempt++)
        {
            if (ReadOwner(file) is { } owner) return owner;
            Thread.Sleep(25);
        }
        return null;
    }

    private static LockOwner? ReadOwner(FileStream file)
    {
        var buffer = new byte[4096];
        file.Position = 0;
        int length = file.Read(buffer);
        if (length == 0) return null;
        try
        {
            return JsonSerializer.Deserialize<LockOwner>(buffer.AsSpan(0, length), RunJson.Options);
        }
        catch (JsonException)
        {
            return null;
        }
    }
}
