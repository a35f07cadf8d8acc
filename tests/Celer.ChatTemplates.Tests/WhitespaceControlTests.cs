using Xunit;
using static Celer.ChatTemplates.Tests.TemplateTestHelpers;

namespace Celer.ChatTemplates.Tests;

/// <summary>trim_blocks + lstrip_blocks + "-"/"+" markers; expected strings checked against jinja2 3.1.6.</summary>
public class WhitespaceControlTests
{
    [Theory]
    // lstrip_blocks drops the indentation before block tags, trim_blocks the newline after them.
    [InlineData("a\n  {% if true %}\n    x\n  {% endif %}\nb", "a\n    x\nb")]
    // Print tags are never lstripped, and trim_blocks only eats a newline right after the tag.
    [InlineData("  {% if true %}x{% endif %}  \n{{ 'y' }}", "x  \ny")]
    // "-" strips all whitespace, newlines included, on its side.
    [InlineData("a  {%- if true -%}  b  {%- endif %}\n  c", "ab  c")]
    // "+" opts a tag out of lstrip (on the left) and trim (on the right).
    [InlineData("a\n  {%+ if true %}b{% endif +%}\nc", "a\n  b\nc")]
    [InlineData("{# c #}\nx  {#- c2 -#}  y", "xy")]
    [InlineData("  {{ 'v' }}\n{% raw %}{{ x }}{% endraw %}", "  v\n{{ x }}")]
    // One trailing newline of the source is dropped (keep_trailing_newline=False).
    [InlineData("x\n", "x")]
    [InlineData("x\n\n", "x\n")]
    [InlineData("a\r\nb", "a\nb")]
    public void Matches_jinja(string template, string expected) => Assert.Equal(expected, Render(template));

    [Fact]
    public void Dict_literal_closing_braces_do_not_end_a_print_tag() =>
        Assert.Equal("{'a': {'b': 1}}", Render("{{ {'a': {'b': 1}} }}"));
}
