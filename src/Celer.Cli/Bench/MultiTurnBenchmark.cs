using System.CommandLine;
using System.Text.Json.Nodes;
using Celer.Engine;

namespace Celer.Cli.Bench;

/// <summary>
/// <c>celer bench multi-turn</c>: the workload the host KV tier is for. Several conversations take turns, one request at a
/// time, each turn's prompt being the conversation so far (previous prompt, reply, new user tokens), so that by the time
/// a conversation returns the others have pushed its prefix out of a small device KV pool (<c>--kv-cache-memory</c>). The
/// same conversations run twice in one process, first with recompute (no host tier), then with <c>--kv-offload-size</c>,
/// and the time to first token of the returning turns is reported side by side, with their ratio. Greedy decoding, so both
/// runs see the same prompts, and the report says whether their outputs were identical. Each engine first runs the
/// workload once with other tokens, unmeasured: the run measured first would otherwise pay for the host code's JIT
/// (scheduler, sampler, detokenizer) that the second finds compiled.
/// </summary>
internal static class MultiTurnBenchmark
{
    public static Command Create()
    {
        var common = new OfflineBenchmarks.CommonOptions();
        var conversations = new Option<int>("--num-conversations") { Description = "Conversations taking turns.", DefaultValueFactory = _ => 8 };
        var turns = new Option<int>("--num-turns") { Description = "Turns per conversation; every turn after the first returns to a cached prefix.", DefaultValueFactory = _ => 4 };
        var prefixLen = new Option<int>("--prefix-len") { Description = "Tokens of each conversation's first prompt.", DefaultValueFactory = _ => 1024 };
        var turnLen = new Option<int>("--turn-len") { Description = "New user tokens each later turn adds.", DefaultValueFactory = _ => 64 };
        var outputLen = new Option<int>("--output-len") { Description = "Tokens generated per turn.", DefaultValueFactory = _ => 16 };
        var command = new Command(
            "multi-turn",
            "TTFT of returning turns of conversations whose prefixes exceed the device KV pool: recompute against the host tier of --kv-offload-size.");
        foreach (var option in new Option[] { conversations, turns, prefixLen, turnLen, outputLen })
            command.Options.Add(option);
        common.AddTo(command);

        command.SetAction((result, _) => CliRunner.RunAsync(result, async () =>
        {
            var args = common.Args(result);
            if (args.KvOffloadSize <= 0)
                throw new CliException("bench multi-turn compares the host KV tier with recompute: give --kv-offload-size (GiB).");
            int numConversations = result.GetValue(conversations), numTurns = result.GetValue(turns);
            int prefix = result.GetValue(prefixLen), userTokens = result.GetValue(turnLen), replyTokens = result.GetValue(outputLen);
            if (numConversations < 1 || numTurns < 2 || prefix < 1 || userTokens < 1 || replyTokens < 1)
                throw new CliException("bench multi-turn needs at least 1 conversation, 2 turns, and positive lengths.");

            JsonObject recompute;
            List<List<int>> recomputedReplies;
            using (var baseline = OfflineBenchmarks.CommonOptions.LoadEngine(args with { KvOffloadSize = 0, PreemptionMode = "recompute" }))
            {
                (recompute, recomputedReplies) = Run(baseline, numConversations, numTurns, prefix, userTokens, replyTokens, args.Seed);
            }

            using var engine = OfflineBenchmarks.CommonOptions.LoadEngine(args);
            var (offload, replies) = Run(engine, numConversations, numTurns, prefix, userTokens, replyTokens, args.Seed);
            offload["outputs_identical_to_recompute"] = replies.Zip(recomputedReplies).All(pair => pair.First.SequenceEqual(pair.Second));

            double baselineTtft = recompute["mean_returning_ttft_ms"]!.GetValue<double>(), offloadTtft = offload["mean_returning_ttft_ms"]!.GetValue<double>();
            var results = new JsonObject { ["recompute"] = recompute, ["offload"] = offload, ["returning_ttft_speedup"] = baselineTtft / offloadTtft };
            await result.InvocationConfiguration.Output.WriteLineAsync(
                $"Returning turns' mean TTFT: recompute {baselineTtft:F2} ms, offload {offloadTtft:F2} ms ({baselineTtft / offloadTtft:F2}x); outputs identical: {offload["outputs_identical_to_recompute"]}");
            var parameters = new JsonObject
            {
                ["num_conversations"] = numConversations,
                ["num_turns"] = numTurns,
                ["prefix_len"] = prefix,
                ["turn_len"] = userTokens,
                ["output_len"] = replyTokens,
                ["kv_cache_memory"] = args.KvCacheMemoryBytes,
                ["kv_offload_size_gib"] = args.KvOffloadSize,
                ["preemption_mode"] = args.PreemptionMode,
            };
            common.WriteReport(result, "multi-turn", args, engine, parameters, results);
            return 0;
        }));
        return command;
    }

    /// <summary>
    /// Every conversation's turns, round robin, one request at a time (so a TTFT is the request's own, not a queue's):
    /// the TTFT summaries of first and returning turns, and every turn's reply in order.
    /// </summary>
    private static (JsonObject Summary, List<List<int>> Replies) Run(LlmEngine engine, int numConversations, int numTurns, int prefixLen, int turnLen, int outputLen, int seed)
    {
        Converse(engine, numConversations, numTurns, prefixLen, turnLen, outputLen, unchecked(seed + 1), "warmup");
        long hitsBefore = engine.Stats.PrefixCacheHits;
        KvOffloadTotals? tierBefore = engine.Stats.KvOffload;
        var (first, returning, replies) = Converse(engine, numConversations, numTurns, prefixLen, turnLen, outputLen, seed, "c");
        var summary = new JsonObject { ["num_returning_turns"] = returning.Count, ["prefix_cache_hit_tokens"] = engine.Stats.PrefixCacheHits - hitsBefore };
        LatencyStats.AddSummary(summary, "first_ttft", first);
        LatencyStats.AddSummary(summary, "returning_ttft", returning, 50, 90, 99);
        if (engine.Stats.KvOffload is { } tier)
        {
            summary["host_tier"] = new JsonObject
            {
                ["loaded_tokens"] = tier.Counters.Hits - tierBefore!.Counters.Hits,
                ["queried_tokens"] = tier.Counters.Queries - tierBefore.Counters.Queries,
                ["store_bytes"] = tier.StoreBytes - tierBefore.StoreBytes,
                ["load_bytes"] = tier.LoadBytes - tierBefore.LoadBytes,
                ["evicted_blocks"] = tier.Counters.Evictions - tierBefore.Counters.Evictions,
            };
        }

        return (summary, replies);
    }

    /// <summary>The conversations' turns; TTFTs of first and returning turns (seconds), and every reply in order.</summary>
    private static (List<double> First, List<double> Returning, List<List<int>> Replies) Converse(
        LlmEngine engine, int numConversations, int numTurns, int prefixLen, int turnLen, int outputLen, int seed, string tag)
    {
        var random = new Random(seed);
        var histories = Enumerable.Range(0, numConversations).Select(_ => RandomTokens(random, prefixLen, engine.VocabSize)).ToList();
        var first = new List<double>();
        var returning = new List<double>();
        var replies = new List<List<int>>();
        var sampling = new SamplingParams { Temperature = 0, MaxTokens = outputLen, IgnoreEos = true };
        for (int turn = 0; turn < numTurns; turn++)
        {
            for (int c = 0; c < numConversations; c++)
            {
                if (turn > 0)
                    histories[c].AddRange(RandomTokens(random, turnLen, engine.VocabSize));
                if (histories[c].Count + outputLen > engine.MaxModelLen)
                    throw new CliException($"Conversation {c} reaches {histories[c].Count + outputLen} tokens at turn {turn}, past --max-model-len {engine.MaxModelLen}: fewer turns or shorter ones.");
                RequestOutput reply = engine.Generate([new GenerateRequest($"{tag}{c}-t{turn}", [.. histories[c]], sampling)])[0];
                List<int> tokens = [.. reply.Outputs.SelectMany(o => o.TokenIdsDelta)];
                replies.Add(tokens);
                histories[c].AddRange(tokens);
                (turn == 0 ? first : returning).Add(reply.Metrics!.TimeToFirstToken);
            }
        }

        return (first, returning, replies);
    }

    private static List<int> RandomTokens(Random random, int count, int vocabSize) => [.. Enumerable.Range(0, count).Select(_ => random.Next(vocabSize))];
}
