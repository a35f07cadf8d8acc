namespace Celer.Grammars.Json;

/// <summary>
/// How JSON text is laid out and how open objects are, as vLLM's structured-output flags set it
/// (<c>disable_any_whitespace</c>, <c>whitespace_pattern</c>, <c>disable_additional_properties</c>).
/// </summary>
public sealed record JsonGrammarOptions
{
    /// <summary>
    /// Any run of space, tab, newline and carriage return between JSON tokens. When false (and no
    /// <see cref="WhitespacePattern"/>), the layout of Python's <c>json.dumps</c> default: <c>", "</c> and
    /// <c>": "</c> and no other whitespace.
    /// </summary>
    public bool AnyWhitespace { get; init; } = true;

    /// <summary>
    /// The whitespace between JSON tokens as a regular expression (full match); takes precedence over
    /// <see cref="AnyWhitespace"/>. Only the JSON whitespace bytes it allows are kept, so the output stays JSON.
    /// </summary>
    public string? WhitespacePattern { get; init; }

    /// <summary>
    /// The longest run of whitespace between two tokens under <see cref="AnyWhitespace"/>; null is unbounded.
    /// XGrammar's <c>max_whitespace_cnt</c>: a bound stops a model from padding with newlines forever.
    /// </summary>
    public int? MaxWhitespace { get; init; }

    /// <summary>Objects take only the properties their schema names, even where it allows others.</summary>
    public bool DisableAdditionalProperties { get; init; }
}
