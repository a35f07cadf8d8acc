using System.Text;

namespace Celer.Server.ToolCalling;

/// <summary>What a scanner made of one more character.</summary>
internal enum ScanStatus
{
    /// <summary>Consumed; the value goes on.</summary>
    NeedMore,

    /// <summary>Consumed, and it ended the value.</summary>
    Complete,

    /// <summary>Not consumed: the value (a number) had ended just before it; the caller reads it next.</summary>
    CompleteBefore,

    /// <summary>The text is not what was expected here.</summary>
    Error,
}

/// <summary>Reads text a character at a time: the value scanners and the call readers.</summary>
internal interface ICharReader
{
    ScanStatus Feed(char c);
}

/// <summary>Reads one value, JSON or a Python literal, writing it out as JSON as it goes.</summary>
internal interface IValueScanner : ICharReader
{
    /// <summary>The end of the text: false when the value is unfinished (a top-level number needs no delimiter).</summary>
    bool Finish();
}

internal static class ValueScanners
{
    /// <summary>Nesting deeper than this is refused: arguments are written by a model, not a fuzzer, and the stack stays bounded.</summary>
    public const int MaxDepth = 128;

    /// <summary>
    /// <paramref name="text"/> read whole by <paramref name="scanner"/>, which writes into <paramref name="output"/>: the
    /// JSON it wrote, or null when the text is not one value with nothing but whitespace after it.
    /// </summary>
    public static string? ReadWhole(IValueScanner scanner, StringBuilder output, ReadOnlySpan<char> text)
    {
        int i = 0;
        for (; i < text.Length; i++)
        {
            var status = scanner.Feed(text[i]);
            if (status == ScanStatus.Error)
                return null;
            if (status == ScanStatus.CompleteBefore)
                break;
            if (status == ScanStatus.Complete)
            {
                i++;
                break;
            }
        }
        if (!scanner.Finish() || !text[i..].IsWhiteSpace())
            return null;
        return output.ToString();
    }
}
