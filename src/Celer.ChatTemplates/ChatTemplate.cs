using System.Text.Json.Nodes;
using Celer.ChatTemplates.Runtime;
using Celer.ChatTemplates.Syntax;

namespace Celer.ChatTemplates;

/// <summary>
/// A Hugging Face chat template (the Jinja source in tokenizer_config.json's <c>chat_template</c>), rendered the
/// way transformers does: Jinja's <c>ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)</c> with
/// loop controls, <c>raise_exception</c>, <c>strftime_now</c> and a <c>tojson</c> that is plain <c>json.dumps</c>.
/// Parse once at model load; <see cref="Render"/> is thread-safe.
/// </summary>
public sealed class ChatTemplate
{
    private readonly List<Stmt> _body;
    private readonly TemplateLimits _limits;
    private readonly Func<DateTimeOffset> _clock;

    private ChatTemplate(List<Stmt> body, TemplateLimits limits, Func<DateTimeOffset> clock)
    {
        _body = body;
        _limits = limits;
        _clock = clock;
        ContentFormat = ContentFormatDetector.Detect(body);
    }

    /// <summary>
    /// How the template reads message content, detected as vLLM's <c>--chat-template-content-format auto</c> does:
    /// <see cref="ChatTemplateContentFormat.OpenAI"/> when it loops over a message's content parts.
    /// </summary>
    public ChatTemplateContentFormat ContentFormat { get; }

    /// <exception cref="TemplateSyntaxException">The source is not valid Jinja, or uses a tag chat templates cannot (include, import, extends).</exception>
    public static ChatTemplate Parse(string source, TemplateLimits? limits = null)
    {
        var l = limits ?? TemplateLimits.Default;
        return new ChatTemplate(Parser.Parse(source, l.MaxDepth), l, () => DateTimeOffset.UtcNow);
    }

    /// <summary>For tests: a template whose <c>strftime_now</c> reads this clock.</summary>
    internal static ChatTemplate Parse(string source, TemplateLimits limits, Func<DateTimeOffset> clock) =>
        new(Parser.Parse(source, limits.MaxDepth), limits, clock);

    /// <summary>
    /// Renders the prompt. <paramref name="context"/> holds the template variables: <c>messages</c> (OpenAI-style
    /// message objects, <c>tool_calls[].function.arguments</c> as objects), <c>tools</c>, <c>add_generation_prompt</c>,
    /// <c>bos_token</c>, <c>eos_token</c> and any extra kwargs (<c>enable_thinking</c>, <c>date_string</c>...).
    /// As in transformers' render_jinja_template, <c>tools</c> and <c>documents</c> are none and
    /// <c>add_generation_prompt</c> is false when absent, so <c>tools is defined</c> behaves the same.
    /// </summary>
    /// <exception cref="TemplateRenderException">The template raised, or hit an undefined value, a type error or a limit.</exception>
    public string Render(JsonObject context)
    {
        var globals = new Scope(null);
        Globals.AddTo(globals, _clock);
        var vars = new Scope(globals);
        vars.Set("tools", null);
        vars.Set("documents", null);
        vars.Set("add_generation_prompt", false);
        foreach (var (name, value) in context) vars.Set(name, JsonConversion.ToValue(value));
        try
        {
            return new Interpreter(_limits).Render(_body, vars);
        }
        catch (OverflowException)
        {
            throw new TemplateRenderException("integer overflow in template arithmetic");
        }
        catch (InsufficientExecutionStackException)
        {
            throw new TemplateRenderException("template recursion is too deep");
        }
    }
}
