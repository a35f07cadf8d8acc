namespace Celer.Router;

/// <summary>How much of a prompt a backend has seen before, and which backends have.</summary>
/// <param name="Chunks">Whole chunks of the prompt, from its start, found on the backends below (0: no match).</param>
/// <param name="Backends">The candidates that have all those chunks (every candidate when nothing matched), in candidate order.</param>
public sealed record PrefixMatch(int Chunks, IReadOnlyList<Backend> Backends);

/// <summary>
/// What each backend has been sent, as production-stack's prefix-aware router keeps it: prompts cut into chunks of
/// <c>chunkChars</c> characters, each chunk a trie node keyed by its hash under the node of the chunks before it, and each
/// node holding the backends sent a prompt through it. A prompt's longest path of nodes shared with some candidate is the
/// longest prefix that candidate may still hold in its prefix cache. Only whole chunks count: a backend's prefix cache
/// reuses whole KV blocks too, and a partial last chunk would match only the very same tail.
/// <para>
/// Memory is bounded by <c>maxChunks</c> nodes, least recently used evicted first. A use touches the node's path leaf
/// first and root last, so every node is more recent than all below it and the least recent node is always a leaf, whose
/// removal leaves the trie whole. A node's backends include its children's (each prompt is added along its whole path),
/// so removing a backend empties whole subtrees, never a node above a non-empty one.
/// </para>
/// </summary>
public sealed class PrefixTrie
{
    private readonly int _chunkChars;
    private readonly int _maxChunks;
    private readonly Node _root = new(null, 0);
    private readonly LinkedList<Node> _recency = new(); // least recently used first; the root is not in it
    private readonly Lock _lock = new();

    public PrefixTrie(int chunkChars, int maxChunks)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(chunkChars, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(maxChunks, 1);
        _chunkChars = chunkChars;
        _maxChunks = maxChunks;
    }

    /// <summary>Chunk nodes held now (at most <c>maxChunks</c>).</summary>
    public int Count
    {
        get
        {
            lock (_lock)
                return _recency.Count;
        }
    }

    /// <summary>The longest run of the prompt's chunks, from its start, that some of <paramref name="candidates"/> were sent.</summary>
    public PrefixMatch Match(string prompt, IReadOnlyList<Backend> candidates)
    {
        var keys = ChunkKeys(prompt);
        lock (_lock)
        {
            IReadOnlyList<Backend> holders = candidates;
            var path = new List<Node>();
            var node = _root;
            foreach (var key in keys)
            {
                if (node.Children?.GetValueOrDefault(key) is not { } child)
                    break;
                var shared = holders.Where(child.Backends.Contains).ToList();
                // Further down only backends outside the candidates (unhealthy, other models) hold the prompt.
                if (shared.Count == 0)
                    break;
                holders = shared;
                path.Add(child);
                node = child;
            }
            Touch(path);
            return new PrefixMatch(path.Count, holders);
        }
    }

    /// <summary>Records that <paramref name="backend"/> was sent the prompt, evicting least recently used chunks beyond the bound.</summary>
    public void Insert(string prompt, Backend backend)
    {
        var keys = ChunkKeys(prompt);
        lock (_lock)
        {
            var path = new List<Node>(keys.Length);
            var node = _root;
            foreach (var key in keys)
            {
                node.Children ??= [];
                if (!node.Children.TryGetValue(key, out var child))
                {
                    child = new Node(node, key);
                    node.Children.Add(key, child);
                }
                if (!child.Backends.Contains(backend))
                    child.Backends.Add(backend);
                path.Add(child);
                node = child;
            }
            Touch(path);
            while (_recency.Count > _maxChunks)
                Unlink(_recency.First!.Value);
        }
    }

    /// <summary>Forgets everything <paramref name="backend"/> was sent (it was ejected: a restarted server's cache is empty).</summary>
    public void Remove(Backend backend)
    {
        lock (_lock)
            RemoveBelow(_root, backend);
    }

    private void RemoveBelow(Node node, Backend backend)
    {
        if (node.Children is null)
            return;
        foreach (var child in node.Children.Values.ToList())
        {
            if (!child.Backends.Remove(backend))
                continue; // Not on its path, so on none below it either.
            RemoveBelow(child, backend);
            if (child.Backends.Count == 0)
                Unlink(child);
        }
    }

    /// <summary>Marks the path as just used: leaf first, so each node ends up more recent than everything below it.</summary>
    private void Touch(List<Node> path)
    {
        for (var i = path.Count - 1; i >= 0; i--)
        {
            var node = path[i];
            if (node.Recency.List is not null)
                _recency.Remove(node.Recency);
            _recency.AddLast(node.Recency);
        }
    }

    /// <summary>Drops a node with no children left (a leaf, or one whose subtree was just dropped).</summary>
    private void Unlink(Node node)
    {
        node.Parent!.Children!.Remove(node.Key);
        _recency.Remove(node.Recency);
    }

    /// <summary>
    /// The hashes of the prompt's whole chunks, hashed before taking the lock. No path is deeper than the bound, so a
    /// prompt longer than it keeps its first chunks (a prefix is only of use from the start).
    /// </summary>
    private ulong[] ChunkKeys(string prompt)
    {
        var keys = new ulong[Math.Min(prompt.Length / _chunkChars, _maxChunks)];
        for (var i = 0; i < keys.Length; i++)
            keys[i] = StableHash.Hash(prompt.AsSpan(i * _chunkChars, _chunkChars));
        return keys;
    }

    private sealed class Node
    {
        public Node(Node? parent, ulong key)
        {
            Parent = parent;
            Key = key;
            Recency = new LinkedListNode<Node>(this);
        }

        public Node? Parent { get; }
        public ulong Key { get; }
        public LinkedListNode<Node> Recency { get; }

        /// <summary>The next chunks seen after this one, by their hash; null until there is one.</summary>
        public Dictionary<ulong, Node>? Children { get; set; }

        /// <summary>The backends sent a prompt through this chunk: few, so a list beats a set.</summary>
        public List<Backend> Backends { get; } = [];
    }
}
