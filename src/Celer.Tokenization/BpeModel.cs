using System.Collections.Concurrent;
using System.Globalization;
using System.Text.Json;

namespace Celer.Tokenization;

/// <summary>
/// HF's BPE model: a word is split into characters (unknown ones become byte-fallback
/// <c>&lt;0xNN&gt;</c> tokens or the unk token), then the adjacent pair with the lowest merge
/// rank is merged, leftmost first, until no pair has a merge. Results are cached per word.
/// </summary>
internal sealed class BpeModel : TokenizerModel
{
    // HF caches words this short; a long whitespace-free run (Gemma has no pre-tokenizer
    // splitting) is not worth keeping.
    private const int MaxCachedWordLength = 256;
    private const int CacheCapacity = 10_000;

    private readonly Dictionary<string, int> _vocab;
    private readonly Dictionary<long, (int Rank, int NewId)> _merges;
    private readonly int? _unkId;
    private readonly bool _fuseUnk;
    private readonly bool _byteFallback;
    private readonly bool _ignoreMerges;
    private readonly int[]? _byteTokenIds;
    private readonly ConcurrentDictionary<string, int[]> _cache = new(StringComparer.Ordinal);

    private BpeModel(Dictionary<string, int> vocab, Dictionary<long, (int, int)> merges, int? unkId, bool fuseUnk, bool byteFallback, bool ignoreMerges)
    {
        _vocab = vocab;
        _merges = merges;
        _unkId = unkId;
        _fuseUnk = fuseUnk;
        _byteFallback = byteFallback;
        _ignoreMerges = ignoreMerges;
        if (byteFallback)
        {
            // Byte fallback applies only if all 256 <0xNN> tokens exist (HF checks per char, with
            // the same effect: a missing byte token means the char goes to unk).
            var ids = new int[256];
            for (int b = 0; b < 256; b++)
                ids[b] = vocab.TryGetValue(string.Create(CultureInfo.InvariantCulture, $"<0x{b:X2}>"), out var id) ? id : -1;
            _byteTokenIds = ids;
        }
    }

    public override IReadOnlyDictionary<string, int> Vocab => _vocab;

    public static BpeModel Parse(JsonElement model, string path)
    {
        if (TokenizerJson.Optional(model, "dropout") is { } dropout && (dropout.ValueKind != JsonValueKind.Number || dropout.GetDouble() != 0))
            throw new TokenizerLoadException($"'{path}.dropout' must be null or 0: BPE dropout is a training-time randomization.");
        foreach (var affix in new[] { "continuing_subword_prefix", "end_of_word_suffix" })
            if (!string.IsNullOrEmpty(TokenizerJson.OptionalString(model, affix, path)))
                throw new TokenizerLoadException($"'{path}.{affix}' is not supported.");

        var vocab = ParseVocab(model, path);

        var merges = new Dictionary<long, (int, int)>();
        int rank = 0;
        foreach (var merge in TokenizerJson.Array(model, "merges", path).EnumerateArray())
        {
            var (a, b) = ParseMerge(merge, $"{path}.merges[{rank}]");
            int aId = LookUp(vocab, a, path), bId = LookUp(vocab, b, path), newId = LookUp(vocab, a + b, path);
            // Like HF's HashMap collect, a repeated pair keeps the later rank.
            merges[Key(aId, bId)] = (rank, newId);
            rank++;
        }

        int? unkId = null;
        if (TokenizerJson.OptionalString(model, "unk_token", path) is { } unk)
            unkId = vocab.TryGetValue(unk, out var u) ? u : throw new TokenizerLoadException($"'{path}.unk_token' '{unk}' is not in the vocabulary.");
        return new BpeModel(vocab, merges, unkId,
            TokenizerJson.Bool(model, "fuse_unk", path, false),
            TokenizerJson.Bool(model, "byte_fallback", path, false),
            TokenizerJson.Bool(model, "ignore_merges", path, false));
    }

    /// <summary>Merges come as "a b" strings (older files) or ["a", "b"] pairs (newer files).</summary>
    private static (string, string) ParseMerge(JsonElement merge, string path)
    {
        if (merge.ValueKind == JsonValueKind.String)
        {
            var parts = merge.GetString()!.Split(' ');
            if (parts.Length != 2) throw new TokenizerLoadException($"'{path}' must be two tokens separated by one space, found '{merge.GetString()}'.");
            return (parts[0], parts[1]);
        }
        if (merge.ValueKind == JsonValueKind.Array && merge.GetArrayLength() == 2)
            return (TokenizerJson.AsString(merge[0], $"{path}[0]"), TokenizerJson.AsString(merge[1], $"{path}[1]"));
        throw new TokenizerLoadException($"'{path}' must be a \"a b\" string or a [\"a\", \"b\"] pair.");
    }

    private static int LookUp(Dictionary<string, int> vocab, string token, string path) =>
        vocab.TryGetValue(token, out var id) ? id : throw new TokenizerLoadException($"'{path}.merges' uses '{token}', which is not in the vocabulary.");

    private static long Key(int a, int b) => ((long)a << 32) | (uint)b;

    /// <summary>Token ids for one pre-tokenized word.</summary>
    public override void Tokenize(string word, List<int> output)
    {
        if (word.Length == 0) return;
        if (_ignoreMerges && _vocab.TryGetValue(word, out var whole))
        {
            output.Add(whole);
            return;
        }
        if (_cache.TryGetValue(word, out var cached))
        {
            output.AddRange(cached);
            return;
        }
        var ids = MergeWord(word);
        if (word.Length < MaxCachedWordLength && _cache.Count < CacheCapacity) _cache.TryAdd(word, ids);
        output.AddRange(ids);
    }

    private int[] MergeWord(string word)
    {
        var symbols = InitialSymbols(word);
        int n = symbols.Count;
        if (n < 2) return symbols.ToArray();

        var ids = symbols.ToArray();
        var prev = new int[n];
        var next = new int[n];
        var removed = new bool[n];
        for (int i = 0; i < n; i++)
        {
            prev[i] = i - 1;
            next[i] = i + 1 < n ? i + 1 : -1;
        }

        // Min-heap on (rank, position): the lowest rank merges first, ties go to the leftmost
        // pair. Entries go stale when a neighbour merges; they are checked when popped.
        var queue = new PriorityQueue<(int Pos, int NewId), long>();
        for (int i = 0; i + 1 < n; i++) Enqueue(queue, ids, i, i + 1);

        while (queue.TryDequeue(out var top, out _))
        {
            int pos = top.Pos;
            if (removed[pos] || next[pos] < 0) continue;
            int right = next[pos];
            if (!_merges.TryGetValue(Key(ids[pos], ids[right]), out var m) || m.NewId != top.NewId) continue;

            ids[pos] = top.NewId;
            removed[right] = true;
            next[pos] = next[right];
            if (next[right] >= 0) prev[next[right]] = pos;

            if (prev[pos] >= 0) Enqueue(queue, ids, prev[pos], pos);
            if (next[pos] >= 0) Enqueue(queue, ids, pos, next[pos]);
        }

        var result = new List<int>(n);
        for (int i = 0; i >= 0; i = next[i]) result.Add(ids[i]);
        return result.ToArray();
    }

    private void Enqueue(PriorityQueue<(int, int), long> queue, int[] ids, int left, int right)
    {
        if (_merges.TryGetValue(Key(ids[left], ids[right]), out var m))
            queue.Enqueue((left, m.NewId), ((long)m.Rank << 32) | (uint)left);
    }

    /// <summary>One symbol per character; unknown characters go to byte fallback, else to unk (fused if asked).</summary>
    private List<int> InitialSymbols(string word)
    {
        var symbols = new List<int>(word.Length);
        bool lastWasUnk = false;
        Span<byte> utf8 = stackalloc byte[4];
        foreach (var rune in word.EnumerateRunes())
        {
            if (_vocab.TryGetValue(rune.ToString(), out var id))
            {
                symbols.Add(id);
                lastWasUnk = false;
                continue;
            }
            if (_byteTokenIds is { } byteIds)
            {
                int len = rune.EncodeToUtf8(utf8);
                bool all = true;
                for (int i = 0; i < len; i++) all &= byteIds[utf8[i]] >= 0;
                if (all)
                {
                    for (int i = 0; i < len; i++) symbols.Add(byteIds[utf8[i]]);
                    lastWasUnk = false;
                    continue;
                }
            }
            if (_unkId is { } unk)
            {
                if (!(_fuseUnk && lastWasUnk)) symbols.Add(unk);
                lastWasUnk = true;
            }
        }
        return symbols;
    }
}
