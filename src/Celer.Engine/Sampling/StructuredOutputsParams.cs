namespace Celer.Engine;

/// <summary>
/// A request's output constraint, vLLM's <c>StructuredOutputsParams</c>: exactly one of a JSON schema, any JSON
/// object, a regular expression, a choice of strings or a grammar (GBNF), with vLLM's whitespace options for JSON.
/// Compiled at admission into a grammar over the model's vocabulary; the sampler then allows only tokens that keep
/// the output a prefix of a sentence of that grammar, and the end of sequence only where it is complete.
/// </summary>
public sealed record StructuredOutputsParams
{
    /// <summary>The JSON schema, as JSON text.</summary>
    public string? Json { get; init; }

    /// <summary>Any JSON object (OpenAI's <c>response_format: json_object</c>).</summary>
    public bool JsonObject { get; init; }

    public string? Regex { get; init; }

    public IReadOnlyList<string>? Choice { get; init; }

    /// <summary>A grammar in GBNF (llama.cpp's EBNF), root rule <c>root</c>.</summary>
    public string? Grammar { get; init; }

    /// <summary>
    /// A structural tag as JSON text (<c>{"structures": [{"begin", "schema", "end"}], "triggers": […]}</c>): free text in
    /// which each trigger opens a structure whose JSON follows its schema.
    /// </summary>
    public string? StructuralTag { get; init; }

    /// <summary>JSON without whitespace between tokens but single spaces after ',' and ':' (vLLM's flag).</summary>
    public bool DisableAnyWhitespace { get; init; }

    /// <summary>JSON objects take only the properties a schema names, even where it allows others (vLLM's flag).</summary>
    public bool DisableAdditionalProperties { get; init; }

    /// <summary>The whitespace allowed between JSON tokens, as a regular expression (vLLM's whitespace_pattern).</summary>
    public string? WhitespacePattern { get; init; }

    /// <summary>
    /// A reasoning model's end of thinking (<c>--reasoning-parser</c>) as token ids: one token (<c>&lt;/think&gt;</c>) or
    /// several (gpt-oss's <c>&lt;|start|&gt;assistant&lt;|channel|&gt;final&lt;|message|&gt;</c>). The constraint applies
    /// only to what follows the first place where the sequence's last token completes it, the prompt's tokens counting
    /// as the ones before the output's, as vLLM lets a model think freely before its structured answer. Null: from the
    /// first token.
    /// </summary>
    public IReadOnlyList<int>? ReasoningEndTokenIds { get; init; }

    /// <summary>How many constraint kinds are set; a valid request has exactly one.</summary>
    internal int KindCount => (Json is null ? 0 : 1) + (JsonObject ? 1 : 0) + (Regex is null ? 0 : 1) + (Choice is null ? 0 : 1) + (Grammar is null ? 0 : 1)
        + (StructuralTag is null ? 0 : 1);
}
