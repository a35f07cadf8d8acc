using System.Text;

namespace Celer.Tokenization.Tests;

/// <summary>
/// Deterministic, adversarial test strings: many scripts, astral letters and digits, emoji
/// with ZWJ / skin tones / flags, decomposed accents (NFC work), whitespace runs, digit runs,
/// code, contractions, and the special-token texts of every family embedded in text.
/// </summary>
internal static class RandomText
{
    private static readonly string[] Fragments =
    [
        "Hello", "world", "the", "The quick brown fox", "jumps", "tokenizer", "ÄÖÜäöüß", "café", "naïve", "Ελληνικά",
        "Привет мир", "مرحبا بالعالم", "שלום", "नमस्ते दुनिया", "สวัสดีครับ", "你好，世界", "日本語のテキスト", "カタカナ",
        "한국어 텍스트", "ქართული", "Tiếng Việt", "𝐀𝐁𝐂 𝑥𝑦", "𠀀𠀁𪚥", "𝟏𝟐𝟑", "Ⅻ", "①②", "ﬁﬂ", "x²", "e\u0301", "a\u0308\u0323",
        "\u1100\u1161\u11A8", "n\u0303o", "😀", "👍🏽", "👨‍👩‍👧‍👦", "🏳️‍🌈", "🇫🇷🇯🇵", "❤️", "🤖", "🧑🏿‍💻", "\u00A0", "\u3000", "\u2028",
        " ", "  ", "    ", "\t", "\t\t", "\n", "\n\n", "\r\n", " \n ", "   \n\n  ", "0", "7", "42", "1234567", "3.14159", "1,000,000",
        "def f(x):\n    return x**2", "for (int i = 0; i < n; i++) { a[i] += 1; }", "<div class=\"a\">", "{\"key\": [1, 2]}",
        "SELECT * FROM t;", "https://example.com/a?b=c", "!!!", "???", "...", "—", "–", "«»", "“quoted”", "(", ")", "[]", "#", "@user",
        "$100", "€5", "%", "&amp;", "'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'LL", "'Re", "don't", "I'M", "it's",
        "<|im_start|>", "<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<|begin_of_text|>", "<|start_header_id|>", "<s>", "</s>",
        "<bos>", "<eos>", "<start_of_turn>", "<end_of_turn>", "<unk>", "<pad>", "<tool_call>", "<think>", "</think>", "<|fim_prefix|>",
        "<0x41>", "▁", "▁▁", "Ġ", "ĠĠ", "\u200B", "\u200D", "\uFEFF", "\u0085", "\u000B", "\u000C", "~", "`", "^", "\\", "|",
    ];

    public static List<string> Generate(int seed, int count)
    {
        var random = new Random(seed);
        var result = new List<string>(count);
        for (int i = 0; i < count; i++) result.Add(One(random));
        return result;
    }

    private static string One(Random random)
    {
        var sb = new StringBuilder();
        int parts = random.Next(1, 12);
        for (int p = 0; p < parts; p++)
        {
            switch (random.Next(10))
            {
                case < 6:
                    sb.Append(Fragments[random.Next(Fragments.Length)]);
                    break;
                case 6:
                    sb.Append(' ');
                    break;
                case 7:
                    sb.Append(RandomCodePoints(random));
                    break;
                case 8:
                    sb.Append(random.Next(0, 100_000_000));
                    break;
                default:
                    sb.Append(RandomAsciiWord(random));
                    break;
            }
        }
        return sb.ToString();
    }

    private static string RandomAsciiWord(Random random)
    {
        var chars = new char[random.Next(1, 10)];
        for (int i = 0; i < chars.Length; i++) chars[i] = (char)random.Next(0x21, 0x7F);
        return new string(chars);
    }

    // Code points drawn from blocks with letters, marks, digits and symbols of many scripts.
    private static readonly (int From, int To)[] Blocks =
    [
        (0x20, 0x7E), (0xA0, 0x24F), (0x300, 0x36F), (0x370, 0x3FF), (0x400, 0x4FF), (0x590, 0x6FF), (0x900, 0x97F),
        (0xE00, 0xE7F), (0x1E00, 0x1EFF), (0x2000, 0x206F), (0x2100, 0x22FF), (0x3040, 0x30FF), (0x4E00, 0x4FFF),
        (0xAC00, 0xAD00), (0xFF00, 0xFFEF), (0x1D400, 0x1D7FF), (0x1F300, 0x1F6FF), (0x20000, 0x200FF),
    ];

    private static string RandomCodePoints(Random random)
    {
        var sb = new StringBuilder();
        int n = random.Next(1, 6);
        for (int i = 0; i < n; i++)
        {
            var (from, to) = Blocks[random.Next(Blocks.Length)];
            int cp = random.Next(from, to + 1);
            if (cp is >= 0xD800 and <= 0xDFFF) continue;
            sb.Append(char.ConvertFromUtf32(cp));
        }
        return sb.ToString();
    }
}
