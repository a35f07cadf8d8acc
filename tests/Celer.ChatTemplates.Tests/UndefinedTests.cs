using Xunit;
using static Celer.ChatTemplates.Tests.TemplateTestHelpers;

namespace Celer.ChatTemplates.Tests;

/// <summary>Jinja's default Undefined; messages checked against jinja2 3.1.6.</summary>
public class UndefinedTests
{
    [Fact]
    public void Prints_empty_is_falsy_iterates_empty_and_has_length_zero() =>
        Assert.Equal("[]0FalsededdTrue", Render(
            "[{{ u }}]{{ u|length }}{{ u is none }}{{ u|default('d') }}{{ ''|default('e', true) }}{{ u|d('dd') }}{% for x in u %}never{% endfor %}{{ u == u2 }}"));

    [Fact]
    public void Missing_key_or_index_prints_empty() =>
        Assert.Equal("||", Render("{{ d.missing }}|{{ xs[10] }}|", """{"d": {}, "xs": [1]}"""));

    [Theory]
    [InlineData("{{ u.x }}", "'u' is undefined")]
    [InlineData("{{ d.missing.x }}", "'dict object' has no attribute 'missing'")]
    [InlineData("{{ u + 'x' }}", "'u' is undefined")]
    [InlineData("{{ u() }}", "'u' is undefined")]
    [InlineData("{{ u['k'] }}", "'u' is undefined")]
    [InlineData("{{ u|tojson }}", "Object of type Undefined is not JSON serializable")]
    public void Other_uses_raise(string template, string message)
    {
        var e = Assert.Throws<TemplateRenderException>(() => Render(template, """{"d": {}}"""));
        Assert.Equal(message, e.Message);
        Assert.False(e.RaisedByTemplate);
    }

    [Fact]
    public void Inline_if_without_else_is_undefined() => Assert.Equal("True", Render("{{ ('x' if false) is undefined }}"));

    [Fact]
    public void Context_defaults_match_transformers()
    {
        // render_jinja_template always passes tools=None, documents=None and add_generation_prompt=False.
        Assert.Equal("TrueTrueFalse", Render("{{ tools is none }}{{ documents is defined }}{{ add_generation_prompt }}"));
    }
}
