using Xunit;
using static Celer.ChatTemplates.Tests.TemplateTestHelpers;

namespace Celer.ChatTemplates.Tests;

/// <summary>Literals, Python printing, operators and tests; expected strings checked against jinja2 3.1.6.</summary>
public class ExpressionTests
{
    [Fact]
    public void String_escapes_and_adjacent_literals() =>
        Assert.Equal("a\tb\néA|it's|xy", Render("{{ 'a\\tb\\n\\u00e9\\x41' }}|{{ \"it's\" }}|{{ 'x' 'y' }}"));

    [Fact]
    public void Values_print_as_python_str() => Assert.Equal(
        "[1, 2.5, 'x', None, True, (1,), {'k': 'v'}]|(1, 'a')|1e+20|0.30000000000000004|1e-05|3.0|-0.0",
        Render("{{ [1, 2.5, 'x', none, True, (1,), {'k': 'v'}] }}|{{ (1, 'a') }}|{{ 1e20 }}|{{ 0.1 + 0.2 }}|{{ 1e-5 }}|{{ 3.0 }}|{{ -0.0 }}"));

    [Fact]
    public void Repr_picks_double_quotes_for_a_single_quote() =>
        Assert.Equal("%sTrueNone1.0[1.0, \"it's\"]", Render("{{ '%s' }}{{ true }}{{ none }}{{ 1.0 }}{{ [1.0, 'it\\'s'] }}"));

    [Fact]
    public void Arithmetic_follows_python() => Assert.Equal("3 -4 1 2 3.5 1024 ababab 1xNone 14 4",
        Render("{{ 7 // 2 }} {{ -7 // 2 }} {{ 7 % 3 }} {{ -7 % 3 }} {{ 7 / 2 }} {{ 2 ** 10 }} {{ 'ab' * 3 }} {{ 1 ~ 'x' ~ none }} {{ 2 + 3 * 4 }} {{ -2 ** 2 }}"));

    [Fact]
    public void Comparisons_and_membership() => Assert.Equal("True True True True True True True False",
        Render("{{ 1 < 2 < 3 }} {{ 'b' in 'abc' }} {{ 3 not in [1, 2] }} {{ 'k' in {'k': 1} }} {{ 1 == 1.0 }} {{ [1, 2] == [1, 2] }} {{ none == none }} {{ 'a' != 'a' }}"));

    [Fact]
    public void Inline_if_and_boolean_operators_return_operands() =>
        Assert.Equal("|y|or|last|2", Render("{{ 'x' if false }}|{{ 'y' if true else 'z' }}|{{ not 1 and 0 or 'or' }}|{{ 0 or '' or 'last' }}|{{ 1 and 2 }}"));

    [Fact]
    public void Slicing_and_negative_indices() => Assert.Equal("el|olleh|lo|[2, 3, 4, 5]|[1, 3, 5]|5|h|[1, 2, 3, 4]",
        Render("{{ s[1:3] }}|{{ s[::-1] }}|{{ s[-2:] }}|{{ xs[1:] }}|{{ xs[::2] }}|{{ xs[-1] }}|{{ s[0] }}|{{ xs[:-1] }}",
            """{"s": "hello", "xs": [1, 2, 3, 4, 5]}"""));

    [Fact]
    public void Dict_access_and_methods() => Assert.Equal("1|1|dflt|1|['a', 'b']|[1, 2]", Render(
        "{{ d.a }}|{{ d['a'] }}|{{ d.get('zz', 'dflt') }}|{{ d.get('a') }}|{{ d.keys()|list }}|{{ d.values()|list }}",
        """{"d": {"a": 1, "b": 2}}"""));

    [Fact]
    public void Attribute_lookup_prefers_the_dict_method_over_the_key()
    {
        // Jinja's getattr tries Python attributes first: d.items is the bound method, d['items'] the value.
        Assert.Equal("x", Render("{{ d['items'] }}", """{"d": {"items": "x"}}"""));
        Assert.StartsWith("<built-in method items", Render("{{ d.items }}", """{"d": {"items": "x"}}"""));
    }

    [Fact]
    public void Is_tests() => Assert.Equal("TrueTrueTrueTrueTrueTrueTrueFalseTrueTrueTrueTrueTrueTrueTrueFalseTrueTrueTrueFalse", Render(
        "{{ x is defined }}{{ y is undefined }}{{ none is none }}{{ 'a' is string }}{{ 1 is number }}{{ true is number }}{{ 1 is integer }}{{ true is integer }}{{ 1.5 is float }}{{ {} is mapping }}{{ 'a' is iterable }}{{ u is iterable }}{{ 'a' is sequence }}{{ true is boolean }}{{ true is true }}{{ 0 is false }}{{ 3 is odd }}{{ 9 is divisibleby 3 }}{{ 'a' is equalto 'a' }}{{ 2 is eq 3 }}",
        """{"x": 1}"""));

    [Fact]
    public void Json_null_is_none_not_a_string() =>
        Assert.Equal("FalseTrue", Render("{{ message['content'] is string }}{{ message.content is none }}", """{"message": {"role": "assistant", "content": null}}"""));

    [Fact]
    public void String_methods() => Assert.Equal(
        "['a', 'b', 'c']|['a', 'b', '', 'c']|['a', 'b,c']|['a,b', 'c']|hi|hi\n|hi|TrueFalseTrue|heLLo|2-1|2|Hello World|Hello|AB|x is 1|a-b",
        Render("{{ '  a b  c '.split() }}|{{ 'a,b,,c'.split(',') }}|{{ 'a,b,c'.split(',', 1) }}|{{ 'a,b,c'.rsplit(',', 1) }}|{{ 'xxhix'.strip('x') }}|{{ '\\n\\nhi\\n'.lstrip('\\n') }}|{{ 'hi  '.rstrip() }}|{{ 'hello'.startswith('he') }}{{ 'hello'.startswith(('x', 'lo')) }}{{ 'hello'.endswith(('x', 'lo')) }}|{{ 'hello'.replace('l', 'L') }}|{{ 'hello'.find('l') }}{{ 'hello'.find('z') }}|{{ 'hello'.count('l') }}|{{ 'hello wOrld'.title() }}|{{ 'hELLo'.capitalize() }}|{{ 'ab'.upper() }}|{{ '{} is {}'.format('x', 1) }}|{{ '-'.join(['a', 'b']) }}"));

    [Fact]
    public void Json_numbers_keep_int_and_float_apart() =>
        Assert.Equal("3 3.0 2.5e-07 12345678901", Render("{{ a }} {{ b }} {{ c }} {{ d }}", """{"a": 3, "b": 3.0, "c": 2.5e-7, "d": 12345678901}"""));
}
