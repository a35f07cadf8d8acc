using System.Text;

namespace Celer.Tokenization.Tests;

/// <summary>
/// Exact parity with the HF Rust tokenizers library (through Tokenizers.DotNet) on real
/// tokenizer files. The reference's Encode adds special tokens (BOS where the post-processor
/// says so) and its Decode skips special tokens, so ours is called the same way.
/// </summary>
public class ParityTests
{
    private const int StringsPerTokenizer = 1000;

    public static TheoryData<string> Names() => new(TestAssets.TokenizerNames);

    [Theory]
    [MemberData(nameof(Names))]
    public void Encode_and_decode_match_hf_tokenizers(string name)
    {
        var ours = TestAssets.Load(name);
        var reference = TestAssets.Reference(name);
        var failures = new List<string>();
        foreach (var text in RandomText.Generate(seed: 1234, StringsPerTokenizer))
        {
            var expected = reference.Encode(text).Select(i => (int)i).ToArray();
            var actual = ours.Encode(text, addSpecialTokens: true);
            if (!expected.SequenceEqual(actual))
            {
                failures.Add($"encode {Escape(text)}\n  expected [{string.Join(",", expected)}]\n  actual   [{string.Join(",", actual)}]");
                continue;
            }
            var expectedText = reference.Decode(expected.Select(i => (uint)i).ToArray());
            var actualText = ours.Decode(actual, skipSpecialTokens: true);
            if (expectedText != actualText)
                failures.Add($"decode {Escape(text)}\n  expected {Escape(expectedText)}\n  actual   {Escape(actualText)}");
        }
        Assert.True(failures.Count == 0, $"{failures.Count} of {StringsPerTokenizer} strings differ for {name}:\n" + string.Join("\n", failures.Take(10)));
    }

    /// <summary>Random id sequences reach decoder paths real text does not: lone byte tokens, invalid UTF-8, stray special tokens.</summary>
    [Theory]
    [MemberData(nameof(Names))]
    public void Decode_of_random_ids_matches_hf_tokenizers(string name)
    {
        var ours = TestAssets.Load(name);
        var reference = TestAssets.Reference(name);
        var random = new Random(99);
        var failures = new List<string>();
        for (int n = 0; n < 300; n++)
        {
            var ids = new int[random.Next(1, 12)];
            for (int i = 0; i < ids.Length; i++)
                ids[i] = random.Next(4) == 0 ? random.Next(0, 300) : random.Next(0, ours.VocabSize);
            var expected = reference.Decode(ids.Select(i => (uint)i).ToArray());
            var actual = ours.Decode(ids, skipSpecialTokens: true);
            if (expected != actual)
                failures.Add($"[{string.Join(",", ids)}]\n  expected {Escape(expected)}\n  actual   {Escape(actual)}");
        }
        Assert.True(failures.Count == 0, $"{failures.Count} decodes differ for {name}:\n" + string.Join("\n", failures.Take(10)));
    }

    internal static string Escape(string s)
    {
        var sb = new StringBuilder("\"");
        foreach (var r in s.EnumerateRunes())
            sb.Append(r.Value is < 0x20 or 0x7F or (>= 0x80 and < 0xA0) || Rune.GetUnicodeCategory(r) is System.Globalization.UnicodeCategory.Format
                or System.Globalization.UnicodeCategory.SpaceSeparator && r.Value != ' '
                ? $"\\u{r.Value:X4}" : r.ToString());
        return sb.Append('"').ToString();
    }
}
