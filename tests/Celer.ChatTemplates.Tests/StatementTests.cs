using Xunit;
using static Celer.ChatTemplates.Tests.TemplateTestHelpers;

namespace Celer.ChatTemplates.Tests;

/// <summary>Control flow, assignment and scoping; expected strings checked against jinja2 3.1.6.</summary>
public class StatementTests
{
    [Fact]
    public void For_with_filter_counts_only_kept_items() => Assert.Equal("1/3:2,2/3:3,3/3:4", Render(
        "{% for x in xs if x > 1 %}{{ loop.index }}/{{ loop.length }}:{{ x }}{{ ',' if not loop.last }}{% else %}none{% endfor %}",
        """{"xs": [1, 2, 3, 4]}"""));

    [Fact]
    public void Loop_neighbours_revindex_and_break() => Assert.Equal("False-2-3;True-3-2", Render(
        "{% for x in xs %}{{ loop.previtem is defined }}-{{ loop.nextitem|default('END') }}-{{ loop.revindex }}{% if x == 2 %}{% break %}{% endif %};{% endfor %}",
        """{"xs": [1, 2, 3]}"""));

    [Fact]
    public void Loop_index0_first_and_nested_loops() => Assert.Equal("0T:a0b1|1F:a0b1|", Render(
        "{% for x in [1, 2] %}{{ loop.index0 }}{{ 'T' if loop.first else 'F' }}:{% for y in ['a', 'b'] %}{{ y }}{{ loop.index0 }}{% endfor %}|{% endfor %}"));

    [Fact]
    public void For_else_runs_on_empty() => Assert.Equal("empty", Render("{% for x in [] %}a{% else %}empty{% endfor %}"));

    [Fact]
    public void Continue_skips_the_rest_of_the_body() =>
        Assert.Equal("13", Render("{% for x in [1,2,3,4] %}{% if x is even %}{% continue %}{% endif %}{{ x }}{% endfor %}"));

    [Fact]
    public void Tuple_unpacking_over_items_keeps_dict_order() => Assert.Equal("b=1;a=[1, None, True];", Render(
        "{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %}", """{"d": {"b": 1, "a": [1, null, true]}}"""));

    [Fact]
    public void Set_in_a_loop_does_not_leak_but_set_in_an_if_does() => Assert.Equal("13", Render(
        "{% set x = 1 %}{% for i in [1] %}{% set x = 2 %}{% endfor %}{{ x }}{% if true %}{% set x = 3 %}{% endif %}{{ x }}"));

    [Fact]
    public void Namespace_carries_state_out_of_a_loop() => Assert.Equal("6", Render(
        "{% set ns = namespace(n=0, s='') %}{% for i in range(4) %}{% set ns.n = ns.n + i %}{% endfor %}{{ ns.n }}"));

    [Fact]
    public void Set_unpacks_a_tuple() => Assert.Equal("two1", Render("{% set a, b = [1, 'two'] %}{{ b }}{{ a }}"));

    [Fact]
    public void Block_set_captures_output_verbatim() =>
        Assert.Equal("[  Hi Bo  ]", Render("{% set block %}  Hi {{ name }}  {% endset %}[{{ block }}]", """{"name": "Bo"}"""));

    [Fact]
    public void Block_set_with_filter() => Assert.Equal("ABC", Render("{% set up | upper %}abc{% endset %}{{ up }}"));

    [Fact]
    public void Macro_with_default_and_keyword_arguments() => Assert.Equal("Hello Ann! Hello Bob?", Render(
        "{% macro greet(name, punct='!') %}Hello {{ name }}{{ punct }}{% endmacro %}{{ greet('Ann') }} {{ greet('Bob', punct='?') }}"));

    [Fact]
    public void Filter_block() => Assert.Equal("SHOUT IT", Render("{% filter upper %}shout {{ 'it' }}{% endfilter %}"));

    [Fact]
    public void If_elif_else() =>
        Assert.Equal("B", Render("{% if a %}A{% elif b %}B{% else %}C{% endif %}{% if not a and not b %}!{% endif %}", """{"b": 1}"""));

    [Fact]
    public void Generation_block_renders_its_body() =>
        Assert.Equal("<a>hi</a>", Render("<a>{% generation %}{{ 'hi' }}{% endgeneration %}</a>"));

    [Fact]
    public void Range_and_dict_globals() =>
        Assert.Equal("[0, 1, 2]|[1, 3, 5]|1", Render("{{ range(3)|list }}|{{ range(1, 7, 2)|list }}|{{ dict(a=1)['a'] }}"));
}
