using Celer.Engine.KvCache;
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
