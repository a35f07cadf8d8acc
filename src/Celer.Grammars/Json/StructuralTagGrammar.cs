using System.Text;
using System.Text.Json.Nodes;

namespace Celer.Grammars.Json;

/// <summary>
/// vLLM's structural tags (<c>structured_outputs.structural_tag</c>, <c>response_format: structural_tag</c>; XGrammar's
/// format): free text in which every occurrence of a trigger opens one of the structures whose <c>begin</c> starts with
/// it, and a structure is its <c>begin</c>, JSON that its <c>schema</c> accepts, and its <c>end</c>; free text follows.
/// <c>{"structures": [{"begin": "&lt;function=f&gt;", "schema": {…}, "end": "&lt;/function&gt;"}], "triggers": ["&lt;function="]}</c>
/// lets a model call tools anywhere in its answer, with every call's arguments valid.
/// </summary>
/// <remarks>
/// The free text is the language of an Aho–Corasick automaton over the triggers' bytes: one rule per state (the longest
/// trigger prefix the text ends with), a byte leading to the next state, and a trigger completed leading into its
/// structures instead. Right recursion, so the matcher's stacks stay flat however long the text.
/// </remarks>
public static class StructuralTagGrammar
{
    public static Grammar Compile(JsonNode tag, JsonGrammarOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        if (tag is not JsonObject root)
        {
            throw new GrammarException("A structural tag must be an object with 'structures' and 'triggers'.");
        }

        var triggers = Strings(root["triggers"], "triggers");
        if (triggers.Count == 0 || triggers.Any(t => t.Length == 0))
        {
            throw new GrammarException("A structural tag needs at least one non-empty trigger.");
        }

        foreach (var a in triggers)
        {
            if (triggers.Any(b => !ReferenceEquals(a, b) && b.Contains(a, StringComparison.Ordinal)))
            {
                throw new GrammarException($"Structural tag trigger '{a}' occurs inside another trigger: the text could open two structures at once.");
            }
        }

        if (root["structures"] is not JsonArray { Count: > 0 } structures)
        {
            throw new GrammarException("A structural tag needs a non-empty 'structures' list.");
        }

        var builder = new GrammarBuilder();
        var byTrigger = triggers.ToDictionary(t => t, _ => new List<GrammarExpr>(), StringComparer.Ordinal);
        int textStart = builder.Declare("text");
        for (int i = 0; i < structures.Count; i++)
        {
            if (structures[i] is not JsonObject s || s["begin"] is not JsonValue begin || !begin.TryGetValue(out string? beginText)
                || s["end"] is not JsonValue end || !end.TryGetValue(out string? endText) || s["schema"] is not { } schema)
            {
                throw new GrammarException($"Structural tag structure {i} needs 'begin' and 'end' strings and a 'schema'.");
            }

            string trigger = triggers.FirstOrDefault(t => beginText.StartsWith(t, StringComparison.Ordinal))
                ?? throw new GrammarException($"Structural tag structure {i}: its begin '{beginText}' starts with no trigger.");
            GrammarExpr json;
            try
            {
                json = SubgrammarImport.Import(builder, JsonSchemaGrammar.Compile(schema, options), $"structure{i}");
            }
            catch (GrammarException e)
            {
                throw new GrammarException($"Structural tag structure {i}: {e.Message}");
            }

            byTrigger[trigger].Add(GrammarExpr.Sequence(GrammarExpr.Literal(beginText[trigger.Length..]), json, GrammarExpr.Literal(endText), GrammarExpr.Ref(textStart)));
        }

        DefineText(builder, textStart, triggers, byTrigger);
        return builder.Build(textStart);
    }

    // The Aho–Corasick automaton of the triggers, as one rule per state; state 0 is textStart.
    private static void DefineText(GrammarBuilder builder, int textStart, List<string> triggers, Dictionary<string, List<GrammarExpr>> byTrigger)
    {
        byte[][] patterns = [.. triggers.Select(Encoding.UTF8.GetBytes)];
        var prefixes = new List<byte[]> { Array.Empty<byte>() };
        var index = new Dictionary<string, int>(StringComparer.Ordinal) { [""] = 0 };
        foreach (var p in patterns)
        {
            for (int n = 1; n < p.Length; n++)
            {
                string key = Convert.ToHexString(p, 0, n);
                if (index.TryAdd(key, prefixes.Count))
                {
                    prefixes.Add(p[..n]);
                }
            }
        }

        int[] rules = [textStart, .. prefixes.Skip(1).Select((_, i) => builder.Declare($"text-{i + 1}"))];
        for (int state = 0; state < prefixes.Count; state++)
        {
            // Bytes grouped by where they lead: a trigger completed, or the longest trigger prefix the text then ends with.
            var toState = new Dictionary<int, ByteSet>();
            var toTrigger = new Dictionary<int, ByteSet>();
            for (int b = 0; b < 256; b++)
            {
                byte[] text = [.. prefixes[state], (byte)b];
                int completed = Array.FindIndex(patterns, p => text.AsSpan().EndsWith(p));
                if (completed >= 0)
                {
                    toTrigger[completed] = toTrigger.GetValueOrDefault(completed).Union(ByteSet.Of((byte)b));
                    continue;
                }

                int next = 0;
                for (int n = Math.Min(text.Length, prefixes.Max(p => p.Length)); n > 0; n--)
                {
                    if (index.TryGetValue(Convert.ToHexString(text, text.Length - n, n), out int found))
                    {
                        next = found;
                        break;
                    }
                }

                toState[next] = toState.GetValueOrDefault(next).Union(ByteSet.Of((byte)b));
            }

            var alternatives = new List<GrammarExpr> { GrammarExpr.Empty };
            alternatives.AddRange(toState.Select(e => GrammarExpr.Sequence(new ByteSetExpr(e.Value), GrammarExpr.Ref(rules[e.Key]))));
            alternatives.AddRange(toTrigger.Select(e => GrammarExpr.Sequence(new ByteSetExpr(e.Value), GrammarExpr.Choice(byTrigger[triggers[e.Key]]))));
            builder.Define(rules[state], new ChoiceExpr([.. alternatives]));
        }
    }

    private static List<string> Strings(JsonNode? node, string field)
    {
        if (node is not JsonArray array)
        {
            throw new GrammarException($"A structural tag needs a '{field}' list of strings.");
        }

        var list = new List<string>();
        foreach (var item in array)
        {
            list.Add(item is JsonValue v && v.TryGetValue(out string? s) ? s : throw new GrammarException($"Structural tag '{field}' must hold strings."));
        }

        return list;
    }
}
