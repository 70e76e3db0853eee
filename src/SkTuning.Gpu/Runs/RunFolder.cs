namespace SkTuning.Gpu.Runs;

/// <summary>The trained weights of a run with the identity of the frozen model they belong to.</summary>
/// <param name="Tensors">Adapter and head tensors by name.</param>
/// <param name="ModelHash">SHA-256 (hex) of the frozen model the adapter was trained on.</param>
/// <param name="Method">The tuning method ("sk-prompt", "sk-prefix", ...).</param>
/// <param name="Metadata">All metadata entries of the file, the two above included.</param>
/// <param name="Source">The file they were read from.</param>
public sealed record AdapterWeights(
    IReadOnlyDictionary<string, NamedTensor> Tensors,
    string ModelHash,
    string Method,
    IReadOnlyDictionary<string, string> Metadata,
    string Source = "");

/// <summary>Adapter weights to save as a run's new best.</summary>
/// <param name="Tensors">Adapter and head tensors by name.</param>
/// <param name="ModelHash">SHA-256 (hex) of the frozen model.</param>
/// <param name="Method">The tuning method.</param>
public sealed record BestAdapter(IReadOnlyDictionary<string, NamedTensor> Tensors, string ModelHash, string Method);

/// <summary>
/// A run directory (<c>--out runs/NAME</c>): <c>adapter_config.json</c>, <c>adapter.safetensors</c>,
/// <c>checkpoint/</c> (the last commit: resume state, best adapter, metrics), <c>metrics.json</c>, <c>report.md</c> and <c>learning_curve.svg</c>.
/// <para>
/// A small transactional store. The config is written once, before anything else. Everything that changes is
/// committed together: a commit writes the resume state, the best adapter and the metrics into a fresh
/// <c>checkpoint.tmp-GUID/</c>, then swaps it in by renames (<c>checkpoint/</c> → <c>checkpoint.old/</c>, the new one →
/// <c>checkpoint/</c>). The commit point is the second rename; the recovery rule for a half-done swap is "use
/// <c>checkpoint/</c>, else <c>checkpoint.old/</c>". The top-level <c>adapter.safetensors</c> and <c>metrics.json</c>
/// are copies of the last commit, refreshed after each (<see cref="Publish"/>); readers take the commit's own files, so
/// a kill at any instant, or a read while a run writes, sees one commit whole.
/// </para>
/// </summary>
public sealed class RunFolder
{
    /// <summary>The configuration file; its presence makes a folder a run folder.</summary>
    public const string ConfigFileName = "adapter_config.json";

    /// <summary>The trained weights.</summary>
    public const string AdapterFileName = "adapter.safetensors";

    /// <summary>The learning-curve history and final/best metrics.</summary>
    public const string MetricsFileName = "metrics.json";

    /// <summary>The Markdown report.</summary>
    public const string ReportFileName = "report.md";

    /// <summary>The learning-curve chart.</summary>
    public const string LearningCurveFileName = "learning_curve.svg";

    /// <summary>The checkpoint directory.</summary>
    public const string CheckpointDirName = "checkpoint";

    /// <summary>The previous checkpoint while a new one is swapped in.</summary>
    public const string OldCheckpointDirName = "checkpoint.old";

    /// <summary>Prefix of a checkpoint being written (followed by a GUID).</summary>
    public const string TempCheckpointPrefix = "checkpoint.tmp-";

    /// <summary>The tensors file inside a checkpoint.</summary>
    public const string StateFileName = "state.safetensors";

    /// <summary>The trainer-state file inside a checkpoint.</summary>
    public const string TrainerFileName = "trainer.json";

    /// <summary>Tensor-name prefix of parameters in <see cref="StateFileName"/>.</summary>
    public const string ParamPrefix = "param.";

    /// <summary>Tensor-name prefix of AdamW first moments in <see cref="StateFileName"/>.</summary>
    public const string AdamMPrefix = "adam_m.";

    /// <summary>Tensor-name prefix of AdamW second moments in <see cref="StateFileName"/>.</summary>
    public const string AdamVPrefix = "adam_v.";

    /// <summary>Metadata key of the frozen model's hash in <see cref="AdapterFileName"/>.</summary>
    public const string ModelHashKey = "model_hash";

    /// <summary>Metadata key of the tuning method in <see cref="AdapterFileName"/>.</summary>
    public const string MethodKey = "method";

    /// <summary>Metadata key of the file format in the files this class writes.</summary>
    public const string FormatKey = "format";

    private RunFolder(string path) => Path = path;

    /// <summary>The folder, as given.</summary>
    public string Path { get; }

    /// <summary>Full path of <see cref="ConfigFileName"/>.</summary>
    public string ConfigPath => File(ConfigFileName);

    /// <summary>Full path of <see cref="AdapterFileName"/>.</summary>
    public string AdapterPath => File(AdapterFileName);

    /// <summary>Full path of <see cref="MetricsFileName"/>.</summary>
    public string MetricsPath => File(MetricsFileName);

    /// <summary>Full path of <see cref="ReportFileName"/>.</summary>
    public string ReportPath => File(ReportFileName);

    /// <summary>Full path of <see cref="LearningCurveFileName"/>.</summary>
    public string LearningCurvePath => File(LearningCurveFileName);

    /// <summary>Full path of the <see cref="CheckpointDirName"/> directory.</summary>
    public string CheckpointPath => File(CheckpointDirName);

    /// <summary>Creates the folder (and parents) if needed; existing files are left alone.</summary>
    public static RunFolder Create(string path)
    {
        try
        {
            Directory.CreateDirectory(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException)
        {
            throw new SkTuningException($"{path}: cannot create the run folder: {SafeTensors.OneLine(e.Message)}", e);
        }
        return new RunFolder(path);
    }

    /// <summary>Opens an existing run folder: one that holds <see cref="ConfigFileName"/>.</summary>
    public static RunFolder Open(string path)
    {
        if (!IsRunFolder(path))
            throw new SkTuningException(System.IO.File.Exists(System.IO.Path.Combine(path, RunLock.FileName))
                ? $"{path}: nothing committed yet (its run is starting, or stopped before writing {ConfigFileName}); start a stopped run again with sktune train --resume --out {path}"
                : $"{path}: not a run folder (no {ConfigFileName})");
        return new RunFolder(path);
    }

    /// <summary>Whether <paramref name="path"/> is a directory holding <see cref="ConfigFileName"/>.</summary>
    public static bool IsRunFolder(string path) =>
        Directory.Exists(path) && System.IO.File.Exists(System.IO.Path.Combine(path, ConfigFileName));

    /// <summary>Writes <paramref name="config"/> to <see cref="ConfigFileName"/> (snake_case, indented).</summary>
    public void WriteConfig<T>(T config)
    {
        KillPoint.Before($"write {ConfigFileName}");
        RunJson.Write(ConfigPath, config);
    }

    /// <summary>Reads <see cref="ConfigFileName"/>; a missing or corrupt file is a one-line error naming it.</summary>
    public T ReadConfig<T>() => RunJson.Read<T>(ConfigPath);

    /// <summary>
    /// Reads the trained weights of the last commit (the top-level copy for a folder without one). With
    /// <paramref name="expectedModelHash"/>, an adapter trained on another model is a one-line error; so is a run
    /// that has not evaluated yet.
    /// </summary>
    public AdapterWeights ReadAdapter(string? expectedModelHash = null) => ReadCommitted(dir =>
    {
        string path = dir is not null && System.IO.File.Exists(System.IO.Path.Combine(dir, AdapterFileName))
            ? System.IO.Path.Combine(dir, AdapterFileName)
            : AdapterPath;
        if (!System.IO.File.Exists(path))
            throw new SkTuningException($"{Path}: no trained weights yet (its run has not committed an evaluation); continue a stopped run with sktune train --resume --out {Path}");
        var file = SafeTensors.Read(path);
        if (!file.Metadata.TryGetValue(ModelHashKey, out var hash))
            throw new SkTuningException($"{path}: no {ModelHashKey} in the metadata: not an adapter written by sktune");
        if (!file.Metadata.TryGetValue(MethodKey, out var method))
            throw new SkTuningException($"{path}: no {MethodKey} in the metadata: not an adapter written by sktune");
        if (expectedModelHash != null && !string.Equals(hash, expectedModelHash, StringComparison.OrdinalIgnoreCase))
            throw new SkTuningException($"{path}: trained on model {Short(hash)}, but the model given is {Short(expectedModelHash)}");
        return new AdapterWeights(file.Tensors, hash, method, file.Metadata, path);
    });

    /// <summary>Whether a complete checkpoint exists (<c>checkpoint/</c>, or <c>checkpoint.old/</c> left by an interrupted swap).</summary>
    public bool HasCheckpoint => CompleteCheckpointDir() != null;

    /// <summary>
    /// Commits a step: <paramref name="checkpoint"/>, <paramref name="history"/> and the best adapter
    /// (<paramref name="newBest"/>, or the previous commit's when null) go into a fresh temp folder that is then
    /// swapped in as <c>checkpoint/</c>; the top-level copies are refreshed after.
    /// </summary>
    public void Commit<TState>(TrainingCheckpoint<TState> checkpoint, RunHistory history, BestAdapter? newBest)
    {
        ArgumentNullException.ThrowIfNull(checkpoint);
        ArgumentNullException.ThrowIfNull(history);
        var tensors = new Dictionary<string, NamedTensor>(StringComparer.Ordinal);
        foreach (var (name, t) in checkpoint.Parameters) tensors[ParamPrefix + name] = t;
        foreach (var (name, t) in checkpoint.AdamM) tensors[AdamMPrefix + name] = t;
        foreach (var (name, t) in checkpoint.AdamV) tensors[AdamVPrefix + name] = t;
        CheckMoments(checkpoint.Parameters, checkpoint.AdamM, AdamMPrefix, m => throw new ArgumentException(m, nameof(checkpoint)));
        CheckMoments(checkpoint.Parameters, checkpoint.AdamV, AdamVPrefix, m => throw new ArgumentException(m, nameof(checkpoint)));

        string? previous = CompleteCheckpointDir();
        string temp = File(TempCheckpointPrefix + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(temp);
        try
        {
            KillPoint.Before("write state.safetensors");
            SafeTensors.Write(System.IO.Path.Combine(temp, StateFileName), tensors,
                new Dictionary<string, string> { [FormatKey] = "sktuning-checkpoint/1" });
            KillPoint.Before("write trainer.json");
            RunJson.Write(System.IO.Path.Combine(temp, TrainerFileName), checkpoint.Trainer);
            string adapter = System.IO.Path.Combine(temp, AdapterFileName);
            if (newBest is not null)
            {
                KillPoint.Before("write adapter.safetensors");
                WriteAdapter(adapter, newBest);
            }
            else if (previous is not null && System.IO.File.Exists(System.IO.Path.Combine(previous, AdapterFileName)))
            {
                KillPoint.Before("copy adapter.safetensors");
                System.IO.File.Copy(System.IO.Path.Combine(previous, AdapterFileName), adapter);
            }
            KillPoint.Before("write metrics.json");
            history.Save(temp);
            SwapIn(temp);
        }
        catch
        {
            if (Directory.Exists(temp)) Directory.Delete(temp, recursive: true);
            throw;
        }
        DeleteStaleTemps();
        Publish();
    }

    /// <summary>
    /// Refreshes the top-level <see cref="AdapterFileName"/> and <see cref="MetricsFileName"/> from the last commit
    /// (after a commit, and on resume: a kill may have come between a commit and its copies).
    /// </summary>
    public void Publish()
    {
        if (CompleteCheckpointDir() is not { } dir) return;
        foreach (var name in new[] { AdapterFileName, MetricsFileName })
        {
            string committed = System.IO.Path.Combine(dir, name);
            if (!System.IO.File.Exists(committed)) continue;
            KillPoint.Before($"publish {name}");
            AtomicFile.WriteAllBytes(File(name), System.IO.File.ReadAllBytes(committed));
        }
    }

    /// <summary>
    /// Removes what killed writers leave behind: half-written commits and temporary files, and a previous commit
    /// whose successor is in place. Only the lock's owner may call it.
    /// </summary>
    public void RemoveLeftovers()
    {
        DeleteStaleTemps();
        foreach (var temp in Directory.EnumerateFiles(Path, ".*.tmp")) System.IO.File.Delete(temp);
        if (Directory.Exists(CheckpointPath) && Directory.Exists(File(OldCheckpointDirName)))
            Directory.Delete(File(OldCheckpointDirName), recursive: true);
    }

    // The commit point: checkpoint/ is always complete (it only ever appears by a rename of a finished temp folder);
    // between the two renames only checkpoint.old/ exists, and it is complete too.
    private void SwapIn(string temp)
    {
        string current = CheckpointPath, old = File(OldCheckpointDirName);
        if (Directory.Exists(current))
        {
            if (Directory.Exists(old))
            {
                KillPoint.Before("delete checkpoint.old");
                Directory.Delete(old, recursive: true);
            }
            KillPoint.Before("rename checkpoint to checkpoint.old");
            Directory.Move(current, old);
        }
        // If only checkpoint.old/ exists (an earlier swap was interrupted), it stays until the new one is in place.
        KillPoint.Before("rename the new commit to checkpoint");
        Directory.Move(temp, current);
        if (Directory.Exists(old))
        {
            KillPoint.Before("delete checkpoint.old");
            Directory.Delete(old, recursive: true);
        }
    }

    private static void WriteAdapter(string path, BestAdapter adapter)
    {
        var metadata = new Dictionary<string, string>(StringComparer.Ordinal)
        {
            [FormatKey] = "sktuning-adapter/1", [ModelHashKey] = adapter.ModelHash, [MethodKey] = adapter.Method,
        };
        SafeTensors.Write(path, adapter.Tensors, metadata);
    }

    /// <summary>
    /// Reads the last complete checkpoint, or null when there is none. Half-written <c>checkpoint.tmp-*</c>
    /// folders are ignored; a corrupt checkpoint is a one-line error naming the file.
    /// </summary>
    public TrainingCheckpoint<TState>? ReadCheckpoint<TState>()
    {
        var dir = CompleteCheckpointDir();
        if (dir == null) return null;
        string statePath = System.IO.Path.Combine(dir, StateFileName);
        if (!System.IO.File.Exists(statePath))
            throw new SkTuningException($"{Path}: the run finished and dropped its resume state (--keep-checkpoint false): there is nothing to resume; eval and predict still read its adapter, and a new run needs another --out");
        var state = SafeTensors.Read(statePath);
        var trainer = RunJson.Read<TState>(System.IO.Path.Combine(dir, TrainerFileName));
        var parameters = new Dictionary<string, NamedTensor>(StringComparer.Ordinal);
        var m = new Dictionary<string, NamedTensor>(StringComparer.Ordinal);
        var v = new Dictionary<string, NamedTensor>(StringComparer.Ordinal);
        foreach (var (name, t) in state.Tensors)
        {
            if (name.StartsWith(ParamPrefix, StringComparison.Ordinal)) parameters[name[ParamPrefix.Length..]] = t;
            else if (name.StartsWith(AdamMPrefix, StringComparison.Ordinal)) m[name[AdamMPrefix.Length..]] = t;
            else if (name.StartsWith(AdamVPrefix, StringComparison.Ordinal)) v[name[AdamVPrefix.Length..]] = t;
            else throw new SkTuningException($"{statePath}: tensor '{name}' has none of the prefixes {ParamPrefix}, {AdamMPrefix}, {AdamVPrefix}");
        }
        CheckMoments(parameters, m, AdamMPrefix, msg => throw new SkTuningException($"{statePath}: {msg}"));
        CheckMoments(parameters, v, AdamVPrefix, msg => throw new SkTuningException($"{statePath}: {msg}"));
        return new TrainingCheckpoint<TState>(parameters, m, v, trainer);
    }

    /// <summary>Whether the last commit holds resume state (<see cref="StateFileName"/>); false once <see cref="DropResumeState"/> ran.</summary>
    public bool HasResumeState => CompleteCheckpointDir() is { } dir && System.IO.File.Exists(System.IO.Path.Combine(dir, StateFileName));

    /// <summary>
    /// Commits the last commit again without its resume state (<see cref="StateFileName"/>: parameters and AdamW
    /// moments): its best adapter, metrics and trainer state are copied into a fresh temp folder that is swapped in as
    /// <c>checkpoint/</c>, so a kill at any instant leaves one whole commit, with or without the state. For a finished
    /// run; only the lock's owner may call it.
    /// </summary>
    public void DropResumeState()
    {
        if (CompleteCheckpointDir() is not { } previous || !HasResumeState) return;
        string temp = File(TempCheckpointPrefix + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(temp);
        try
        {
            foreach (var name in new[] { TrainerFileName, AdapterFileName, MetricsFileName })
            {
                string source = System.IO.Path.Combine(previous, name);
                if (!System.IO.File.Exists(source)) continue;
                KillPoint.Before($"copy {name}");
                System.IO.File.Copy(source, System.IO.Path.Combine(temp, name));
            }
            SwapIn(temp);
        }
        catch
        {
            if (Directory.Exists(temp)) Directory.Delete(temp, recursive: true);
            throw;
        }
    }

    /// <summary>Deletes every checkpoint folder (the finished run keeps only its adapter).</summary>
    public void DeleteCheckpoint()
    {
        foreach (var dir in new[] { CheckpointPath, File(OldCheckpointDirName) })
            if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true);
        DeleteStaleTemps();
    }

    /// <summary>
    /// Loads the last commit's <see cref="MetricsFileName"/> (the top-level one for a folder without a commit), or an
    /// empty history when there is none yet.
    /// </summary>
    public RunHistory ReadHistory() => ReadCommitted(dir =>
        dir is not null && System.IO.File.Exists(System.IO.Path.Combine(dir, MetricsFileName)) ? RunHistory.Load(dir)
        : System.IO.File.Exists(MetricsPath) ? RunHistory.Load(Path)
        : new RunHistory());

    /// <summary>Writes <see cref="ReportFileName"/>.</summary>
    public void WriteReport(RunReport report)
    {
        KillPoint.Before($"write {ReportFileName}");
        AtomicFile.WriteAllText(ReportPath, report.ToMarkdown());
    }

    /// <summary>Writes <see cref="LearningCurveFileName"/>: train loss and, when given, the dev metric <paramref name="devMetric"/>.</summary>
    public void WriteLearningCurve(string title, RunHistory history, string? devMetric)
    {
        KillPoint.Before($"write {LearningCurveFileName}");
        LearningCurveSvg.Write(LearningCurvePath, title, history, devMetric);
    }

    private string File(string name) => System.IO.Path.Combine(Path, name);

    private string? CompleteCheckpointDir()
    {
        if (Directory.Exists(CheckpointPath)) return CheckpointPath;
        var old = File(OldCheckpointDirName);
        return Directory.Exists(old) ? old : null;
    }

    // Reads from the last commit while another process may be swapping in the next: a file that vanished between
    // choosing the folder and opening it is read again from the new one.
    private T ReadCommitted<T>(Func<string?, T> read)
    {
        for (int attempt = 1; ; attempt++)
        {
            try
            {
                return read(CompleteCheckpointDir());
            }
            catch (SkTuningException) when (attempt < 5)
            {
                Thread.Sleep(20 * attempt);
            }
        }
    }

    private void DeleteStaleTemps()
    {
        foreach (var dir in Directory.EnumerateDirectories(Path, TempCheckpointPrefix + "*"))
        {
            try { Directory.Delete(dir, recursive: true); }
            catch (IOException) { /* in use by a reader: harmless, retried on the next commit */ }
        }
    }

    private static void CheckMoments(IReadOnlyDictionary<string, NamedTensor> parameters, IReadOnlyDictionary<string, NamedTensor> moments,
        string what, Action<string> fail)
    {
        foreach (var (name, t) in moments)
        {
            if (!parameters.TryGetValue(name, out var p)) fail($"{what}{name} has no parameter {ParamPrefix}{name}");
            else if (!p.Shape.AsSpan().SequenceEqual(t.Shape))
                fail($"{what}{name} has shape [{string.Join(", ", t.Shape)}] but {ParamPrefix}{name} has [{string.Join(", ", p.Shape)}]");
        }
        foreach (var name in parameters.Keys)
            if (!moments.ContainsKey(name)) fail($"{ParamPrefix}{name} has no {what}{name}");
    }

    private static string Short(string hash) => hash.Length > 12 ? hash[..12] : hash;
}
