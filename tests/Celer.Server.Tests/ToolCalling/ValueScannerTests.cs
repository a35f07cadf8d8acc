using System.Text.Json.Nodes;
using Celer.Server.ToolCalling;

namespace Celer.Server.Tests.ToolCalling;

/// <summary>The incremental JSON and Python-literal readers behind the parsers' arguments.</summary>
public sealed class ValueScannerTests
{
    [Theory]
    [InlineData("{\"a\":1,\"b\":[true,false,null],\"c\":{}}", "{\"a\": 1, \"b\": [true, false, null], \"c\": {}}")]
    [InlineData(" { \"a\" : \"x y\" , \"b\" : [ ] } ", "{\"a\": \"x y\", \"b\": []}")]
    [InlineData("-0.5e+10", "-0.5e+10")]
    [InlineData("\"tab\tnewline\n\"", "\"tab\\tnewline\\n\"")]
    [InlineData("\"\\u00e9\\\"\\\\\"", "\"\\u00e9\\\"\\\\\"")]
    public void Json_is_respaced_and_its_strings_and_numbers_kept(string json, string expected)
    {
        Assert.Equal(expected, JsonText.Normalize(json));
        Assert.True(JsonNode.DeepEquals(JsonNode.Parse(expected.Replace("\t", "\\t", StringComparison.Ordinal)), JsonNode.Parse(expected)));
    }

    [Theory]
    [InlineData("{\"a\":}")]
    [InlineData("[1,]")]
    [InlineData("01")]
    [InlineData("1.")]
    [InlineData("{'a': 1}")]
    [InlineData("tru")]
    [InlineData("\"\\x41\"")]
    [InlineData("{} {}")]
    [InlineData("")]
    public void Malformed_json_is_refused(string json) => Assert.Null(JsonText.Normalize(json));

    [Fact]
    public void A_json_value_ends_without_waiting_for_more_text()
    {
        var scanner = new JsonValueScanner(null);
        foreach (var c in "{\"a\": [1, {\"b\": \"}\"}]")
            Assert.Equal(ScanStatus.NeedMore, scanner.Feed(c));
        Assert.Equal(ScanStatus.Complete, scanner.Feed('}'));

        var number = new JsonValueScanner(null);
        Assert.Equal(ScanStatus.NeedMore, number.Feed('4'));
        Assert.Equal(ScanStatus.NeedMore, number.Feed('2'));
        Assert.Equal(ScanStatus.CompleteBefore, number.Feed(','));
    }

    [Fact]
    public void Deep_nesting_is_refused_not_a_stack_overflow()
    {
        Assert.Null(JsonText.Normalize(new string('[', 10_000) + new string(']', 10_000)));
        Assert.Null(PythonValueScanner.ToJson(new string('[', 10_000) + new string(']', 10_000)));
    }

    [Theory]
    [InlineData("'it\\'s'", "\"it's\"")]
    [InlineData("\"a\\tb\\x41\\u00e9\\N\"", "\"a\\tbAé\\\\N\"")]
    [InlineData("[1, 2,]", "[1, 2]")]
    [InlineData("{'a': (1)}", null)]
    [InlineData("{'a': [True, None], 1: 0o17, False: 0b11}", "{\"a\": [true, null], \"1\": 15, \"false\": 3}")]
    [InlineData("1e5", "100000.0")]
    [InlineData("-.25", "-0.25")]
    [InlineData("007", null)]
    [InlineData("1j", null)]
    [InlineData("''", "\"\"")]
    [InlineData("'''a\n''b'''", "\"a\\n''b\"")]
    [InlineData("'a\nb'", null)]
    [InlineData("nan", null)]
    public void Python_literals_become_json(string literal, string? expected) => Assert.Equal(expected, PythonValueScanner.ToJson(literal));
}
