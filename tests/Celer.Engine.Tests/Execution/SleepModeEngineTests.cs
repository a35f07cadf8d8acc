using Celer.Engine.Execution;
using Celer.TestSupport;

namespace Celer.Engine.Tests.Execution;

/// <summary>
/// Sleep mode through the whole serving engine on the CPU backend with the default model: a sleeping model gives its KV
/// cache back and forgets its prefix cache (whose blocks' contents went with it), a request wakes it, and greedy output is
/// token for token what it was before the sleep; a sleep waits for the running requests and holds new ones back; wake-up
/// by tags; refusals.
/// </summary>
public sealed class SleepModeEngineTests
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(60);

    private static LoadedModel Load(bool sleepMode) => ModelLoader.Load(new EngineArgs
    {
        Model = RepoPaths.DefaultModel,
        MaxModelLen = 256,
        MaxNumSeqs = 4,
        MaxNumBatchedTokens = 64,
        KvCacheMemoryBytes = 16L << 20,
        Seed = 1,
        EnableSleepMode = sleepMode,
    });

    private static GenerateRequest Request(string id, int seed, int maxTokens = 12)
    {
        var random = new Random(seed);
        return new GenerateRequest(id, [.. Enumerable.Range(0, 40).Select(_ => random.Next(1, 500))], new SamplingParams { Temperature = 0, MaxTokens = maxTokens, IgnoreEos = true });
    }

    private static async Task<List<int>> Tokens(AsyncLlmEngine engine, GenerateRequest request)
    {
        var tokens = new List<int>();
        await foreach (RequestOutput output in engine.GenerateAsync(request, TestContext.Current.CancellationToken).WithCancellation(TestContext.Current.CancellationToken))
        {
            tokens.AddRange(output.Outputs.SelectMany(o => o.TokenIdsDelta));
        }

        return tokens;
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    public async Task A_request_wakes_a_sleeping_model_and_gets_the_tokens_it_got_before_the_sleep(int level)
    {
        await using LoadedModel model = Load(sleepMode: true);
        AsyncLlmEngine engine = model.Engine;
        List<int> before = await Tokens(engine, Request("a", 3));
        Assert.Equal(before, await Tokens(engine, Request("a-again", 3)));
        long hitsAwake = engine.Stats.PrefixCacheHits;
        Assert.True(hitsAwake > 0, "the repeated prompt should have hit the prefix cache");

        await engine.SleepAsync(level).WaitAsync(Patience, TestContext.Current.CancellationToken);
        Assert.True(engine.IsSleeping);

        // The cached blocks' contents went with the KV cache's memory: the same prompt must be computed again, not read back.
        Assert.Equal(before, await Tokens(engine, Request("a-woken", 3)));
        Assert.False(engine.IsSleeping);
        Assert.Equal(hitsAwake, engine.Stats.PrefixCacheHits);
        Assert.Equal(await Tokens(engine, Request("b-reference", 5)), await Tokens(engine, Request("b", 5)));
    }

    [Fact]
    public async Task Wake_up_by_tags_serves_only_once_weights_and_kv_cache_are_both_awake()
    {
        await using LoadedModel model = Load(sleepMode: true);
        AsyncLlmEngine engine = model.Engine;
        List<int> before = await Tokens(engine, Request("a", 7));
        await engine.SleepAsync(1).WaitAsync(Patience, TestContext.Current.CancellationToken);

        await engine.WakeUpAsync(weights: true, kvCache: false).WaitAsync(Patience, TestContext.Current.CancellationToken);
        Assert.True(engine.IsSleeping);
        await engine.WakeUpAsync(weights: false, kvCache: true).WaitAsync(Patience, TestContext.Current.CancellationToken);
        Assert.False(engine.IsSleeping);
        Assert.Equal(before, await Tokens(engine, Request("a-woken", 7)));

        // Sleeping twice, or waking an awake model, changes nothing.
        await engine.SleepAsync(2).WaitAsync(Patience, TestContext.Current.CancellationToken);
        await engine.SleepAsync(1).WaitAsync(Patience, TestContext.Current.CancellationToken);
        await engine.WakeUpAsync().WaitAsync(Patience, TestContext.Current.CancellationToken);
        await engine.WakeUpAsync().WaitAsync(Patience, TestContext.Current.CancellationToken);
        Assert.False(engine.IsSleeping);
        Assert.Equal(before, await Tokens(engine, Request("a-again", 7)));
    }

    [Fact]
    public async Task A_sleep_lets_running_requests_finish_and_holds_new_ones_until_it_wakes()
    {
        await using LoadedModel reference = Load(sleepMode: false);
        List<int> longExpected = await Tokens(reference.Engine, Request("long", 11, maxTokens: 120));
        List<int> laterExpected = await Tokens(reference.Engine, Request("later", 13));

        await using LoadedModel model = Load(sleepMode: true);
        AsyncLlmEngine engine = model.Engine;
        var ct = TestContext.Current.CancellationToken;
        await using IAsyncEnumerator<RequestOutput> running = engine.GenerateAsync(Request("long", 11, maxTokens: 120), ct).GetAsyncEnumerator(ct);
        Assert.True(await running.MoveNextAsync());
        var longTokens = running.Current.Outputs.SelectMany(o => o.TokenIdsDelta).ToList();

        Task sleep = engine.SleepAsync(1);
        Task<List<int>> later = Tokens(engine, Request("later", 13));
        bool finished = running.Current.Finished;
        while (!finished && await running.MoveNextAsync())
        {
            longTokens.AddRange(running.Current.Outputs.SelectMany(o => o.TokenIdsDelta));
            finished = running.Current.Finished;
        }

        await sleep.WaitAsync(Patience, ct);
        Assert.Equal(longExpected, longTokens);
        Assert.Equal(laterExpected, await later.WaitAsync(Patience, ct));
        Assert.False(engine.IsSleeping);
    }

    /// <summary>The checks throw at the call, before any task exists.</summary>
    [Fact]
    public async Task Sleep_needs_sleep_mode_and_a_level_of_1_or_2()
    {
        await using LoadedModel plain = Load(sleepMode: false);
        Assert.False(plain.Engine.SupportsSleep);
        Assert.Throws<InvalidOperationException>(() => { _ = plain.Engine.SleepAsync(1); });
        Assert.Throws<InvalidOperationException>(() => { _ = plain.Engine.WakeUpAsync(); });

        await using LoadedModel model = Load(sleepMode: true);
        Assert.True(model.Engine.SupportsSleep);
        Assert.Throws<ArgumentOutOfRangeException>(() => { _ = model.Engine.SleepAsync(0); });
        Assert.Throws<ArgumentOutOfRangeException>(() => { _ = model.Engine.SleepAsync(3); });
        Assert.False(model.Engine.IsSleeping);
    }
}
