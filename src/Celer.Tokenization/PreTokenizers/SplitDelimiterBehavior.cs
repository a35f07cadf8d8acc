namespace Celer.Tokenization.PreTokenizers;

/// <summary>What happens to the delimiter when text is split on a pattern (HF names).</summary>
internal enum SplitDelimiterBehavior
{
    Removed,
    Isolated,
    MergedWithPrevious,
    MergedWithNext,
    Contiguous,
}

internal static class TextSplitter
{
    /// <summary>A <c>behavior</c> field; absent gives <paramref name="defaultValue"/>.</summary>
    public static SplitDelimiterBehavior ParseBehavior(System.Text.Json.JsonElement json, string path, SplitDelimiterBehavior? defaultValue = null)
    {
        if (defaultValue is { } d && TokenizerJson.Optional(json, "behavior") is null) return d;
        var name = TokenizerJson.String(json, "behavior", path);
        if (!Enum.TryParse<SplitDelimiterBehavior>(name, ignoreCase: false, out var behavior) || !Enum.IsDefined(behavior))
            throw new TokenizerLoadException($"'{path}.behavior' has unknown value '{name}'.");
        return behavior;
    }

    /// <summary>
    /// HF's split on a character predicate: every matching character is a match of its own (adjacent ones are not
    /// joined; <see cref="SplitDelimiterBehavior.Contiguous"/> does that).
    /// </summary>
    public static void SplitOnChars(PreToken piece, Func<int, bool> isDelimiter, SplitDelimiterBehavior behavior, List<PreToken> output)
    {
        string text = piece.Text;
        var matches = new List<(int, int)>();
        for (int i = 0; i < text.Length;)
        {
            int c = BertCharacters.CodePointAt(text, i, out int length);
            if (isDelimiter(c)) matches.Add((i, i + length));
            i += length;
        }
        if (matches.Count == 0)
        {
            if (text.Length > 0) output.Add(piece);
            return;
        }
        Split(piece, matches, behavior, invert: false, output);
    }

    /// <summary>
    /// HF <c>NormalizedString::split</c>: turns the pattern's matches into pieces according to
    /// <paramref name="behavior"/>, drops empty pieces, and appends them to <paramref name="output"/>.
    /// </summary>
    public static void Split(PreToken piece, List<(int Start, int End)> matches, SplitDelimiterBehavior behavior, bool invert, List<PreToken> output)
    {
        string text = piece.Text;
        // Cover the whole text with (start, end, isMatch) spans, as HF's find_matches does.
        var spans = new List<(int Start, int End, bool IsMatch)>(matches.Count * 2 + 1);
        if (text.Length == 0)
        {
            spans.Add((0, 0, false));
        }
        else
        {
            int prev = 0;
            foreach (var (start, end) in matches)
            {
                if (prev != start) spans.Add((prev, start, invert));
                spans.Add((start, end, !invert));
                prev = end;
            }
            if (prev != text.Length) spans.Add((prev, text.Length, invert));
        }

        var pieces = new List<(int Start, int End)>(spans.Count);
        switch (behavior)
        {
            case SplitDelimiterBehavior.Isolated:
                foreach (var s in spans) pieces.Add((s.Start, s.End));
                break;
            case SplitDelimiterBehavior.Removed:
                foreach (var s in spans) if (!s.IsMatch) pieces.Add((s.Start, s.End));
                break;
            case SplitDelimiterBehavior.Contiguous:
            case SplitDelimiterBehavior.MergedWithPrevious:
            {
                bool previousMatch = false;
                foreach (var s in spans)
                {
                    bool merge = behavior == SplitDelimiterBehavior.Contiguous ? s.IsMatch == previousMatch : s.IsMatch && !previousMatch;
                    if (merge && pieces.Count > 0) pieces[^1] = (pieces[^1].Start, s.End);
                    else pieces.Add((s.Start, s.End));
                    previousMatch = s.IsMatch;
                }
                break;
            }
            case SplitDelimiterBehavior.MergedWithNext:
            {
                bool previousMatch = false;
                for (int i = spans.Count - 1; i >= 0; i--)
                {
                    var s = spans[i];
                    if (s.IsMatch && !previousMatch && pieces.Count > 0) pieces[^1] = (s.Start, pieces[^1].End);
                    else pieces.Add((s.Start, s.End));
                    previousMatch = s.IsMatch;
                }
                pieces.Reverse();
                break;
            }
        }

        foreach (var (start, end) in pieces)
            if (end > start) output.Add(new PreToken(text[start..end], piece.AtStart && start == 0));
    }
}
