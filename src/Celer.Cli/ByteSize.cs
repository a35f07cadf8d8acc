using System.Globalization;

namespace Celer.Cli;

/// <summary>
/// Byte counts as vLLM's <c>--kv-cache-memory</c> takes them: a plain integer, or a number with a
/// binary (<c>KiB</c>, <c>MiB</c>, <c>GiB</c>, <c>TiB</c>) or decimal (<c>K</c>/<c>KB</c>, <c>M</c>, <c>G</c>, <c>T</c>) suffix.
/// </summary>
internal static class ByteSize
{
    private static readonly (string Suffix, double Factor)[] Units =
    [
        ("KiB", 1L << 10), ("MiB", 1L << 20), ("GiB", 1L << 30), ("TiB", 1L << 40),
        ("KB", 1e3), ("MB", 1e6), ("GB", 1e9), ("TB", 1e12),
        ("K", 1e3), ("M", 1e6), ("G", 1e9), ("T", 1e12), ("B", 1),
    ];

    public static bool TryParse(string text, out long bytes)
    {
        bytes = 0;
        var s = text.Trim();
        var factor = 1d;
        foreach (var (suffix, unitFactor) in Units)
        {
            if (s.EndsWith(suffix, StringComparison.OrdinalIgnoreCase))
            {
                factor = unitFactor;
                s = s[..^suffix.Length].TrimEnd();
                break;
            }
        }
        if (!double.TryParse(s, NumberStyles.Float, CultureInfo.InvariantCulture, out var value) || value < 0 || !double.IsFinite(value))
            return false;
        var result = value * factor;
        if (result > long.MaxValue)
            return false;
        bytes = (long)Math.Round(result);
        return true;
    }
}
