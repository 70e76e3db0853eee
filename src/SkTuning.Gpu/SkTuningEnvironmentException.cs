namespace SkTuning.Gpu;

/// <summary>
/// The machine, not the input, is at fault: a full disk, a read-only or unwritable folder. The one-line message names
/// the path and the variable or flag that chooses another place. The CLI prints it and exits with code 3.
/// </summary>
public sealed class SkTuningEnvironmentException : Exception
{
    /// <summary>Creates the exception with its one-line message and the underlying cause.</summary>
    public SkTuningEnvironmentException(string message, Exception inner) : base(message, inner) { }
}
