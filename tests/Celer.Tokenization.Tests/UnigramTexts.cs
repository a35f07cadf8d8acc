using System.Text;

namespace Celer.Tokenization.Tests;

/// <summary>
/// Texts for SentencePiece Unigram tokenizers: what the nmt_nfkc charsmap rewrites (full-width and compatibility
/// forms, ligatures, controls, other spaces), grapheme clusters that HF looks up whole or a character at a time, scripts
/// without spaces, runs of characters the vocabulary lacks, and T5's special tokens; then <see cref="RandomText"/>'s
/// strings and random mixtures of the above.
/// </summary>
internal static class UnigramTexts
{
    public static readonly string[] Edge =
    [
        "", " ", "   ", "\r\n", "Hello world", "Hello  world   spaced", "  leading and trailing  ", "\t\ttabs\tand\nnewlines\r\nend",
        "café naïve résumé Ångström", "e\u0301 a\u0308 n\u0303 o\u0302\u0323 A\u030A", "ＡＢＣ ａｂｃ １２３ ！？ Ｇｏｏｇｌｅ",
        // Clusters under 6 UTF-8 bytes are looked up whole: the full-width letter's entry wins and the accent is dropped.
        "Ａ\u0301 ｅ\u0301 ﬀ\u0301 \u212B \u2126 ａ\u0308\u0304", "ｶﾞ ﾊﾟ ｳﾞ ｷﾞｬﾙ", "ﬁ ﬂ ﬀ ﬃ ﬄ", "① ② ⑳ ½ ¼ ² ³ ™ ℃ ㎏ ㍻ ㈱",
        "Ⅻ ⅻ ℌ ℍ ℵ ∑ ∫ √ ∞ ≠ ≤", "你好，世界！这是一个测试。", "日本語のテキストとカタカナ、ひらがな。", "한국어 텍스트 \u1100\u1161\u11A8 \u1100\u1161",
        "مرحبا بالعالم ﷺ ﻻ ﷽", "שלום עולם", "नमस्ते दुनिया क्षत्रिय क़", "สวัสดีครับ", "Ελληνικά ΣΊΣΥΦΟΣ \u1F80\u0345", "Привет мир",
        "İstanbul ı Ǆ ǅ ǆ ẞ ß", "😀 👍🏽 👨‍👩‍👧‍👦 🇫🇷 🏳️‍🌈 ❤️ 1\uFE0F\u20E3 a\u20DD", "a\u0000b\u0001c\u001Fd\u007Fe\u0085f\u0008g",
        "zero\u200Bwidth\u200Cjoin\u200Dx\uFEFFbom\u00ADsoft", "\u00A0nbsp\u2009thin\u3000ideo\u2028line\u2029para\u202Fnarrow",
        "\uFFFD\uE000\U000F0000 \u0F00 ༀ", "… ‥ “smart quotes” ‘single’ — – ‐ $100 €5 £3 ¥4", "https://example.com/path?q=1&r=2",
        "def f(x):\n    return x ** 2\n", "\u0301 lone combining \u0308", "<extra_id_0> masked <extra_id_1> text<extra_id_99>",
        "</s><pad><unk> <unk>x", "▁▁ ▁x ▁", "<0x41> <0xE2>", string.Concat(Enumerable.Repeat("🤖", 60)),
        string.Concat(Enumerable.Repeat("\U00020000", 40)), "x" + string.Concat(Enumerable.Repeat("ꙮ", 50)) + "y",
        new string('a', 300), string.Concat(Enumerable.Repeat("abc ", 80)), "Ünïcödé ÀÉÎÕÜ àéîõü ÇçÑñ ŁłŚś ŽžČč ĞğŞş ŐőŰű",
        "Tiếng Việt có dấu: Nguyễn, Hồ Chí Minh, phở", "ÅÄÖ åäö ÆØÅ æøå Þð", "\u00C5\u0301 \u1E9B\u0323",
    ];

    private static readonly string[] Fragments =
    [
        "Ａ", "ｚ", "１", "！", "ｶ", "ﾞ", "ﾟ", "\u0301", "\u0308", "\u0323", "\u20DD", "\uFE0F", "\u200D", "\u200B", "\uFEFF", "\u00AD",
        "\u0000", "\u0001", "\u0007", "\u001B", "\u007F", "\u0085", "\u009C", "\t", "\n", "\r", "\r\n", "  ", " ", "\u3000", "\u00A0", "\u2003",
        "ﬁ", "ﬀ", "①", "½", "™", "㎏", "ﷺ", "ﻻ", "\u212B", "\u2126", "Ⅻ", "𝐀", "𝟏", "ℌ", "Ǆ", "ß", "ẞ", "İ", "e", "E", "a", "n", "o",
        "한", "\u1100", "\u1161", "\u11A8", "क", "्", "ष", "़", "ก", "ั", "你", "好", "日本", "カ", "ﾊﾟ", "ø", "æ", "œ", "🤖", "👍", "🏽", "🇫",
        "🇷", "❤", "\U00020000", "ꙮ", "▁", "<unk>", "</s>", "<extra_id_3>", "<0x41>", "Hello", "world", "the", "tokenizer", "café", "naïve",
    ];

    /// <summary>The edge texts, <paramref name="count"/> strings of <see cref="RandomText"/> and as many mixtures.</summary>
    public static List<string> All(int seed, int count)
    {
        var texts = new List<string>(Edge);
        texts.AddRange(RandomText.Generate(seed, count));
        var random = new Random(seed + 1);
        for (int i = 0; i < count; i++)
        {
            var sb = new StringBuilder();
            int parts = random.Next(1, 16);
            for (int p = 0; p < parts; p++)
            {
                sb.Append(random.Next(8) switch
                {
                    0 => " ",
                    1 => char.ConvertFromUtf32(RandomCompatibilityCodePoint(random)),
                    _ => Fragments[random.Next(Fragments.Length)],
                });
            }
            texts.Add(sb.ToString());
        }
        return texts;
    }

    // Blocks the charsmap rewrites: Latin-1 and Latin Extended Additional, combining marks, general punctuation and
    // spaces, letterlike and number forms, enclosed alphanumerics, CJK compatibility, ligatures, Arabic presentation
    // forms, half- and full-width forms, mathematical alphanumerics, enclosed alphanumeric supplement.
    private static readonly (int From, int To)[] CompatibilityBlocks =
    [
        (0x00, 0x24F), (0x300, 0x36F), (0x1E00, 0x1EFF), (0x2000, 0x206F), (0x2100, 0x218F), (0x2460, 0x24FF), (0x3200, 0x33FF),
        (0xFB00, 0xFB4F), (0xFDF0, 0xFDFF), (0xFE70, 0xFEFF), (0xFF00, 0xFFEF), (0x1D400, 0x1D7FF), (0x1F100, 0x1F1FF),
    ];

    private static int RandomCompatibilityCodePoint(Random random)
    {
        var (from, to) = CompatibilityBlocks[random.Next(CompatibilityBlocks.Length)];
        return random.Next(from, to + 1);
    }
}
