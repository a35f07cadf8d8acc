using System.Text.Json;
using System.Text.Json.Nodes;

namespace Celer.Grammars.Json;

/// <summary>
/// Compiles one schema document: each schema object becomes a rule (shared between identical schemas), each $ref
/// target one rule however often it is referenced, so recursive schemas become recursive rules.
/// </summary>
internal sealed partial class JsonSchemaCompiler
{
    private readonly JsonNode _document;
    private readonly JsonGrammarOptions _options;
    private readonly GrammarBuilder _builder = new();
    private readonly JsonSyntax _syntax;
    private readonly JsonSchemaMerge _merge;
    private readonly JsonSchemaDisjointness _disjointness;

    // The rule of each $ref target, by JSON pointer ("" is the root, for "$ref": "#").
    private readonly Dictionary<string, int> _refRules = new(StringComparer.Ordinal);

    // Schemas already compiled, by their JSON text; only schemas without a $ref, whose grammar depends on nothing else.
    private readonly Dictionary<string, GrammarExpr?> _compiled = new(StringComparer.Ordinal);

    // The $ref targets being compiled since the last '{' or '['. Reaching one of them again before any JSON text
    // would be left recursion ({"anyOf": [{"$ref": "#"}, ...]}), which no pushdown matcher can run.
    private HashSet<string> _openRefs = new(StringComparer.Ordinal);

    // How many subschemas with an $id of their own enclose the one being compiled: a $ref inside one is relative to
    // that $id, not to this document, so it is refused rather than misread.
    private int _idScopes;

    public JsonSchemaCompiler(JsonNode document, JsonGrammarOptions options)
    {
        _document = document;
        _options = options;
        _syntax = new JsonSyntax(_builder, options);
        _merge = new JsonSchemaMerge(document);
        _disjointness = new JsonSchemaDisjointness(Normalize);
    }

    public Grammar Compile()
    {
        int root = _builder.Declare("root");
        _refRules[""] = root;
        _openRefs.Add("");
        var body = Schema(_document, "") ?? throw new GrammarException("The JSON schema accepts no value.");
        _builder.Define(root, body);
        return _builder.Build(root);
    }

    // The grammar of the JSON texts `schema` accepts; null when it accepts none.
    private GrammarExpr? Schema(JsonNode? schema, string path)
    {
        switch (JsonSchemaKeywords.Kind(schema))
        {
            case JsonValueKind.True:
                return _syntax.Value;
            case JsonValueKind.False:
                return null;
            case JsonValueKind.Object:
                break;
            default:
                throw JsonSchemaKeywords.NotASchema(path);
        }

        var o = schema!.AsObject();
        string text = o.ToJsonString();
        bool shareable = !text.Contains("\"$ref\"", StringComparison.Ordinal);
        if (shareable && _compiled.TryGetValue(text, out var done))
        {
            return done;
        }

        var result = SchemaObject(o, path);
        if (result is not null and not RuleRefExpr)
        {
            result = _builder.Rule(path.Length == 0 ? "schema" : path, result);
        }

        if (shareable)
        {
            _compiled[text] = result;
        }

        return result;
    }

    private GrammarExpr? SchemaObject(JsonObject schema, string path)
    {
        JsonSchemaKeywords.Check(schema, path);
        bool scoped = path.Length > 0 && schema.ContainsKey("$id");
        _idScopes += scoped ? 1 : 0;
        try
        {
            if (JsonSchemaMerge.IsConjunction(schema))
            {
                return Schema(_merge.Merge([schema], path), path);
            }

            if (schema["$ref"] is { } reference)
            {
                return Reference(reference.GetValue<string>(), path);
            }

            return schema.ContainsKey("anyOf") || schema.ContainsKey("oneOf") ? Union(schema, path) : Typed(schema, path);
        }
        finally
        {
            _idScopes -= scoped ? 1 : 0;
        }
    }

    private GrammarExpr? Reference(string reference, string path)
    {
        if (_idScopes > 0)
        {
            throw JsonSchemaKeywords.Error("$ref", path, $"'{reference}' inside a subschema with its own $id is not supported (the $id changes what the reference means)");
        }

        string pointer = JsonSchemaPointer.FromReference(_document, reference)
            ?? throw JsonSchemaKeywords.Error("$ref", path, $"'{reference}' is not supported: only references within the schema (#, #/$defs/...) are");
        if (_openRefs.Contains(pointer))
        {
            throw JsonSchemaKeywords.Error("$ref", path, $"'{reference}' refers back to a schema it is part of before any JSON text (left recursion)");
        }

        if (_refRules.TryGetValue(pointer, out int known))
        {
            return GrammarExpr.Ref(known);
        }

        if (!JsonSchemaPointer.TryResolve(_document, pointer, out var target))
        {
            throw JsonSchemaKeywords.Error("$ref", path, $"'{reference}' points to nothing");
        }

        int rule = _builder.Declare(pointer);
        _refRules[pointer] = rule;
        _openRefs.Add(pointer);
        var body = Schema(target, pointer);
        _openRefs.Remove(pointer);
        _builder.Define(rule, body ?? new ByteSetExpr(ByteSet.Empty));
        return body is null ? null : GrammarExpr.Ref(rule);
    }

    // anyOf as a choice; oneOf too, once no two branches can match one value.
    private GrammarExpr? Union(JsonObject schema, string path)
    {
        string keyword = schema.ContainsKey("anyOf") ? "anyOf" : "oneOf";
        var branches = schema[keyword]!.AsArray();
        var alternatives = new List<GrammarExpr>();
        for (int i = 0; i < branches.Count; i++)
        {
            if (Schema(branches[i], JsonSchemaPointer.Append(JsonSchemaPointer.Append(path, keyword), i)) is { } branch)
            {
                alternatives.Add(branch);
            }
        }

        for (int i = 0; keyword == "oneOf" && i < branches.Count; i++)
        {
            for (int j = i + 1; j < branches.Count; j++)
            {
                if (!_disjointness.Disjoint(branches[i], branches[j]))
                {
                    throw JsonSchemaKeywords.Error("oneOf", path, $"has branches {i} and {j} that may both match one value, which a grammar cannot rule out (use anyOf, or tell the branches apart by type or by a required property with a const)");
                }
            }
        }

        return alternatives.Count == 0 ? null : GrammarExpr.Choice(alternatives);
    }

    // A schema in the form the disjointness proofs read: $refs followed, allOf merged.
    private JsonNode? Normalize(JsonNode? schema)
    {
        // The branches compiled already, so a merge here cannot fail; the hop limit stops a cycle of bare $refs.
        for (int hops = 0; schema is JsonObject o && hops < 32; hops++)
        {
            if (JsonSchemaMerge.IsConjunction(o))
            {
                return _merge.Merge([o], "");
            }

            if (o["$ref"] is not { } reference || JsonSchemaPointer.FromReference(_document, reference.GetValue<string>()) is not { } pointer
                || !JsonSchemaPointer.TryResolve(_document, pointer, out schema))
            {
                return o;
            }
        }

        return schema;
    }

    // Compiles the members of an object or array: a '{' or '[' has been written, so no reference is open any more.
    private T Nested<T>(Func<T> compile)
    {
        var open = _openRefs;
        _openRefs = new HashSet<string>(StringComparer.Ordinal);
        try
        {
            return compile();
        }
        finally
        {
            _openRefs = open;
        }
    }
}
