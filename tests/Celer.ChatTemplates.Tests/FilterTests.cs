using Xunit;
using static Celer.ChatTemplates.Tests.TemplateTestHelpers;

namespace Celer.ChatTemplates.Tests;

/// <summary>Built-in filters; expected strings checked against jinja2 3.1.6.</summary>
public class FilterTests
{
    [Fact]
    public void String_and_number_filters() => Assert.Equal(
        "hi|hi|Hello World|Hello|ABcd|a-b-|a-bX|1, a, None|31|['a', 'b']|51|43|3|7|2.5|3|2.0|3.14|3.0",
        Render("{{ '  hi  '|trim }}|{{ 'xxhixx'|trim('x') }}|{{ 'hELLo wOrld'|title }}|{{ 'hELLo'|capitalize }}|{{ 'ab'|upper }}{{ 'CD'|lower }}|{{ 'aXbX'|replace('X', '-') }}|{{ 'aXbX'|replace('X', '-', 1) }}|{{ [1,'a',none]|join(', ') }}|{{ [3,1]|first }}{{ [3,1]|last }}|{{ 'ab'|list }}|{{ 5|string ~ 1 }}|{{ '42'|int + 1 }}|{{ '3.9'|int }}|{{ 'x'|int(7) }}|{{ '2.5'|float }}|{{ -3|abs }}|{{ 2.5|round }}|{{ 3.14159|round(2) }}|{{ 2.1|round(0, 'ceil') }}"));

    [Fact]
    public void Sequence_filters() => Assert.Equal(
        "bo|['al']|1|[1, 3]|[1, 3]|['a', 'B']|['A', 'b', 'c']|['c', 'b', 'A']|['al', 'bo']|[2, 1]|cba|[('a', 2), ('b', 1)]|[('b', 1), ('a', 2)]|3|[[1, 2], [3, 4], [5]]|['A', 'B']|316",
        Render("{{ users|selectattr('active')|map(attribute='name')|join(',') }}|{{ users|rejectattr('active')|map(attribute='name')|list }}|{{ users|selectattr('role', 'equalto', 'admin')|list|length }}|{{ [1,2,3,4]|select('odd')|list }}|{{ [1,2,3,4]|reject('even')|list }}|{{ ['a','B','a','b']|unique|list }}|{{ ['b','A','c']|sort }}|{{ ['b','A','c']|sort(reverse=true) }}|{{ users|sort(attribute='name')|map(attribute='name')|list }}|{{ [1,2]|reverse|list }}|{{ 'abc'|reverse }}|{{ {'b':1,'a':2}|dictsort }}|{{ {'b':1,'a':2}|items|list }}|{{ 'one two  three'|wordcount }}|{{ [1,2,3,4,5]|batch(2)|list }}|{{ ['a','b']|map('upper')|list }}|{{ [3,1,2]|max }}{{ [3,1,2]|min }}{{ [1,2,3]|sum }}",
            """{"users": [{"name": "bo", "active": true, "role": "admin"}, {"name": "al", "active": false, "role": "user"}]}"""));

    [Fact]
    public void Indent() => Assert.Equal("line1\n  line2\n\n  line4|  a\n  b|a\n>\n>b",
        Render("{{ 'line1\\nline2\\n\\nline4'|indent(2) }}|{{ 'a\\nb'|indent(2, true) }}|{{ 'a\\n\\nb'|indent('>', blank=true) }}"));

    [Fact]
    public void Escape_and_safe() => Assert.Equal("&lt;a href=&#34;x&#34;&gt;&amp;&#39;&lt;/a&gt;|<b>",
        Render("{{ '<a href=\"x\">&\\'</a>'|e }}|{{ '<b>'|safe }}"));

    [Fact]
    public void Unknown_filter_is_a_render_error() =>
        Assert.Contains("No filter named 'nope'", Assert.Throws<TemplateRenderException>(() => Render("{{ 1|nope }}")).Message);
}
