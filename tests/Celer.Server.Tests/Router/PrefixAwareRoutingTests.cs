using System.Text.Json.Nodes;
using Celer.Router;
using Celer.Server.Tests.Integration;
using Celer.Server.Tests.Support;
using Microsoft.Extensions.Logging.Abstractions;

namespace Celer.Server.Tests.Router;

/// <summary>Prefix-aware routing in front of real Celer servers: a prompt seen before goes back to its backend, a new one elsewhere.</summary>
public sealed class PrefixAwareRoutingTests
{
    private const string Instructions =
        "You are the code assistant of the Celer project. Answer in Python, keep functions short, name things the way the " +
        "standard library does, and explain nothing unless asked. ";

    [Fact]
    public async Task A_repeated_long_prompt_stays_on_one_backend_and_a_different_prompt_goes_to_another()
    {
        var servers = await RouterTests.StartServersAsync(2);
        try
        {
            // One scrape, at startup (both idle): load then differs only by requests in flight, none between these
            // one-at-a-time requests, so a prompt with no match takes the next backend in turn.
            await using var router = await RouterUnderTest.StartAsync(servers.Select(s => RouterTests.Spec(s)), RoutingLogic.PrefixAware,
                metricsScrapeInterval: TimeSpan.FromHours(1), prefixChunkSize: 32);
            var first = Completion(Instructions + "Write a function that reverses a list.");
            var second = Completion("def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number, computed iteratively in O(n).\"\"\"\n");

            var home = await WhichBackendAsync(router, servers, first);
            for (var i = 0; i < 4; i++)
                Assert.Equal(home, await WhichBackendAsync(router, servers, first));
            // The same instructions with another question share the instructions' chunks.
            Assert.Equal(home, await WhichBackendAsync(router, servers, Completion(Instructions + "Write a function that merges two sorted lists.")));

            var other = await WhichBackendAsync(router, servers, second);
            Assert.NotEqual(home, other);
            for (var i = 0; i < 3; i++)
                Assert.Equal(other, await WhichBackendAsync(router, servers, second));
            Assert.Equal(home, await WhichBackendAsync(router, servers, first));

            // A chat whose system message is the instructions: its text starts differently ("system\n…"), so it is new,
            // and a conversation that goes on follows its first turn.
            var chat = Chat(("system", Instructions), ("user", "Sort a list of tuples by their second element."));
            var chatHome = await WhichBackendAsync(router, servers, chat, "/v1/chat/completions");
            var longer = Chat(("system", Instructions), ("user", "Sort a list of tuples by their second element."), ("assistant", "sorted(xs, key=lambda t: t[1])"), ("user", "Descending?"));
            Assert.Equal(chatHome, await WhichBackendAsync(router, servers, longer, "/v1/chat/completions"));
        }
        finally
        {
            await RouterTests.DisposeAllAsync(servers);
        }
    }

    /// <summary>
    /// Issue 19's target: requests sharing long prefixes, spread by the router over three servers, hit the prefix caches
    /// at least 90 % as often as the same requests sent to one server (which holds every prefix).
    /// </summary>
    [Fact]
    public async Task Prefix_cache_hits_behind_the_router_are_at_least_nine_tenths_of_one_servers()
    {
        // Four prompts of over 512 tokens each, different from their first characters, asked three questions each,
        // interleaved (so that taking the servers in turn would send a prompt's questions to different servers).
        string[] prefixes = [.. Enumerable.Range(0, 4).Select(p => $"# Module {p} of the helpers\n" + Instructions + string.Concat(Enumerable.Range(0, 18).Select(k =>
            $"def helper_{p}_{k}(values):\n    return [v * {k + 1} + {p} for v in values if v % {k + 2}]\n\n")))];
        var bodies = Enumerable.Range(0, 3).SelectMany(q => prefixes.Select(prefix => Completion(prefix + $"# Question {q}: use the helpers above to "))).ToList();

        await using var single = await TinyPyServer.StartAsync(maxModelLen: 1024);
        Assert.True(single.Model.Tokenizer!.Encode(prefixes[0]).Length > 512);
        using (var direct = new HttpClient { BaseAddress = single.BaseAddress })
        {
            foreach (var body in bodies)
                (await direct.PostJsonAsync("/v1/completions", body)).EnsureSuccessStatusCode();
        }

        double singleRate = (double)single.Engine.Stats.PrefixCacheHits / single.Engine.Stats.PrefixCacheQueries;
        var servers = new List<TinyPyServer>();
        try
        {
            for (var i = 0; i < 3; i++)
                servers.Add(await TinyPyServer.StartAsync(maxModelLen: 1024));
            await using var router = await RouterUnderTest.StartAsync(servers.Select(s => RouterTests.Spec(s)), RoutingLogic.PrefixAware,
                metricsScrapeInterval: TimeSpan.FromHours(1), prefixChunkSize: 64);
            var homes = new List<int>();
            foreach (var body in bodies)
                homes.Add(await WhichBackendAsync(router, servers, body));

            double routedRate = (double)servers.Sum(s => s.Engine.Stats.PrefixCacheHits) / servers.Sum(s => s.Engine.Stats.PrefixCacheQueries);
            Assert.True(routedRate >= 0.9 * singleRate, $"prefix-cache hit rate {routedRate:P1} behind the router, {singleRate:P1} on one server");
            Assert.True(homes.Distinct().Count() > 1, "the prompts were meant to spread over the servers");
        }
        finally
        {
            await RouterTests.DisposeAllAsync(servers);
        }
    }

    [Fact]
    public void An_ejected_backends_prompts_are_forgotten()
    {
        var options = new RouterOptions { Backends = [new BackendSpec(new Uri("http://10.0.0.1:8000/"), "m"), new BackendSpec(new Uri("http://10.0.0.2:8000/"), "m")] };
        using var pool = new BackendPool(options, NullLogger<BackendPool>.Instance);
        var (a, b) = (pool.Backends[0], pool.Backends[1]);
        a.IsHealthy = b.IsHealthy = true;
        var trie = new PrefixTrie(chunkChars: 4, maxChunks: 100);
        _ = new PrefixAwareRouting(trie, pool);
        trie.Insert("abcdefgh", a);
        trie.Insert("abcdwxyz", b);

        pool.Eject(a, new HttpRequestException("Connection refused"));

        Assert.Equal(2, trie.Count);
        var match = trie.Match("abcdefgh", [a, b]);
        Assert.Equal(1, match.Chunks);
        Assert.Equal([b], match.Backends);
    }

    private static string Completion(string prompt) =>
        new JsonObject { ["model"] = ServerFixture.ModelName, ["prompt"] = prompt, ["max_tokens"] = 1 }.ToJsonString();

    private static string Chat(params (string Role, string Content)[] messages) => new JsonObject
    {
        ["model"] = ServerFixture.ModelName,
        ["messages"] = new JsonArray([.. messages.Select(m => (JsonNode)new JsonObject { ["role"] = m.Role, ["content"] = m.Content })]),
        ["max_tokens"] = 1,
    }.ToJsonString();

    private static async Task<int> WhichBackendAsync(RouterUnderTest router, List<TinyPyServer> servers, string body, string path = "/v1/completions")
    {
        var backend = await RouterTests.WhichBackendAsync(servers, () => router.PostAsync(path, body));
        // The client can have the answer a moment before the router counts the request finished; the next pick must not see it.
        await Poll.UntilAsync(() => router.Pool.Backends.All(b => b.Load.InFlight == 0), TimeSpan.FromSeconds(10), "the router counts the request finished");
        return backend;
    }
}
