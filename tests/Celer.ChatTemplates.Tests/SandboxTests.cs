using Xunit;
using static Celer.ChatTemplates.Tests.TemplateTestHelpers;

namespace Celer.ChatTemplates.Tests;

/// <summary>The immutable sandbox, raise_exception, syntax errors and the render limits.</summary>
public class SandboxTests
{
    [Theory]
    [InlineData("{{ [1,2].append(3) }}", "access to attribute 'append' of 'list' object is unsafe.")]
    [InlineData("{{ {'a': 1}.update({'b': 2}) }}", "access to attribute 'update' of 'dict' object is unsafe.")]
    public void Mutating_methods_are_refused(string template, string message) =>
        Assert.Equal(message, Assert.Throws<TemplateRenderException>(() => Render(template)).Message);

    [Fact]
    public void Raise_exception_carries_the_template_message()
    {
        var e = Assert.Throws<TemplateRenderException>(() => Render("{{ raise_exception('Bad role: ' ~ role) }}", """{"role": "tool"}"""));
        Assert.Equal("Bad role: tool", e.Message);
        Assert.True(e.RaisedByTemplate);
    }

    [Theory]
    [InlineData("{% include 'x.jinja' %}", 1)]
    [InlineData("a\n{% extends 'base' %}", 2)]
    [InlineData("a\n\n{% import 'm' as m %}", 3)]
    [InlineData("{% for x in xs %}\n{{ x }}", 2)]
    [InlineData("{{ 1 +* 2 }}", 1)]
    [InlineData("{% if x %}\n{% endfor %}", 2)]
    [InlineData("{% nonsense %}", 1)]
    [InlineData("{{ 'unterminated }}", 1)]
    public void Bad_templates_fail_to_parse_with_a_line(string template, int line) =>
        Assert.Equal(line, Assert.Throws<TemplateSyntaxException>(() => ChatTemplate.Parse(template)).Line);

    [Fact]
    public void Output_size_is_bounded()
    {
        var limits = new TemplateLimits { MaxOutputChars = 1000 };
        Assert.Equal(new string('x', 1000), Render("{% for i in range(1000) %}x{% endfor %}", limits: limits));
        var e = Assert.Throws<TemplateRenderException>(() => Render("{% for i in range(1001) %}x{% endfor %}", limits: limits));
        Assert.Contains("exceeds the limit of 1000", e.Message);
    }

    /// <summary>
    /// Values are bounded before they are built (issue 18 #1): each of these used to allocate gigabytes, or fail with
    /// OutOfMemoryException, on the server's heap. Each must fail fast with a render error and allocate little.
    /// </summary>
    [Theory]
    [InlineData("{{ 'x' * 1000000000 }}", "characters exceeds the limit")]
    [InlineData("{{ 'x' * 10000000000 }}", "characters exceeds the limit")]
    [InlineData("{{ 1000000000 * 'x' }}", "characters exceeds the limit")]
    [InlineData("{% set s = 'x' * 1000000 %}{{ s|replace('x', s) }}", "characters exceeds the limit")]
    [InlineData("{% set s = 'x' * 1000000 %}{{ s.replace('x', s) }}", "characters exceeds the limit")]
    [InlineData("{{ 'ab'.replace('', 'x' * 3000000) }}", "characters exceeds the limit")]
    [InlineData("{{ ([0] * 100000000)|length }}", "items exceeds the limit")]
    [InlineData("{% set ns = namespace(s='x') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s|length }}", "characters exceeds the limit")]
    [InlineData("{% set ns = namespace(s='x') %}{% for i in range(40) %}{% set ns.s = ns.s + ns.s %}{% endfor %}{{ ns.s|length }}", "characters exceeds the limit")]
    [InlineData("{% set ns = namespace(l=[0]) %}{% for i in range(40) %}{% set ns.l = ns.l + ns.l %}{% endfor %}{{ ns.l|length }}", "items exceeds the limit")]
    [InlineData("{{ 'a'|center(1000000000) }}", "characters exceeds the limit")]
    [InlineData("{{ 'a'.ljust(2000000000) }}", "characters exceeds the limit")]
    [InlineData("{{ '7'.zfill(2000000000) }}", "characters exceeds the limit")]
    [InlineData("{{ ('a\n' * 100)|indent(100000000) }}", "characters exceeds the limit")]
    [InlineData("{{ [[1, [2, [3]]]]|tojson(indent=100000000) }}", "characters exceeds the limit")]
    [InlineData("{{ [1]|batch(1000000000, 0)|list }}", "items exceeds the limit")]
    [InlineData("{{ ','.join(['x' * 3000000, 'y' * 3000000]) }}", "characters exceeds the limit")]
    [InlineData("{{ ['x' * 3000000, 'y' * 3000000]|join(',') }}", "characters exceeds the limit")]
    public void Values_are_bounded_before_they_are_built(string template, string message)
    {
        long before = GC.GetAllocatedBytesForCurrentThread();
        var e = Assert.Throws<TemplateRenderException>(() => Render(template));
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.Contains(message, e.Message, StringComparison.Ordinal);
        Assert.True(allocated < 64L << 20, $"the render allocated {allocated >> 20} MiB before failing");
    }

    [Fact]
    public void Values_within_the_bounds_still_render()
    {
        Assert.Equal("1000000", Render("{{ ('x' * 1000000)|length }}"));
        Assert.Equal("4096", Render("{% set ns = namespace(s='x') %}{% for i in range(12) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s|length }}"));
        Assert.Equal("axbxa", Render("{{ 'a b a'.replace(' ', 'x') }}"));
        Assert.Equal("xaxbx", Render("{{ 'ab'.replace('', 'x') }}"));
    }

    [Fact]
    public void Steps_are_bounded() =>
        Assert.Contains("evaluation steps", Assert.Throws<TemplateRenderException>(() =>
            Render("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
                limits: new TemplateLimits { MaxSteps = 50_000 })).Message);

    [Fact]
    public void Recursion_is_bounded() =>
        Assert.Contains("recursion depth", Assert.Throws<TemplateRenderException>(() =>
            Render("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}")).Message);

    [Fact]
    public void Deep_nesting_fails_to_parse_instead_of_overflowing_the_stack() =>
        Assert.Throws<TemplateSyntaxException>(() => ChatTemplate.Parse("{{ " + new string('(', 5000) + "1" + new string(')', 5000) + " }}"));

    [Fact]
    public void Wall_clock_is_bounded()
    {
        var limits = new TemplateLimits { Timeout = TimeSpan.FromMilliseconds(1), MaxSteps = long.MaxValue };
        var e = Assert.Throws<TemplateRenderException>(() =>
            Render("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}", limits: limits));
        Assert.Contains("time limit", e.Message);
    }

    [Fact]
    public void Huge_ranges_are_refused_like_the_jinja_sandbox() =>
        Assert.Contains("MAX_RANGE", Assert.Throws<TemplateRenderException>(() => Render("{{ range(100001)|length }}")).Message);
}
