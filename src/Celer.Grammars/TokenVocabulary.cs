namespace Celer.Grammars;

/// <summary>
/// A model's vocabulary as the grammar matcher sees it: each token id's bytes as they appear in decoded text (null for
/// special tokens, which a grammar never produces), the ids that end a sequence, and a byte trie of the tokens so that
/// checking the whole vocabulary against a grammar state shares the work of common prefixes (a dead prefix rejects
/// every token under it at once). Built once per model; immutable.
/// </summary>
public sealed class TokenVocabulary
{
    // Trie nodes: children are node ids [ChildStart, ChildStart + ChildCount) of _childNodes with their bytes in
    // _childBytes; a node's tokens (those whose bytes end here) are _sortedIds[EndStart, EndStart + EndCount), and every
    // token at or under it is _sortedIds[EndStart, SubtreeEnd).
    private readonly int[] _childStart, _childCount, _endStart, _endCount, _subtreeEnd;
    private readonly List<int> _childNodes = [];
    private readonly List<byte> _childBytes = [];
    private readonly int[] _sortedIds;
    private readonly byte[]?[] _tokenBytes;

    /// <param name="tokenBytes">Each id's bytes in decoded text; null or empty: never allowed by a grammar.</param>
    /// <param name="endOfSequenceIds">The ids a complete output may end with (EOS and the model's other stop ids).</param>
    public TokenVocabulary(IReadOnlyList<byte[]?> tokenBytes, IEnumerable<int> endOfSequenceIds)
    {
        ArgumentNullException.ThrowIfNull(tokenBytes);
        VocabSize = tokenBytes.Count;
        _tokenBytes = [.. tokenBytes];
        EndOfSequenceIds = [.. endOfSequenceIds.Where(id => (uint)id < (uint)VocabSize).Distinct().Order()];
        _sortedIds = [.. Enumerable.Range(0, VocabSize).Where(id => _tokenBytes[id] is { Length: > 0 })
            .Order(Comparer<int>.Create((a, b) => _tokenBytes[a].AsSpan().SequenceCompareTo(_tokenBytes[b])))];

        var childStart = new List<int>();
        var childCount = new List<int>();
        var endStart = new List<int>();
        var endCount = new List<int>();
        var subtreeEnd = new List<int>();
        BuildNode(0, _sortedIds.Length, 0);
        _childStart = [.. childStart];
        _childCount = [.. childCount];
        _endStart = [.. endStart];
        _endCount = [.. endCount];
        _subtreeEnd = [.. subtreeEnd];

        // The tokens [lo, hi) of the sorted order share their first `depth` bytes; returns the node's id.
        int BuildNode(int lo, int hi, int depth)
        {
            int node = childStart.Count;
            childStart.Add(0);
            childCount.Add(0);
            endStart.Add(lo);
            subtreeEnd.Add(hi);
            int ending = lo;
            while (ending < hi && _tokenBytes[_sortedIds[ending]]!.Length == depth)
            {
                ending++;
            }

            endCount.Add(ending - lo);
            var children = new List<(byte Byte, int Node)>();
            for (int i = ending; i < hi;)
            {
                byte b = _tokenBytes[_sortedIds[i]]![depth];
                int j = i + 1;
                while (j < hi && _tokenBytes[_sortedIds[j]]![depth] == b)
                {
                    j++;
                }

                children.Add((b, BuildNode(i, j, depth + 1)));
                i = j;
            }

            childStart[node] = _childNodes.Count;
            childCount[node] = children.Count;
            foreach (var (b, child) in children)
            {
                _childBytes.Add(b);
                _childNodes.Add(child);
            }

            return node;
        }
    }

    public int VocabSize { get; }

    /// <summary>The number of 32-bit words of a bitmask over the vocabulary.</summary>
    public int BitmaskWords => (VocabSize + 31) / 32;

    public int[] EndOfSequenceIds { get; }

    public ReadOnlySpan<byte> BytesOf(int tokenId) => _tokenBytes[tokenId];

    internal int NodeCount => _childStart.Length;

    internal const int Root = 0;

    internal int ChildCount(int node) => _childCount[node];

    internal (byte Byte, int Node) Child(int node, int i) => (_childBytes[_childStart[node] + i], _childNodes[_childStart[node] + i]);

    /// <summary>The ids whose bytes end at this node.</summary>
    internal ReadOnlySpan<int> EndingAt(int node) => _sortedIds.AsSpan(_endStart[node], _endCount[node]);

    /// <summary>Every id at or under this node except those ending at it.</summary>
    internal ReadOnlySpan<int> Below(int node) => _sortedIds.AsSpan(_endStart[node] + _endCount[node], _subtreeEnd[node] - _endStart[node] - _endCount[node]);
}
