namespace Celer.Router;

/// <summary>
/// A 64-bit hash that is the same in every process and run (unlike <see cref="string.GetHashCode()"/>), for the
/// session ring's points and the prefix trie's chunk keys.
/// </summary>
internal static class StableHash
{
    /// <summary>
    /// FNV-1a over the UTF-16 code units (for ASCII the same as over UTF-8 bytes), then MurmurHash3's 64-bit finalizer
    /// so near-identical keys ("user-1", "user-2") land far apart.
    /// </summary>
    public static ulong Hash(ReadOnlySpan<char> text)
    {
        var hash = 14695981039346656037UL;
        foreach (var c in text)
            hash = (hash ^ c) * 1099511628211UL;
        hash ^= hash >> 33;
        hash *= 0xff51afd7ed558ccdUL;
        hash ^= hash >> 33;
        hash *= 0xc4ceb9fe1a85ec53UL;
        hash ^= hash >> 33;
        return hash;
    }
}
