using System.Globalization;
using Celer.ChatTemplates.Runtime;
using Xunit;
using static Celer.ChatTemplates.Tests.TemplateTestHelpers;

namespace Celer.ChatTemplates.Tests;

/// <summary>transformers' tojson is json.dumps(ensure_ascii=False): expected strings checked against Python 3.11.</summary>
public class TojsonTests
{
    [Fact]
    public void Inline_keeps_unicode_and_escapes_controls() => Assert.Equal(
        "{\"name\": \"Zürich 東京\", \"q\": \"say \\\"hi\\\"\\\\n\", \"n\": [1, 2.5, null, true, false], \"e\": {}, \"l\": [], \"ctl\": \"\\u0001\\t\"}",
        Render("{{ x|tojson }}", """{"x": {"name": "Zürich 東京", "q": "say \"hi\"\\n", "n": [1, 2.5, null, true, false], "e": {}, "l": [], "ctl": "\u0001\t"}}"""));

    [Fact]
    public void Indent_nests_and_leaves_empty_containers_inline() => Assert.Equal(
        "{\n  \"a\": [\n    1,\n    {\n      \"b\": null\n    }\n  ],\n  \"c\": \"é\",\n  \"e\": [],\n  \"f\": {}\n}",
        Render("{{ x|tojson(indent=2) }}", """{"x": {"a": [1, {"b": null}], "c": "é", "e": [], "f": {}}}"""));

    [Fact]
    public void Sort_keys_and_separators() => Assert.Equal(
        "{\n  \"a\": [\n    1,\n    2\n  ],\n  \"b\": 1\n}|{\"b\":1,\"a\":[1,2]}",
        Render("{{ x|tojson(indent=2, sort_keys=true) }}|{{ x|tojson(separators=(',', ':')) }}", """{"x": {"b": 1, "a": [1, 2]}}"""));

    [Fact]
    public void Ensure_ascii_writes_utf16_escapes() =>
        Assert.Equal("\"\\u00e9\\ud83c\\udf24\"", Render("{{ x|tojson(ensure_ascii=true) }}", """{"x": "é🌤"}"""));

    [Theory]
    [InlineData(0.1, "0.1")]
    [InlineData(1e16, "1e+16")]
    [InlineData(1e15, "1000000000000000.0")]
    [InlineData(0.0001, "0.0001")]
    [InlineData(0.00001, "1e-05")]
    [InlineData(123456789012345678.0, "1.2345678901234568e+17")]
    [InlineData(-2.5e-300, "-2.5e-300")]
    [InlineData(1.5, "1.5")]
    [InlineData(100.0, "100.0")]
    public void Float_repr_matches_python(double value, string expected) => Assert.Equal(expected, PyOps.FloatRepr(value));

    [Fact]
    public void Float_repr_round_trips_on_random_doubles()
    {
        // Python's repr is the shortest string that parses back to the same double; check the round trip and the
        // layout rule (scientific exactly when the decimal exponent is < -4 or >= 16) on random values of all scales.
        var rng = new Random(1234);
        for (var i = 0; i < 2000; i++)
        {
            var d = (rng.NextDouble() - 0.5) * Math.Pow(10, rng.Next(-30, 30));
            var text = PyOps.FloatRepr(d);
            Assert.Equal(d, double.Parse(text, CultureInfo.InvariantCulture));
            var exponent = (int)Math.Floor(Math.Log10(Math.Abs(d)));
            var scientific = text.Contains('e');
            if (exponent is < -5 or > 16) Assert.True(scientific, text);
            if (exponent is > -4 and < 15) Assert.False(scientific, text);
            if (!scientific) Assert.Contains('.', text);
        }
    }
}
