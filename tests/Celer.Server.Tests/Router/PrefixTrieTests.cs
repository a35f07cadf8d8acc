using System.Text.Json;
using Celer.Router;

namespace Celer.Server.Tests.Router;

/// <summary>
/// <see cref="PrefixTrie"/> with tiny chunks, asserting exact matches, holders and eviction order, and
/// <see cref="PromptText"/> on the request shapes whose prompt it reads.
/// </summary>
public sealed class PrefixTrieTests
{
    private static readonly Backend A = NewBackend("a"), B = NewBackend("b"), C = NewBackend("c");

    [Fact]
    public void The_longest_run_of_whole_chunks_is_matched_among_the_candidates_holding_it()
    {
        var trie = new PrefixTrie(chunkChars: 4, maxChunks: 100);
        trie.Insert("abcdefgh", A);
        trie.Insert("abcdwxyz", B);
        Assert.Equal(3, trie.Count); // abcd is shared

        AssertMatch(trie.Match("abcdefghij", [A, B]), 2, A);
        AssertMatch(trie.Match("abcdwxyz", [A, B]), 2, B);
        AssertMatch(trie.Match("abcdXXXX", [A, B]), 1, A, B);
        // A partial chunk never matches: "abc" is not a whole chunk.
        AssertMatch(trie.Match("abc", [A, B]), 0, A, B);
        AssertMatch(trie.Match("zzzzefgh", [B, A]), 0, B, A);
        // A is not a candidate (unhealthy, another model): the match stops where only A holds the prompt.
        AssertMatch(trie.Match("abcdefgh", [B, C]), 1, B);
        AssertMatch(trie.Match("abcdefgh", [C]), 0, C);
    }

    [Fact]
    public void Removing_a_backend_drops_its_chunks_and_keeps_the_ones_others_hold()
    {
        var trie = new PrefixTrie(chunkChars: 4, maxChunks: 100);
        trie.Insert("abcdefgh", A);
        trie.Insert("abcdwxyz", B);
        trie.Insert("qqqqrrrr", A);

        trie.Remove(A);

        Assert.Equal(2, trie.Count); // abcd and abcd/wxyz, which B holds
        AssertMatch(trie.Match("abcdefgh", [A, B]), 1, B);
        AssertMatch(trie.Match("qqqqrrrr", [A, B]), 0, A, B);
        trie.Remove(B);
        Assert.Equal(0, trie.Count);
    }

    [Fact]
    public void Beyond_the_bound_the_least_recently_used_chunks_go_deepest_first()
    {
        var trie = new PrefixTrie(chunkChars: 2, maxChunks: 4);
        trie.Insert("aabbcc", A); // recency, oldest first: cc bb aa
        trie.Insert("xxyy", A);   // cc bb aa yy xx: five, so cc goes
        Assert.Equal(4, trie.Count);
        AssertMatch(trie.Match("aabbcc", [A]), 2, A); // yy xx bb aa

        trie.Insert("zz", A); // yy xx bb aa zz: yy goes
        Assert.Equal(4, trie.Count);
        AssertMatch(trie.Match("xxyy", [A]), 1, A);
        AssertMatch(trie.Match("aabb", [A]), 2, A);
        AssertMatch(trie.Match("zz", [A]), 1, A);
    }

    [Fact]
    public void A_prompt_longer_than_the_bound_keeps_its_first_chunks()
    {
        var trie = new PrefixTrie(chunkChars: 2, maxChunks: 3);
        trie.Insert("qqrr", A);
        trie.Insert("aabbccddee", B);

        Assert.Equal(3, trie.Count);
        AssertMatch(trie.Match("aabbccddee", [A, B]), 3, B);
        AssertMatch(trie.Match("qqrr", [A, B]), 0, A, B);
    }

    [Fact]
    public void Prompt_text_is_read_from_completions_and_chat_bodies()
    {
        Assert.Equal("Hello", Prompt("""{"model": "m", "prompt": "Hello"}"""));
        Assert.Equal("one\ntwo", Prompt("""{"prompt": ["one", "two"]}"""));
        Assert.Equal("1,23,", Prompt("""{"prompt": [1, 23]}"""));
        Assert.NotEqual(Prompt("""{"prompt": [1, 23]}"""), Prompt("""{"prompt": [12, 3]}"""));
        Assert.Equal("1,2,\n3,", Prompt("""{"prompt": [[1, 2], [3]]}"""));
        Assert.Equal("", Prompt("""{"input": "embedded, not prompted"}"""));

        var chat = """
            {"messages": [
              {"role": "system", "content": "Be brief."},
              {"role": "user", "content": [{"type": "text", "text": "Hi "}, {"type": "image_url", "image_url": {"url": "x"}}, {"type": "text", "text": "there"}]},
              {"role": "assistant", "content": null, "tool_calls": []}
            ]}
            """;
        Assert.Equal("system\nBe brief.\nuser\nHi there\nassistant\n\n", Prompt(chat));
        // A conversation that goes on keeps its earlier text as a prefix, so it can follow its backend's cache.
        var shorter = Prompt("""{"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi there"}]}""");
        var longer = Prompt("""{"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi there"}, {"role": "assistant", "content": "Hello."}]}""");
        Assert.StartsWith(shorter, longer, StringComparison.Ordinal);
    }

    private static string Prompt(string body)
    {
        using var json = JsonDocument.Parse(body);
        return PromptText.Extract(json.RootElement);
    }

    private static void AssertMatch(PrefixMatch match, int chunks, params Backend[] backends)
    {
        Assert.Equal(chunks, match.Chunks);
        Assert.Equal(backends, match.Backends);
    }

    internal static Backend NewBackend(string host) =>
        new(new BackendSpec(new Uri($"http://{host}:8000/"), "m"), new CircuitBreaker(5, TimeSpan.FromSeconds(30), TimeProvider.System),
            new RequestStats(TimeSpan.FromSeconds(60), TimeProvider.System));
}
