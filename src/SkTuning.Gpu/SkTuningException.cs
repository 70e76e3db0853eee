namespace SkTuning.Gpu;

/// <summary>
/// A problem with the user's input (a file, a size, a text): the message is one line that names the
/// file, line or size at fault. The CLI prints it without a stack trace and exits with code 2.
/// </summary>
public sealed class SkTuningException : Exception
{
    /// <summary>Creates the exception with its one-line message.</summary>
    public SkTuningException(string message) : base(message) { }

    /// <summary>Creates the exception with its one-line message and the underlying cause.</summary>
    public SkTuningException(string message, Exception inner) : base(message, inner) { }
}
