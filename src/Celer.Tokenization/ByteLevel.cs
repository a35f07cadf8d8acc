using System.Text;

namespace Celer.Tokenization;

/// <summary>
/// GPT-2's reversible byte ↔ character map: every byte gets a printable character so that BPE
/// vocabularies can be stored as text. Printable Latin-1 bytes map to themselves; the other 68
/// bytes map to U+0100 onwards, in byte order.
/// </summary>
internal static class ByteLevel
{
    private static readonly char[] ByteToChar = BuildByteToChar();
    private static readonly Dictionary<char, byte> CharToByte = ByteToChar.Select((c, b) => (c, (byte)b)).ToDictionary(p => p.c, p => p.Item2);

    private static char[] BuildByteToChar()
    {
        var map = new char[256];
        int next = 256;
        for (int b = 0; b < 256; b++)
        {
            bool printable = b is >= '!' and <= '~' or >= 0xA1 and <= 0xAC or >= 0xAE and <= 0xFF;
            map[b] = printable ? (char)b : (char)next++;
        }
        return map;
    }

    /// <summary>Text → its UTF-8 bytes, each written as its stand-in character.</summary>
    public static string Encode(string text)
    {
        var bytes = Encoding.UTF8.GetBytes(text);
        return string.Create(bytes.Length, bytes, static (span, b) =>
        {
            for (int i = 0; i < b.Length; i++) span[i] = ByteToChar[b[i]];
        });
    }

    /// <summary>
    /// Appends the bytes a token stands for. Like HF's ByteLevel decoder, a token with any
    /// character outside the map (an added token such as "&lt;think&gt;" in a non-ASCII script)
    /// contributes its own UTF-8 bytes instead.
    /// </summary>
    public static void AppendBytes(string token, List<byte> output)
    {
        int mark = output.Count;
        foreach (var c in token)
        {
            if (!CharToByte.TryGetValue(c, out var b))
            {
                output.RemoveRange(mark, output.Count - mark);
                output.AddRange(Encoding.UTF8.GetBytes(token));
                return;
            }
            output.Add(b);
        }
    }

    /// <summary>
    /// True when <paramref name="bytes"/> ends with the start of a UTF-8 sequence that more
    /// bytes could still complete (a lead byte followed by too few valid continuation bytes).
    /// </summary>
    public static bool EndsWithIncompleteUtf8(ReadOnlySpan<byte> bytes)
    {
        for (int back = 1; back <= Math.Min(3, bytes.Length); back++)
        {
            byte b = bytes[^back];
            if ((b & 0xC0) == 0x80) continue; // continuation byte, keep looking for the lead
            int needed = b switch
            {
                >= 0xC2 and <= 0xDF => 2,
                >= 0xE0 and <= 0xEF => 3,
                >= 0xF0 and <= 0xF4 => 4,
                _ => 0,
            };
            if (needed <= back) return false;
            // The second byte of E0/ED/F0/F4 has a narrower range (no overlongs or surrogates).
            if (back >= 2)
            {
                byte second = bytes[^(back - 1)];
                bool ok = b switch
                {
                    0xE0 => second >= 0xA0,
                    0xED => second <= 0x9F,
                    0xF0 => second >= 0x90,
                    0xF4 => second <= 0x8F,
                    _ => true,
                };
                if (!ok) return false;
            }
            return true;
        }
        return false;
    }
}
