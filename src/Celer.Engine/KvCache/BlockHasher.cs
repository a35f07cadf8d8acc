using System.Buffers.Binary;
using System.Security.Cryptography;
using System.Text;
using Celer.Engine.Scheduling;

namespace Celer.Engine.KvCache;

/// <summary>
/// Chained hashing of full blocks for automatic prefix caching (vLLM's <c>hash_block_tokens</c>).
/// SHA-256 truncated to 128 bits: vLLM moved to SHA-256 because a weak hash lets one tenant's
/// crafted prompt collide with another's cached prefix; 2^-64 birthday odds over 128 bits make
/// accidental collisions negligible too.
/// </summary>
/// <param name="modelIdentity">
/// What computed the KV (the model, its dtype and KV-cache dtype, …): it seeds the first block's parent, so two models'
/// blocks never share a hash, wherever their caches meet (a host tier shared by several models, a cache outliving a
/// model swap).
/// </param>
public sealed class BlockHasher(int blockSize, string modelIdentity)
{
    /// <summary>The parent of the root: fixed so hashes are stable across runs.</summary>
    private static readonly BlockHash RootParent = new(UInt128.Zero);

    public int BlockSize { get; } = blockSize > 0 ? blockSize : throw new ArgumentOutOfRangeException(nameof(blockSize));

    /// <summary>
    /// The first block's parent: the model identity hashed as the salt of an empty block, which no real block can
    /// serialize like (its token count is 0).
    /// </summary>
    public BlockHash Root { get; } = HashBlockTokens(null, [], modelIdentity);

    /// <summary>
    /// Hash of one full block given its parent's hash (null: the fixed all-zero parent). <paramref name="imageHashes"/>:
    /// the images whose placeholders the block holds (vLLM's extra keys), as 64 hex digits each: a placeholder token
    /// stands for different KV under different images.
    /// </summary>
    public static BlockHash HashBlockTokens(BlockHash? parent, ReadOnlySpan<int> tokenIds, string? cacheSalt, IReadOnlyList<string>? imageHashes = null)
    {
        // Layout: parent(16) | token count(4) | tokens(4 each) | salt byte count(4) | salt UTF-8 | image hashes (32 each).
        // The counts keep a salted block from ever serializing like an unsalted one with more tokens, or a salt like images.
        int saltBytes = cacheSalt is null ? 0 : Encoding.UTF8.GetByteCount(cacheSalt);
        int images = imageHashes?.Count ?? 0;
        int length = 16 + 4 + (tokenIds.Length * 4) + 4 + saltBytes + (images * 32);
        // A block of up to ~250 tokens hashes from the stack; bigger block sizes are rare.
        Span<byte> buffer = length <= 1024 ? stackalloc byte[length] : new byte[length];
        UInt128 parentValue = (parent ?? RootParent).Value;
        BinaryPrimitives.WriteUInt64LittleEndian(buffer, (ulong)parentValue);
        BinaryPrimitives.WriteUInt64LittleEndian(buffer[8..], (ulong)(parentValue >> 64));
        BinaryPrimitives.WriteInt32LittleEndian(buffer[16..], tokenIds.Length);
        for (int i = 0; i < tokenIds.Length; i++)
        {
            BinaryPrimitives.WriteInt32LittleEndian(buffer[(20 + (i * 4))..], tokenIds[i]);
        }
        int at = 20 + (tokenIds.Length * 4);
        BinaryPrimitives.WriteInt32LittleEndian(buffer[at..], saltBytes);
        if (cacheSalt is not null)
        {
            Encoding.UTF8.GetBytes(cacheSalt, buffer[(at + 4)..]);
        }

        for (int i = 0; i < images; i++)
        {
            Convert.FromHexString(imageHashes![i], buffer.Slice(at + 4 + saltBytes + (i * 32), 32), out _, out _);
        }
        Span<byte> digest = stackalloc byte[32];
        SHA256.HashData(buffer[..length], digest);
        ulong lo = BinaryPrimitives.ReadUInt64LittleEndian(digest);
        ulong hi = BinaryPrimitives.ReadUInt64LittleEndian(digest[8..]);
        return new BlockHash(new UInt128(hi, lo));
    }

    /// <summary>
    /// Appends the hashes of the request's full blocks that are not hashed yet (prompt blocks at
    /// admission, then each block that generated tokens complete). Only the first block carries
    /// the cache salt, and has <see cref="Root"/> for parent: both are chained into every later hash through the parent.
    /// </summary>
    public void ExtendBlockHashes(Request request)
    {
        List<BlockHash> hashes = request.BlockHashes;
        int numFullBlocks = request.NumTokens / BlockSize;
        while (hashes.Count < numFullBlocks)
        {
            int index = hashes.Count;
            BlockHash parent = index == 0 ? Root : hashes[index - 1];
            ReadOnlySpan<int> tokens = request.TokenSpan(index * BlockSize, BlockSize);
            hashes.Add(HashBlockTokens(parent, tokens, index == 0 ? request.CacheSalt : null, ImagesIn(request, index * BlockSize, (index + 1) * BlockSize)));
        }
    }

    /// <summary>The hashes of the images whose placeholder runs overlap positions [start, end); null when none do.</summary>
    private static List<string>? ImagesIn(Request request, int start, int end)
    {
        List<string>? hashes = null;
        foreach (Multimodal.PromptImage image in request.Images)
        {
            if (image.Offset < end && image.End > start)
            {
                (hashes ??= []).Add(image.Hash);
            }
        }

        return hashes;
    }
}
