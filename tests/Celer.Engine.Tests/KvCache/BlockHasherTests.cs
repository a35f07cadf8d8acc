using Celer.Engine.KvCache;
using Celer.Engine.Multimodal;
using Celer.Engine.Scheduling;
using Celer.Engine.Tests.Support;

namespace Celer.Engine.Tests.KvCache;

public class BlockHasherTests
{
    [Fact]
    public void Hash_IsDeterministicAndDependsOnParentTokensAndSalt()
    {
        int[] tokens = [17, 423, 9, 88];
        BlockHash a = BlockHasher.HashBlockTokens(null, tokens, null);
        Assert.Equal(a, BlockHasher.HashBlockTokens(null, [17, 423, 9, 88], null));
        Assert.NotEqual(a, BlockHasher.HashBlockTokens(null, [17, 423, 9, 89], null));
        Assert.NotEqual(a, BlockHasher.HashBlockTokens(a, tokens, null));
        Assert.NotEqual(a, BlockHasher.HashBlockTokens(null, tokens, "tenant-a"));
        Assert.NotEqual(
            BlockHasher.HashBlockTokens(null, tokens, "tenant-a"),
            BlockHasher.HashBlockTokens(null, tokens, "tenant-b"));
    }

    [Fact]
    public void ExtendBlockHashes_HashesOnlyFullBlocks_ChainedThroughParents()
    {
        var random = new Random(7);
        int[] prompt = TestRequests.RandomTokens(random, 10);
        var request = TestRequests.Make("r", prompt, cacheSalt: "s");
        var hasher = new BlockHasher(4, "model");
        hasher.ExtendBlockHashes(request);

        BlockHash first = BlockHasher.HashBlockTokens(hasher.Root, prompt.AsSpan(0, 4), "s");
        BlockHash second = BlockHasher.HashBlockTokens(first, prompt.AsSpan(4, 4), null);
        Assert.Equal([first, second], request.BlockHashes);
    }

    [Fact]
    public void Images_KeyExactlyTheBlocksTheirPlaceholdersTouch()
    {
        int[] prompt = [.. TestRequests.RandomTokens(new Random(5), 3), .. Enumerable.Repeat(99, 6), .. TestRequests.RandomTokens(new Random(6), 7)];
        string red = new('a', 64), blue = new('b', 64);
        var hasher = new BlockHasher(4, "model");
        List<BlockHash> Hashes(string? image)
        {
            // Positions 3..8 are the image's placeholders: blocks 0, 1 and 2 of 4 tokens hold some of them, block 3 none.
            var request = new Request("r", prompt, new SamplingParams(), 16, null)
            {
                Images = image is null ? [] : [new PromptImage(3, 6, image, [])],
            };
            hasher.ExtendBlockHashes(request);
            return request.BlockHashes;
        }

        List<BlockHash> plain = Hashes(null);

        List<BlockHash> a = Hashes(red), b = Hashes(blue);
        Assert.Equal(4, a.Count);
        Assert.Equal(a, Hashes(red));
        // Every block differs: the first three hold different images, the last one chains from them.
        Assert.Empty(a.Intersect(b));
        Assert.Empty(a.Intersect(plain));
        Assert.Equal(BlockHasher.HashBlockTokens(hasher.Root, prompt.AsSpan(0, 4), null, [red]), a[0]);
        Assert.Equal(BlockHasher.HashBlockTokens(a[1], prompt.AsSpan(8, 4), null, [red]), a[2]);
        Assert.Equal(BlockHasher.HashBlockTokens(a[2], prompt.AsSpan(12, 4), null), a[3]);
        // A salt can never spell an image: the salt's length is part of the block.
        Assert.NotEqual(
            BlockHasher.HashBlockTokens(null, prompt.AsSpan(0, 4), "s", [red]),
            BlockHasher.HashBlockTokens(null, prompt.AsSpan(0, 4), "s" + System.Text.Encoding.Latin1.GetString(Convert.FromHexString(red))));
    }

    [Fact]
    public void ModelIdentity_SeparatesEveryBlock_AndIsStable()
    {
        int[] prompt = TestRequests.RandomTokens(new Random(3), 8);
        List<BlockHash> Hashes(string model)
        {
            var request = TestRequests.Make("r", prompt);
            new BlockHasher(4, model).ExtendBlockHashes(request);
            return request.BlockHashes;
        }

        List<BlockHash> a = Hashes("/models/a\nbfloat16"), b = Hashes("/models/b\nbfloat16");
        Assert.Equal(2, a.Count);
        Assert.Empty(a.Intersect(b));
        Assert.Equal(a, Hashes("/models/a\nbfloat16"));
        // The root is the identity hashed as an empty block's salt, so it can never equal a real first block's hash.
        Assert.Equal(BlockHasher.HashBlockTokens(null, [], "/models/a\nbfloat16"), new BlockHasher(4, "/models/a\nbfloat16").Root);
    }

    [Fact]
    public void DistinctBlocks_NeverCollide()
    {
        // 20,000 random blocks: a 128-bit digest must keep them all apart.
        var random = new Random(11);
        var seen = new HashSet<BlockHash>();
        for (int i = 0; i < 20_000; i++)
        {
            Assert.True(seen.Add(BlockHasher.HashBlockTokens(null, TestRequests.RandomTokens(random, 16, 1 << 20), null)));
        }
    }
}
