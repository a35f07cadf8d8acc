using System.Collections.Concurrent;
using System.Globalization;
using System.Text;
using System.Text.Json;

namespace Celer.Tokenization;

/// <summary>
/// HF's Unigram model (models/unigram/model.rs, 0.22), SentencePiece's unigram language model as XLM-RoBERTa, T5, mT5,
/// bge-m3 and multilingual-e5 use it: each word is cut by Viterbi into the pieces whose scores (log probabilities) add
/// up highest. A character no piece starts with exactly is an unknown node scored <c>min score − 10</c>; adjacent unknown
/// nodes are fused into one token (HF always fuses), which becomes its <c>&lt;0xNN&gt;</c> bytes with
/// <c>byte_fallback</c> when all of them exist, else the unk id.
/// </summary>
/// <remarks>
/// Exactly as HF's <c>encode_optimized</c>: positions are visited left to right, and a node keeps a new best path only
/// if its score is strictly higher, so ties go to the path found first (the longer piece from the earlier start). The
/// scores are read the way serde_json reads them (<see cref="SerdeJsonFloat"/>), not correctly rounded, because a tie
/// or a near-tie can turn on the last bit.
/// </remarks>
internal sealed class UnigramModel : TokenizerModel
{
    private const double UnkPenalty = 10.0;
    private const int MaxCachedWordLength = 256;
    private const int CacheCapacity = 10_000;

    private readonly string[] _pieces;
    private readonly double[] _scores;
    private readonly Dictionary<string, int> _vocab;
    private readonly Dictionary<string, int>.AlternateLookup<ReadOnlySpan<char>> _lookup;
    private readonly PieceTrie _trie;
    private readonly int? _unkId;
    private readonly double _unkScore;
    private readonly int[]? _byteTokenIds;
    private readonly ConcurrentDictionary<string, int[]> _cache = new(StringComparer.Ordinal);

    private UnigramModel(string[] pieces, double[] scores, int? unkId, bool byteFallback)
    {
        _pieces = pieces;
        _scores = scores;
        _unkId = unkId;
        // A repeated piece keeps the later id, as HF's map insert does; every id still decodes to its own piece.
        _vocab = new Dictionary<string, int>(pieces.Length, StringComparer.Ordinal);
        double minScore = double.PositiveInfinity;
        for (int id = 0; id < pieces.Length; id++)
        {
            _vocab[pieces[id]] = id;
            minScore = Math.Min(minScore, scores[id]);
        }
        _lookup = _vocab.GetAlternateLookup<ReadOnlySpan<char>>();
        _unkScore = minScore - UnkPenalty;
        _trie = new PieceTrie(_vocab);
        if (byteFallback)
        {
            var ids = new int[256];
            for (int b = 0; b < 256; b++)
                ids[b] = _vocab.TryGetValue(string.Create(CultureInfo.InvariantCulture, $"<0x{b:X2}>"), out int id) ? id : -1;
            _byteTokenIds = ids;
        }
    }

    public override IReadOnlyDictionary<string, int> Vocab => _vocab;

    public override IEnumerable<KeyValuePair<string, int>> IdsAndTokens =>
        _pieces.Select((piece, id) => new KeyValuePair<string, int>(piece, id));

    /// <summary>
    /// <c>vocab</c> is a list of <c>[piece, score]</c> pairs whose index is the id; <c>unk_id</c> (null or absent: none)
    /// must be an index of it; <c>byte_fallback</c> defaults to false.
    /// </summary>
    public static UnigramModel Parse(JsonElement model, string path)
    {
        var vocabJson = TokenizerJson.Array(model, "vocab", path);
        int n = vocabJson.GetArrayLength();
        var pieces = new string[n];
        var scores = new double[n];
        int i = 0;
        foreach (var entry in vocabJson.EnumerateArray())
        {
            var p = $"{path}.vocab[{i}]";
            if (entry.ValueKind != JsonValueKind.Array || entry.GetArrayLength() != 2)
                throw new TokenizerLoadException($"'{p}' must be a [piece, score] pair.");
            pieces[i] = TokenizerJson.AsString(entry[0], $"{p}[0]");
            if (entry[1].ValueKind != JsonValueKind.Number)
                throw new TokenizerLoadException($"'{p}[1]' must be a number, found {entry[1].ValueKind}.");
            scores[i] = SerdeJsonFloat.Parse(entry[1].GetRawText())
                ?? throw new TokenizerLoadException($"'{p}[1]' is out of the range of a 64-bit float.");
            i++;
        }

        int? unkId = null;
        if (TokenizerJson.Optional(model, "unk_id") is { } unk)
        {
            if (unk.ValueKind != JsonValueKind.Number || !unk.TryGetInt32(out int u) || u < 0)
                throw new TokenizerLoadException($"'{path}.unk_id' must be a non-negative integer or null.");
            if (n == 0) throw new TokenizerLoadException($"'{path}.vocab' is empty but unk_id is set: it needs at least the unk piece.");
            if (u >= n) throw new TokenizerLoadException($"'{path}.unk_id' {u} is not an index of the vocabulary ({n} pieces).");
            unkId = u;
        }
        return new UnigramModel(pieces, scores, unkId, TokenizerJson.Bool(model, "byte_fallback", path, false));
    }

    public override void Tokenize(string word, List<int> output)
    {
        if (word.Length == 0) return;
        if (_cache.TryGetValue(word, out var cached))
        {
            output.AddRange(cached);
            return;
        }
        var ids = new List<int>();
        Encode(word, ids);
        if (word.Length < MaxCachedWordLength && _cache.Count < CacheCapacity) _cache.TryAdd(word, [.. ids]);
        output.AddRange(ids);
    }

    /// <summary>Viterbi over the word, then each token's id (HF's <c>encode</c> followed by <c>tokenize</c>).</summary>
    private void Encode(string word, List<int> output)
    {
        int size = word.Length;
        // The best path ending at each position: its score, where its last token starts (-1: none yet) and that
        // token's id. Positions are UTF-16 offsets at code point boundaries, as HF's are UTF-8 offsets at char boundaries.
        var score = new double[size + 1];
        var startsAt = new int[size + 1];
        var nodeId = new int[size + 1];
        Array.Fill(startsAt, -1);
        var matches = new List<(int Length, int Id)>();
        for (int start = 0; start < size; )
        {
            double tillHere = score[start];
            int charLength = char.IsHighSurrogate(word[start]) && start + 1 < size && char.IsLowSurrogate(word[start + 1]) ? 2 : 1;
            bool hasSingleNode = false;
            matches.Clear();
            _trie.PrefixMatches(word.AsSpan(start), matches);
            foreach (var (length, id) in matches)
            {
                int end = start + length;
                double candidate = _scores[id] + tillHere;
                if (startsAt[end] < 0 || candidate > score[end])
                {
                    score[end] = candidate;
                    startsAt[end] = start;
                    nodeId[end] = id;
                }
                hasSingleNode |= length == charLength;
            }
            if (!hasSingleNode)
            {
                int end = start + charLength;
                double candidate = _unkScore + tillHere;
                if (startsAt[end] < 0 || candidate > score[end])
                {
                    score[end] = candidate;
                    startsAt[end] = start;
                    nodeId[end] = _unkId ?? throw MissingUnk(word);
                }
            }
            start += charLength;
        }

        // Back from the end; runs of unknown nodes (any node with the unk id) become one token.
        var tokens = new List<(int Start, int End)>();
        int fusedStart = -1, fusedEnd = -1;
        for (int end = size; end > 0; )
        {
            int start = startsAt[end];
            if (_unkId is { } unk && nodeId[end] == unk)
            {
                if (fusedStart < 0) fusedEnd = end;
                fusedStart = start;
            }
            else
            {
                if (fusedStart >= 0)
                {
                    tokens.Add((fusedStart, fusedEnd));
                    fusedStart = -1;
                }
                tokens.Add((start, end));
            }
            end = start;
        }
        if (fusedStart >= 0) tokens.Add((fusedStart, fusedEnd));

        for (int t = tokens.Count - 1; t >= 0; t--)
        {
            var piece = word.AsSpan(tokens[t].Start, tokens[t].End - tokens[t].Start);
            if (_lookup.TryGetValue(piece, out int id))
            {
                output.Add(id);
                continue;
            }
            if (_byteTokenIds is { } byteIds && AppendBytes(piece, byteIds, output)) continue;
            output.Add(_unkId ?? throw MissingUnk(word));
        }
    }

    /// <summary>The piece's UTF-8 bytes as byte tokens, if the vocabulary has every one of them.</summary>
    private static bool AppendBytes(ReadOnlySpan<char> piece, int[] byteIds, List<int> output)
    {
        int length = Encoding.UTF8.GetByteCount(piece);
        Span<byte> bytes = length <= 256 ? stackalloc byte[length] : new byte[length];
        Encoding.UTF8.GetBytes(piece, bytes);
        foreach (byte b in bytes)
            if (byteIds[b] < 0) return false;
        foreach (byte b in bytes) output.Add(byteIds[b]);
        return true;
    }

    private static InvalidOperationException MissingUnk(string word) => new(
        $"Unigram needs an unk token for an unknown character in '{word}', but the model has no unk_id.");

    /// <summary>
    /// The pieces in a prefix tree over UTF-16 code units, children of a node stored together and sorted, so that all
    /// pieces starting at a position are found in one walk (HF walks a byte trie; over valid text the matches are the
    /// same).
    /// </summary>
    private sealed class PieceTrie
    {
        private readonly char[] _labels;
        private readonly int[] _firstChild;
        private readonly int[] _childCount;
        private readonly int[] _ids;

        public PieceTrie(Dictionary<string, int> pieces)
        {
            var keys = pieces.Keys.Where(k => k.Length > 0).ToArray();
            Array.Sort(keys, StringComparer.Ordinal);
            var labels = new List<char> { '\0' };
            var firstChild = new List<int> { 0 };
            var childCount = new List<int> { 0 };
            var ids = new List<int> { -1 };
            // Breadth first: node, its keys [from, to) (sorted, all sharing the node's prefix), depth.
            var queue = new Queue<(int Node, int From, int To, int Depth)>();
            queue.Enqueue((0, 0, keys.Length, 0));
            while (queue.TryDequeue(out var item))
            {
                int from = item.From;
                // A key that ends here sorts before the longer ones that share its prefix.
                if (from < item.To && keys[from].Length == item.Depth)
                {
                    ids[item.Node] = pieces[keys[from]];
                    from++;
                }
                firstChild[item.Node] = labels.Count;
                int children = 0;
                for (int i = from; i < item.To; )
                {
                    char c = keys[i][item.Depth];
                    int j = i + 1;
                    while (j < item.To && keys[j][item.Depth] == c) j++;
                    int child = labels.Count;
                    labels.Add(c);
                    firstChild.Add(0);
                    childCount.Add(0);
                    ids.Add(-1);
                    queue.Enqueue((child, i, j, item.Depth + 1));
                    children++;
                    i = j;
                }
                childCount[item.Node] = children;
            }
            _labels = [.. labels];
            _firstChild = [.. firstChild];
            _childCount = [.. childCount];
            _ids = [.. ids];
        }

        /// <summary>Every piece that <paramref name="text"/> starts with, shortest first, as (length, id).</summary>
        public void PrefixMatches(ReadOnlySpan<char> text, List<(int Length, int Id)> matches)
        {
            int node = 0;
            for (int i = 0; i < text.Length; i++)
            {
                node = Child(node, text[i]);
                if (node < 0) return;
                if (_ids[node] >= 0) matches.Add((i + 1, _ids[node]));
            }
        }

        private int Child(int node, char c)
        {
            int lo = _firstChild[node], hi = lo + _childCount[node] - 1;
            while (lo <= hi)
            {
                int mid = (lo + hi) >>> 1;
                char label = _labels[mid];
                if (label == c) return mid;
                if (label < c) lo = mid + 1;
                else hi = mid - 1;
            }
            return -1;
        }
    }
}

/// <summary>
/// A JSON number read as serde_json (1.0, without its <c>float_roundtrip</c> feature) reads it into an f64, which is
/// how HF tokenizers gets Unigram scores: the decimal digits are gathered into a u64 (digits past its range are
/// dropped), converted to the nearest double, then multiplied or divided by the double nearest 10^|exponent|. That is
/// one rounding too many for 17-digit scores: about a quarter of T5's differ from the correctly rounded value in the
/// last bit.
/// </summary>
internal static class SerdeJsonFloat
{
    private static readonly double[] Pow10 = Enumerable.Range(0, 309)
        .Select(e => double.Parse($"1e{e}", NumberStyles.Float, CultureInfo.InvariantCulture)).ToArray();

    /// <summary>The f64 serde_json gives for a valid JSON number's text; null where it reports "number out of range".</summary>
    public static double? Parse(string text)
    {
        int i = 0;
        bool positive = true;
        if (text[i] == '-')
        {
            positive = false;
            i++;
        }
        ulong significand = 0;
        int exponent = 0;
        bool isInteger = true;
        // Integer part. Past u64's range, further integer digits only scale (parse_long_integer).
        bool overflowed = false;
        for (; i < text.Length && char.IsAsciiDigit(text[i]); i++)
        {
            ulong digit = (ulong)(text[i] - '0');
            if (overflowed || Overflows(significand, digit))
            {
                overflowed = true;
                isInteger = false;
                exponent++;
            }
            else
            {
                significand = significand * 10 + digit;
            }
        }
        if (i < text.Length && text[i] == '.')
        {
            isInteger = false;
            i++;
            // Fraction digits count until the significand would overflow; the rest are dropped (parse_decimal_overflow).
            bool dropping = false;
            for (; i < text.Length && char.IsAsciiDigit(text[i]); i++)
            {
                ulong digit = (ulong)(text[i] - '0');
                if (dropping || Overflows(significand, digit))
                {
                    dropping = true;
                    continue;
                }
                significand = significand * 10 + digit;
                exponent--;
            }
        }
        if (i < text.Length && text[i] is 'e' or 'E')
        {
            isInteger = false;
            i++;
            bool positiveExponent = true;
            if (text[i] is '+' or '-')
            {
                positiveExponent = text[i] == '+';
                i++;
            }
            int value = 0;
            for (; i < text.Length && char.IsAsciiDigit(text[i]); i++)
            {
                int digit = text[i] - '0';
                if (value > int.MaxValue / 10 || (value == int.MaxValue / 10 && digit > int.MaxValue % 10))
                {
                    // parse_exponent_overflow: a zero significand or a huge negative exponent is zero, else out of range.
                    if (significand == 0 || !positiveExponent) return positive ? 0.0 : -0.0;
                    return null;
                }
                value = value * 10 + digit;
            }
            exponent = positiveExponent ? SaturatingAdd(exponent, value) : SaturatingAdd(exponent, -(long)value);
        }
        if (isInteger)
        {
            // u64 and i64 values convert to the nearest double; "-0" is -0.0.
            return positive ? significand : significand == 0 ? -0.0 : -(double)significand;
        }
        return FromParts(positive, significand, exponent);
    }

    private static bool Overflows(ulong significand, ulong digit) =>
        significand >= ulong.MaxValue / 10 && (significand > ulong.MaxValue / 10 || digit > ulong.MaxValue % 10);

    private static int SaturatingAdd(int a, long b) => (int)Math.Clamp(a + b, int.MinValue, int.MaxValue);

    private static double? FromParts(bool positive, ulong significand, int exponent)
    {
        double f = significand;
        while (true)
        {
            long magnitude = Math.Abs((long)exponent);
            if (magnitude < Pow10.Length)
            {
                if (exponent >= 0)
                {
                    f *= Pow10[magnitude];
                    if (double.IsInfinity(f)) return null;
                }
                else
                {
                    f /= Pow10[magnitude];
                }
                break;
            }
            if (f == 0) break;
            if (exponent >= 0) return null;
            f /= 1e308;
            exponent += 308;
        }
        return positive ? f : -f;
    }
}
