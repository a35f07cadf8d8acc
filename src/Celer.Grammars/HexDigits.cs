namespace Celer.Grammars;

/// <summary>Hexadecimal escapes (<c>\xHH</c>, <c>\uHHHH</c>, <c>\UHHHHHHHH</c>) as the regex and GBNF parsers read them.</summary>
internal static class HexDigits
{
    /// <summary>The digit's value, or −1 for a character that is not a hex digit.</summary>
    public static int Value(char c) => c switch
    {
        >= '0' and <= '9' => c - '0',
        >= 'a' and <= 'f' => c - 'a' + 10,
        >= 'A' and <= 'F' => c - 'A' + 10,
        _ => -1,
    };

    /// <summary>Exactly <paramref name="count"/> digits from <paramref name="pos"/> (advanced past them); false if fewer.</summary>
    public static bool TryRead(string text, ref int pos, int count, out long value)
    {
        value = 0;
        for (int i = 0; i < count; i++)
        {
            int digit = pos < text.Length ? Value(text[pos]) : -1;
            if (digit < 0)
            {
                return false;
            }

            value = value * 16 + digit;
            pos++;
        }

        return true;
    }
}
