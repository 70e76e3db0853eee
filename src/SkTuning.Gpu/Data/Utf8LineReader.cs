using System.Text;

namespace SkTuning.Gpu.Data;

/// <summary>
/// Streams a file line by line, decoding each line as strict UTF-8 so that an invalid byte sequence is
/// reported with its line number. A leading UTF-8 BOM is skipped; "\n" and "\r\n" both end a line.
/// </summary>
internal sealed class Utf8LineReader : IDisposable
{
    private static readonly UTF8Encoding Strict = new(false, true);
    private readonly Stream _stream;
    private readonly string _path;
    private byte[] _buf = new byte[1 << 16];
    private int _start, _end;
    private bool _eof, _first = true;

    /// <summary>Opens <paramref name="path"/>; a missing file is a user error.</summary>
    public Utf8LineReader(string path)
    {
        _path = path;
        try
        {
            _stream = InputFile.OpenRead(path, 1, FileOptions.SequentialScan);
        }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException)
        {
            throw new SkTuningException($"{path}: file not found", e);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new SkTuningException($"{path}: cannot read ({e.Message.ReplaceLineEndings(" ")})", e);
        }
    }

    /// <summary>The 1-based number of the line last returned.</summary>
    public int LineNumber { get; private set; }

    /// <summary>Reads the next line without its terminator; null at end of file.</summary>
    public string? ReadLine()
    {
        while (true)
        {
            int nl = Array.IndexOf(_buf, (byte)'\n', _start, _end - _start);
            if (nl >= 0)
            {
                string line = Decode(_start, nl - _start);
                _start = nl + 1;
                return line;
            }
            if (_eof)
            {
                if (_start == _end) return null;
                string last = Decode(_start, _end - _start);
                _start = _end;
                return last;
            }
            Fill();
        }
    }

    private void Fill()
    {
        if (_start > 0)
        {
            Buffer.BlockCopy(_buf, _start, _buf, 0, _end - _start);
            _end -= _start;
            _start = 0;
        }
        if (_end == _buf.Length) Array.Resize(ref _buf, _buf.Length * 2);
        int n = _stream.Read(_buf, _end, _buf.Length - _end);
        if (n == 0) _eof = true;
        _end += n;
    }

    private string Decode(int offset, int count)
    {
        LineNumber++;
        if (_first)
        {
            _first = false;
            if (count >= 3 && _buf[offset] == 0xEF && _buf[offset + 1] == 0xBB && _buf[offset + 2] == 0xBF)
            {
                offset += 3;
                count -= 3;
            }
        }
        if (count > 0 && _buf[offset + count - 1] == (byte)'\r') count--;
        try
        {
            return Strict.GetString(_buf, offset, count);
        }
        catch (DecoderFallbackException e)
        {
            throw new SkTuningException($"{_path}:{LineNumber}: invalid UTF-8", e);
        }
    }

    /// <inheritdoc/>
    public void Dispose() => _stream.Dispose();
}
