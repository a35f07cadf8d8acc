namespace Celer.ChatTemplates;

/// <summary>
/// Bounds on one render. A chat template is code supplied with a model (or by a client through
/// <c>--chat-template</c>), so a hostile or buggy one must not be able to hang or exhaust the server.
/// </summary>
public sealed record TemplateLimits
{
    /// <summary>Largest rendered prompt, in UTF-16 chars. 1 MiB is far above any real context window's text.</summary>
    public int MaxOutputChars { get; init; } = 1 << 20;

    /// <summary>Longest string any expression may build, in UTF-16 chars (checked before it is allocated).</summary>
    public int MaxValueChars { get; init; } = 4 << 20;

    /// <summary>Most items any list an expression builds may hold (checked before it is allocated).</summary>
    public int MaxListItems { get; init; } = 1 << 20;

    /// <summary>Evaluation steps (statements, loop iterations, expression nodes) per render.</summary>
    public long MaxSteps { get; init; } = 5_000_000;

    /// <summary>Deepest nesting of macro calls and expressions at render time, and of constructs at parse time.</summary>
    public int MaxDepth { get; init; } = 200;

    /// <summary>Wall-clock budget of one render.</summary>
    public TimeSpan Timeout { get; init; } = TimeSpan.FromSeconds(2);

    public static TemplateLimits Default { get; } = new();
}
