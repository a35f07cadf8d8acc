using System.Text;
using Celer.Tokenization.Normalizers;

namespace Celer.Tokenization.Tests;

/// <summary>Exact values from the Unicode normalization tests (UAX #15 examples).</summary>
public class UnicodeNormalizerTests
{
    [Theory]
    [InlineData("e\u0301", NormalizationForm.FormC, "\u00E9")]
    [InlineData("\u00E9", NormalizationForm.FormD, "e\u0301")]
    [InlineData("a\u0323\u0302", NormalizationForm.FormC, "\u1EAD")] // reordered marks still compose
    [InlineData("a\u0302\u0323", NormalizationForm.FormC, "\u1EAD")]
    [InlineData("\u1100\u1161\u11A8", NormalizationForm.FormC, "\uAC01")] // Hangul L V T
    [InlineData("\uAC01", NormalizationForm.FormD, "\u1100\u1161\u11A8")]
    [InlineData("\u212B", NormalizationForm.FormC, "\u00C5")] // Angstrom sign is a singleton
    [InlineData("\uFB01", NormalizationForm.FormC, "\uFB01")]
    [InlineData("\uFB01", NormalizationForm.FormKC, "fi")]
    [InlineData("x\u00B2", NormalizationForm.FormKC, "x2")]
    [InlineData("\u0344", NormalizationForm.FormC, "\u0308\u0301")] // composition exclusion
    [InlineData("\u0301e", NormalizationForm.FormC, "\u0301e")] // leading non-starter never composes
    [InlineData("\U0001D400", NormalizationForm.FormKC, "A")]
    [InlineData("plain ascii", NormalizationForm.FormKC, "plain ascii")]
    public void Normalizes_like_unicode(string input, NormalizationForm form, string expected) =>
        Assert.Equal(expected, UnicodeNormalizer.Normalize(input, form));
}
