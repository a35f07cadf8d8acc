namespace Celer.ChatTemplates;

/// <summary>The template source is not valid (in the supported Jinja subset). Raised by <see cref="ChatTemplate.Parse"/>.</summary>
public sealed class TemplateSyntaxException : Exception
{
    public TemplateSyntaxException(string message, int line)
        : base($"{message} (line {line})")
    {
        Line = line;
    }

    public int Line { get; }
}

/// <summary>
/// Rendering failed: the template called <c>raise_exception(msg)</c> (then <see cref="Exception.Message"/> is exactly
/// the template's message and <see cref="RaisedByTemplate"/> is true; the server returns it as a 400), or it hit
/// an undefined value, a type error, a sandbox violation or a limit.
/// </summary>
public sealed class TemplateRenderException : Exception
{
    public TemplateRenderException(string message, bool raisedByTemplate = false)
        : base(message)
    {
        RaisedByTemplate = raisedByTemplate;
    }

    public bool RaisedByTemplate { get; }
}
