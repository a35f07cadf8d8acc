namespace Celer.Engine.KvCache;

/// <summary>
/// Identity of one full KV block's contents in the prefix cache: a 128-bit digest of the parent
/// block's hash, the block's token ids and its extra keys (the cache salt for the first block, whose parent stands for
/// the model). Because the parent hash is chained in, equal hashes mean equal prefixes of the same model and salt, not
/// just equal blocks.
/// </summary>
public readonly record struct BlockHash(UInt128 Value)
{
    public override string ToString() => Value.ToString("x32", null);
}
