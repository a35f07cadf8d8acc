using System.Text.Json;
using Celer.Tokenization.Normalizers;

namespace Celer.Tokenization;

/// <summary>
/// Added tokens (special or not) are cut out of the text before normalization and the model run,
/// as in HF: tokens with <c>normalized: false</c> are matched on the raw input, the others on each
/// normalized piece. Matching is leftmost-longest, like HF's Aho-Corasick automaton.
/// </summary>
internal sealed class AddedVocabulary
{
    private readonly Trie _rawTrie = new();
    private readonly Trie _normalizedTrie = new();

    public AddedVocabulary(IReadOnlyList<AddedToken> tokens, Normalizer? normalizer)
    {
        Tokens = tokens;
        foreach (var t in tokens)
        {
            if (t.Content.Length == 0) continue;
            if (t.Normalized) _normalizedTrie.Add(normalizer?.Normalize(t.Content) ?? t.Content, t);
            else _rawTrie.Add(t.Content, t);
        }
    }

    public IReadOnlyList<AddedToken> Tokens { get; }

    public static List<AddedToken> Parse(JsonElement? json, string path)
    {
        var tokens = new List<AddedToken>();
        if (json is not { } array) return tokens;
        if (array.ValueKind != JsonValueKind.Array) throw new TokenizerLoadException($"'{path}' must be an array.");
        int i = 0;
        foreach (var t in array.EnumerateArray())
        {
            var p = $"{path}[{i++}]";
            TokenizerJson.Object(t, p);
            int id = TokenizerJson.AsInt(TokenizerJson.Required(t, "id", p), $"{p}.id");
            if (id < 0) throw new TokenizerLoadException($"'{p}.id' is negative.");
            tokens.Add(new AddedToken(id, TokenizerJson.String(t, "content", p),
                Special: TokenizerJson.Bool(t, "special", p, false),
                SingleWord: TokenizerJson.Bool(t, "single_word", p, false),
                LStrip: TokenizerJson.Bool(t, "lstrip", p, false),
                RStrip: TokenizerJson.Bool(t, "rstrip", p, false),
                Normalized: TokenizerJson.Bool(t, "normalized", p, true)));
        }
        return tokens;
    }

    /// <summary>Splits raw input on the non-normalized added tokens.</summary>
    public void SplitRaw(string text, List<Segment> output) => Split(text, atStart: true, _rawTrie, output);

    /// <summary>Splits a normalized piece on the normalized added tokens.</summary>
    public void SplitNormalized(string text, bool atStart, List<Segment> output) => Split(text, atStart, _normalizedTrie, output);

    /// <summary>A piece of text, or an added token (<see cref="Token"/> non-null).</summary>
    internal readonly record struct Segment(string Text, AddedToken? Token, bool AtStart);

    private static void Split(string text, bool atStart, Trie trie, List<Segment> output)
    {
        int pieceStart = 0;
        int pos = 0;
        while (pos < text.Length)
        {
            if (trie.LongestMatch(text, pos) is not var (token, matchEnd))
            {
                pos++;
                continue;
            }
            int start = pos, stop = matchEnd;
            // Scanning resumes after the match whether or not it is kept, like Aho-Corasick's
            // non-overlapping iterator.
            pos = matchEnd;
            if (token.SingleWord)
            {
                bool spaceBefore = start == 0 || !IsWordChar(text, start - 1, before: true);
                bool spaceAfter = stop == text.Length || !IsWordChar(text, stop, before: false);
                if (!spaceBefore || !spaceAfter) continue;
            }
            if (token.LStrip)
            {
                int s = start;
                while (s > pieceStart && char.IsWhiteSpace(text[s - 1])) s--;
                start = s;
            }
            if (token.RStrip)
            {
                while (stop < text.Length && char.IsWhiteSpace(text[stop])) stop++;
                pos = stop;
            }
            if (pieceStart < start) output.Add(new Segment(text[pieceStart..start], null, atStart && pieceStart == 0));
            output.Add(new Segment(text[start..stop], token, atStart && start == 0));
            pieceStart = stop;
        }
        if (pieceStart < text.Length) output.Add(new Segment(text[pieceStart..], null, atStart && pieceStart == 0));
    }

    /// <summary>Rust's <c>char::is_alphanumeric</c> on the character before/after an index.</summary>
    private static bool IsWordChar(string text, int index, bool before)
    {
        if (before && index > 0 && char.IsLowSurrogate(text[index]) && char.IsHighSurrogate(text[index - 1]))
            return char.IsLetterOrDigit(text, index - 1);
        return char.IsLetterOrDigit(text, index);
    }

    /// <summary>Prefix tree over UTF-16 code units; at a position, the longest added token wins.</summary>
    private sealed class Trie
    {
        private readonly Node _root = new();

        public void Add(string content, AddedToken token)
        {
            var node = _root;
            foreach (var c in content)
            {
                node.Children ??= [];
                if (!node.Children.TryGetValue(c, out var child)) node.Children[c] = child = new Node();
                node = child;
            }
            // The first entry for a content wins, as HF keeps one id per content.
            node.Token ??= token;
        }

        public (AddedToken Token, int End)? LongestMatch(string text, int start)
        {
            (AddedToken, int)? best = null;
            var node = _root;
            for (int i = start; i < text.Length; i++)
            {
                if (node.Children is null || !node.Children.TryGetValue(text[i], out node)) break;
                if (node.Token is { } t) best = (t, i + 1);
            }
            return best;
        }

        private sealed class Node
        {
            public Dictionary<char, Node>? Children;
            public AddedToken? Token;
        }
    }
}
