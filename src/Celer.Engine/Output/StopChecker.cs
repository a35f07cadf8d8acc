namespace Celer.Engine.Output;

/// <summary>
/// Stop strings on detokenized text (vLLM's <c>check_stop_strings</c>), and how much text to hold
/// back while streaming so that a stop string is never partly sent before it completes.
/// </summary>
public static class StopChecker
{
    /// <summary>
    /// Looks for a stop string that ends in the last <paramref name="newCharCount"/> characters.
    /// Returns the string and where to cut the text: at the stop string, or after it when
    /// <paramref name="includeStopStrInOutput"/> (−1: nothing to cut). Where vLLM takes the first
    /// string in list order, this takes the match that starts earliest in the text, so that no
    /// other stop string can survive in the output before the cut.
    /// </summary>
    public static (string StopString, int TruncateTo)? CheckStopStrings(
        string outputText, int newCharCount, IReadOnlyList<string> stop, bool includeStopStrInOutput)
    {
        if (newCharCount <= 0)
        {
            return null;
        }
        string? best = null;
        int bestIndex = int.MaxValue;
        foreach (string stopString in stop)
        {
            // Only matches that end inside the new text: older text was checked before.
            int start = Math.Max(0, outputText.Length - newCharCount - stopString.Length + 1);
            int index = outputText.IndexOf(stopString, start, StringComparison.Ordinal);
            if (index >= 0 && index < bestIndex)
            {
                best = stopString;
                bestIndex = index;
            }
        }
        if (best is null)
        {
            return null;
        }
        if (!includeStopStrInOutput)
        {
            return (best, bestIndex);
        }
        int end = bestIndex + best.Length;
        return (best, end >= outputText.Length ? -1 : end);
    }

    /// <summary>
    /// Characters at the end of <paramref name="pendingText"/> (text not sent yet) that might
    /// still become a stop string: its longest suffix that is a proper prefix of one.
    /// vLLM holds back a fixed max(len(stop)) − 1; holding back only a real partial match sends
    /// the same final text with less delay.
    /// </summary>
    public static int HoldBackLength(string pendingText, IReadOnlyList<string> stop)
    {
        int pending = pendingText.Length;
        int hold = 0;
        foreach (string stopString in stop)
        {
            for (int length = Math.Min(stopString.Length - 1, pending); length > hold; length--)
            {
                if (string.CompareOrdinal(pendingText, pending - length, stopString, 0, length) == 0)
                {
                    hold = length;
                    break;
                }
            }
        }
        return hold;
    }
}
