using System.Text.Json.Nodes;

namespace Celer.Grammars.Json;

/// <summary>
/// JSON Schema to grammar: vLLM's structured outputs <c>json</c> (<c>response_format: json_schema</c>) and
/// <c>json_object</c>. Every output the grammar allows is JSON text that the schema accepts; a schema that cannot be
/// followed exactly is refused with a <see cref="GrammarException"/> naming the keyword and its JSON pointer.
/// </summary>
/// <remarks>
/// Follows XGrammar, vLLM's default backend, in strict mode: properties come in the schema's order, an object's
/// <c>additionalProperties</c> is false unless the schema sets it (an object schema with no properties, required or
/// additionalProperties at all stays open, as XGrammar treats <c>{"type": "object"}</c>), and prefixItems without
/// items allow no further items. Where XGrammar approximates, this refuses instead: a oneOf whose branches are not
/// provably disjoint (XGrammar falls back to anyOf), an allOf that does not merge exactly (XGrammar emits any value),
/// unsupported keywords (XGrammar ignores them).
/// <para>Supported: type (and arrays of types), enum, const, properties, required, additionalProperties, items,
/// prefixItems, draft-07 tuples (items as an array, additionalItems), minItems, maxItems, minLength, maxLength (in code
/// points), pattern, format (date-time, date, time, email, hostname, ipv4, ipv6, uuid, uri), minimum, maximum,
/// exclusiveMinimum, exclusiveMaximum, $ref within the document (#, #/$defs/…, #/definitions/…, any JSON pointer, also
/// behind the root's $id), anyOf, oneOf, allOf, boolean schemas.</para>
/// <para>Only where the rest of the schema already meets them: multipleOf (a divisor of 1 such as 1 or 0.5; for numbers
/// also 10^-k such as 0.01, read as at most k decimals), uniqueItems (maxItems at most 1), minProperties (at most the
/// required count), maxProperties (at least the properties an object can have), minLength/maxLength beside a pattern
/// (the pattern implies them).</para>
/// <para>Refused: <see cref="JsonSchemaKeywords.Refused"/>, $refs to other documents or anchors, $refs inside a
/// subschema with its own $id. Ignored: annotations, unknown keywords, unknown formats (format is an annotation in
/// 2020-12, and XGrammar ignores the formats it does not know), a format beside a pattern or beside length bounds it
/// does not imply.</para>
/// </remarks>
public static class JsonSchemaGrammar
{
    public static Grammar Compile(JsonNode schema, JsonGrammarOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        return new JsonSchemaCompiler(schema, options).Compile();
    }

    /// <summary>Any JSON object (OpenAI's <c>json_object</c>).</summary>
    public static Grammar AnyJsonObject(JsonGrammarOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        var builder = new GrammarBuilder();
        return builder.Build(new JsonSyntax(builder, options).Object);
    }
}
