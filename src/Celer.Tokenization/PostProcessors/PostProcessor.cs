using System.Text.Json;

namespace Celer.Tokenization.PostProcessors;

/// <summary>
/// Adds the template's special tokens around an encoded sequence when the caller asks for
/// special tokens (HF <c>post_process</c> with <c>add_special_tokens = true</c>). Only single
/// sequences are encoded here, so only the "single" template is used.
/// </summary>
internal sealed class PostProcessor
{
    private readonly int[] _prefix;
    private readonly int[] _suffix;

    private PostProcessor(int[] prefix, int[] suffix)
    {
        _prefix = prefix;
        _suffix = suffix;
    }

    public void Apply(List<int> ids)
    {
        ids.InsertRange(0, _prefix);
        ids.AddRange(_suffix);
    }

    /// <summary>Null when the file has no post-processor or one that adds nothing (ByteLevel).</summary>
    public static PostProcessor? Parse(JsonElement? json, string path)
    {
        if (json is not { } j) return null;
        var type = TokenizerJson.Type(j, path);
        switch (type)
        {
            case "ByteLevel":
                // Only trims offsets, which this tokenizer does not produce.
                return null;
            case "TemplateProcessing":
                return ParseTemplate(j, path);
            case "RobertaProcessing":
            case "BertProcessing":
                return new PostProcessor([SpecialId(j, "cls", path)], [SpecialId(j, "sep", path)]);
            case "Sequence":
                var prefix = new List<int>();
                var suffix = new List<int>();
                int i = 0;
                foreach (var p in TokenizerJson.Array(j, "processors", path).EnumerateArray())
                {
                    if (Parse(p, $"{path}.processors[{i++}]") is { } inner)
                    {
                        prefix.InsertRange(0, inner._prefix);
                        suffix.AddRange(inner._suffix);
                    }
                }
                return prefix.Count + suffix.Count == 0 ? null : new PostProcessor(prefix.ToArray(), suffix.ToArray());
            default:
                throw new TokenizerLoadException($"Post-processor type '{type}' at '{path}' is not supported.");
        }
    }

    /// <summary>Bert/Roberta store special tokens as ["[CLS]", 101].</summary>
    private static int SpecialId(JsonElement json, string name, string path)
    {
        var pair = TokenizerJson.Required(json, name, path);
        if (pair.ValueKind != JsonValueKind.Array || pair.GetArrayLength() != 2)
            throw new TokenizerLoadException($"'{path}.{name}' must be a [token, id] pair.");
        return TokenizerJson.AsInt(pair[1], $"{path}.{name}[1]");
    }

    private static PostProcessor ParseTemplate(JsonElement json, string path)
    {
        var specialTokens = new Dictionary<string, int[]>(StringComparer.Ordinal);
        if (TokenizerJson.Optional(json, "special_tokens") is { } map)
        {
            foreach (var entry in TokenizerJson.Object(map, $"{path}.special_tokens").EnumerateObject())
            {
                var p = $"{path}.special_tokens[\"{entry.Name}\"]";
                specialTokens[entry.Name] = TokenizerJson.Array(entry.Value, "ids", p).EnumerateArray()
                    .Select((v, k) => TokenizerJson.AsInt(v, $"{p}.ids[{k}]")).ToArray();
            }
        }

        var prefix = new List<int>();
        var suffix = new List<int>();
        bool seenSequence = false;
        int i = 0;
        foreach (var piece in TokenizerJson.Array(json, "single", path).EnumerateArray())
        {
            var p = $"{path}.single[{i++}]";
            if (TokenizerJson.Optional(piece, "Sequence") is not null)
            {
                seenSequence = true;
                continue;
            }
            var special = TokenizerJson.Required(piece, "SpecialToken", p);
            var id = TokenizerJson.String(special, "id", $"{p}.SpecialToken");
            if (!specialTokens.TryGetValue(id, out var ids))
                throw new TokenizerLoadException($"'{p}' refers to special token '{id}', which is not in '{path}.special_tokens'.");
            (seenSequence ? suffix : prefix).AddRange(ids);
        }
        return new PostProcessor(prefix.ToArray(), suffix.ToArray());
    }
}
