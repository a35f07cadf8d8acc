namespace Celer.Server.ToolCalling;

/// <summary>
/// Markers (<c>&lt;/think&gt;</c>, <c>&lt;tool_call&gt;</c>, <c>[TOOL_CALLS]</c>) found in streamed text, which may arrive in
/// pieces: text that ends with the beginning of a marker is held back until the next delta says whether it is one.
/// </summary>
internal static class MarkerText
{
    /// <summary>The length of the longest end of <paramref name="text"/> that is a proper beginning of <paramref name="marker"/>.</summary>
    public static int PartialSuffix(ReadOnlySpan<char> text, string marker)
    {
        for (int k = Math.Min(marker.Length - 1, text.Length); k > 0; k--)
        {
            if (text[^k..].SequenceEqual(marker.AsSpan(0, k)))
                return k;
        }
        return 0;
    }

    /// <summary>The longest <see cref="PartialSuffix(ReadOnlySpan{char}, string)"/> over several markers.</summary>
    public static int PartialSuffix(ReadOnlySpan<char> text, ReadOnlySpan<string> markers)
    {
        int longest = 0;
        foreach (var marker in markers)
            longest = Math.Max(longest, PartialSuffix(text, marker));
        return longest;
    }

    /// <summary>The first of <paramref name="markers"/> in <paramref name="text"/>: its position and which one, or (-1, -1).</summary>
    public static (int At, int Marker) IndexOfAny(ReadOnlySpan<char> text, ReadOnlySpan<string> markers)
    {
        (int at, int which) = (-1, -1);
        for (int m = 0; m < markers.Length; m++)
        {
            int i = text.IndexOf(markers[m], StringComparison.Ordinal);
            if (i >= 0 && (at < 0 || i < at))
                (at, which) = (i, m);
        }
        return (at, which);
    }

    /// <summary>Whether <paramref name="text"/> is the beginning of one of <paramref name="markers"/> (it may be one when more comes).</summary>
    public static bool MayBegin(ReadOnlySpan<char> text, ReadOnlySpan<string> markers)
    {
        foreach (var marker in markers)
        {
            if (marker.AsSpan().StartsWith(text))
                return true;
        }
        return false;
    }
}
