using System.Text.Json;

namespace Celer.Tokenization.PostProcessors;

/// <summary>
/// One piece of a post-processing template: an input sequence (<see cref="Sequence"/> 0 for A, 1 for B) or a special
/// token's ids (<see cref="SpecialIds"/>), and the token type id its tokens get.
/// </summary>
internal readonly record struct TemplatePiece(int Sequence, int[] SpecialIds, int TypeId)
{
    public const int A = 0, B = 1, Special = -1;
}

/// <summary>
/// HF's post-processor, which frames the encoded sequence (or pair) with special tokens and gives each token its type
/// id. Every kind HF has is one template for a single sequence and one for a pair, as in HF's TemplateProcessing:
/// <list type="bullet">
/// <item><c>BertProcessing</c>: <c>[CLS] A [SEP]</c>, pair <c>[CLS] A [SEP] B [SEP]</c>, type id 1 from B on.</item>
/// <item><c>RobertaProcessing</c>: <c>&lt;s&gt; A &lt;/s&gt;</c>, pair <c>&lt;s&gt; A &lt;/s&gt;&lt;/s&gt; B &lt;/s&gt;</c>, type ids all 0.
/// Its <c>trim_offsets</c> and <c>add_prefix_space</c> only move offsets, which this tokenizer does not produce.</item>
/// <item><c>TemplateProcessing</c>: the file's <c>single</c> and <c>pair</c> templates.</item>
/// <item><c>ByteLevel</c> only trims offsets: no post-processor.</item>
/// </list>
/// Without special tokens the sequences keep the template's type ids (HF applies the template with the special
/// pieces left out); with no post-processor at all, A has type id 0 and B type id 1.
/// </summary>
internal sealed class PostProcessor
{
    private readonly TemplatePiece[] _single;
    private readonly TemplatePiece[]? _pair;
    private readonly string? _noPairReason;

    // The single template as [prefix] A [suffix], the shape every real file has: Encode's path.
    private readonly int[]? _prefix;
    private readonly int[]? _suffix;

    private PostProcessor(TemplatePiece[] single, TemplatePiece[]? pair, string? noPairReason = null)
    {
        _single = single;
        _pair = pair;
        _noPairReason = noPairReason;
        int sequences = single.Count(p => p.Sequence != TemplatePiece.Special);
        if (sequences == 1 && single.All(p => p.Sequence is TemplatePiece.Special or TemplatePiece.A))
        {
            int at = Array.FindIndex(single, p => p.Sequence == TemplatePiece.A);
            _prefix = [.. single[..at].SelectMany(p => p.SpecialIds)];
            _suffix = [.. single[(at + 1)..].SelectMany(p => p.SpecialIds)];
        }
    }

    /// <summary>No post-processor: A (type id 0), then B (type id 1), nothing added.</summary>
    public static PostProcessor Default { get; } = new(
        [new(TemplatePiece.A, [], 0)], [new(TemplatePiece.A, [], 0), new(TemplatePiece.B, [], 1)]);

    /// <summary>Adds the single template's special tokens around <paramref name="ids"/> (add_special_tokens = true).</summary>
    public void Apply(List<int> ids)
    {
        if (_prefix is not null)
        {
            ids.InsertRange(0, _prefix);
            ids.AddRange(_suffix!);
            return;
        }
        var sequence = ids.ToList();
        ids.Clear();
        Process(sequence, null, addSpecialTokens: true, ids, null);
    }

    /// <summary>
    /// Writes the final ids (and, when asked, token type ids) for sequence <paramref name="a"/> and the optional pair
    /// <paramref name="b"/>, as HF's <c>post_process</c> does after truncation.
    /// </summary>
    public void Process(List<int> a, List<int>? b, bool addSpecialTokens, List<int> ids, List<int>? typeIds)
    {
        var template = b is null ? _single : _pair ?? throw new NotSupportedException(_noPairReason);
        foreach (var piece in template)
        {
            if (piece.Sequence == TemplatePiece.Special && !addSpecialTokens) continue;
            var source = piece.Sequence switch
            {
                TemplatePiece.Special => piece.SpecialIds,
                TemplatePiece.A => (IReadOnlyList<int>)a,
                _ => b ?? throw new InvalidOperationException("The single-sequence template refers to sequence B."),
            };
            ids.AddRange(source);
            typeIds?.AddRange(Enumerable.Repeat(piece.TypeId, source.Count));
        }
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
            case "BertProcessing":
            {
                int[] cls = [SpecialId(j, "cls", path)], sep = [SpecialId(j, "sep", path)];
                return new PostProcessor(
                    [new(TemplatePiece.Special, cls, 0), new(TemplatePiece.A, [], 0), new(TemplatePiece.Special, sep, 0)],
                    [new(TemplatePiece.Special, cls, 0), new(TemplatePiece.A, [], 0), new(TemplatePiece.Special, sep, 0),
                        new(TemplatePiece.B, [], 1), new(TemplatePiece.Special, sep, 1)]);
            }
            case "RobertaProcessing":
            {
                int[] cls = [SpecialId(j, "cls", path)], sep = [SpecialId(j, "sep", path)];
                // Read so that a malformed file fails here, as in HF; neither changes ids or type ids.
                TokenizerJson.Bool(j, "trim_offsets", path, true);
                TokenizerJson.Bool(j, "add_prefix_space", path, true);
                return new PostProcessor(
                    [new(TemplatePiece.Special, cls, 0), new(TemplatePiece.A, [], 0), new(TemplatePiece.Special, sep, 0)],
                    [new(TemplatePiece.Special, cls, 0), new(TemplatePiece.A, [], 0), new(TemplatePiece.Special, sep, 0),
                        new(TemplatePiece.Special, sep, 0), new(TemplatePiece.B, [], 0), new(TemplatePiece.Special, sep, 0)]);
            }
            case "Sequence":
                return ParseSequence(j, path);
            default:
                throw new TokenizerLoadException($"Post-processor type '{type}' at '{path}' is not supported.");
        }
    }

    /// <summary>
    /// HF runs each processor of a Sequence on the previous one's output. With one processor that adds tokens (Llama 3:
    /// ByteLevel + TemplateProcessing) that is its template. Several nest around a single sequence; for a pair HF itself
    /// fails (a template's output is one encoding per piece), so pairs are refused.
    /// </summary>
    private static PostProcessor? ParseSequence(JsonElement json, string path)
    {
        var inner = TokenizerJson.Array(json, "processors", path).EnumerateArray()
            .Select((p, i) => Parse(p, $"{path}.processors[{i}]")).OfType<PostProcessor>().ToList();
        if (inner.Count <= 1) return inner.FirstOrDefault();
        var prefix = new List<int>();
        var suffix = new List<int>();
        foreach (var p in inner)
        {
            // A template without A (none in practice) contributes all its tokens in front.
            prefix.InsertRange(0, p._prefix ?? [.. p._single.SelectMany(piece => piece.SpecialIds)]);
            suffix.AddRange(p._suffix ?? []);
        }
        return new PostProcessor(
            [new(TemplatePiece.Special, [.. prefix], 0), new(TemplatePiece.A, [], 0), new(TemplatePiece.Special, [.. suffix], 0)],
            pair: null, $"'{path}' has several post-processors that add tokens; HF cannot apply them to a pair either.");
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

        var single = ParsePieces(json, "single", path, specialTokens);
        // A file without "pair" gets HF's builder default, "$A:0 $B:1".
        var pair = TokenizerJson.Optional(json, "pair") is null
            ? [new(TemplatePiece.A, [], 0), new(TemplatePiece.B, [], 1)]
            : ParsePieces(json, "pair", path, specialTokens);
        return new PostProcessor(single, pair);
    }

    /// <summary>Pieces are <c>{"SpecialToken": {"id", "type_id"}}</c> or <c>{"Sequence": {"id": "A"|"B", "type_id"}}</c>.</summary>
    private static TemplatePiece[] ParsePieces(JsonElement json, string name, string path, Dictionary<string, int[]> specialTokens)
    {
        var pieces = new List<TemplatePiece>();
        int i = 0;
        foreach (var piece in TokenizerJson.Array(json, name, path).EnumerateArray())
        {
            var p = $"{path}.{name}[{i++}]";
            if (TokenizerJson.Optional(piece, "Sequence") is { } sequence)
            {
                var id = TokenizerJson.String(sequence, "id", $"{p}.Sequence");
                int which = id switch
                {
                    "A" => TemplatePiece.A,
                    "B" => TemplatePiece.B,
                    _ => throw new TokenizerLoadException($"'{p}.Sequence.id' must be \"A\" or \"B\", found '{id}'."),
                };
                pieces.Add(new(which, [], TypeId(sequence, $"{p}.Sequence")));
                continue;
            }
            var special = TokenizerJson.Required(piece, "SpecialToken", p);
            var token = TokenizerJson.String(special, "id", $"{p}.SpecialToken");
            if (!specialTokens.TryGetValue(token, out var ids))
                throw new TokenizerLoadException($"'{p}' refers to special token '{token}', which is not in '{path}.special_tokens'.");
            pieces.Add(new(TemplatePiece.Special, ids, TypeId(special, $"{p}.SpecialToken")));
        }
        return [.. pieces];
    }

    private static int TypeId(JsonElement piece, string path)
    {
        int typeId = TokenizerJson.Int(piece, "type_id", path, 0);
        return typeId >= 0 ? typeId : throw new TokenizerLoadException($"'{path}.type_id' must not be negative.");
    }
}
