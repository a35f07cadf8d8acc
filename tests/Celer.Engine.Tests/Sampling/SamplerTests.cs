using Celer.Engine;

namespace Celer.Engine.Tests.Sampling;

public class SamplerTests
{
    private static readonly int[] NoEos = [];

    private static SamplingState State(SamplingParams p, int[]? prompt = null, long seed = 0)
    {
        p.Validate(vocabSize: 1 << 20);
        return new SamplingState(p, prompt ?? [], seed);
    }

    /// <summary>Samples a copy of the row and returns the token and the row as the sampler left it.</summary>
    private static (int Token, float[] Row) SampleCopy(float[] logits, SamplingState state, int[]? eos = null)
    {
        var row = (float[])logits.Clone();
        var result = Sampler.Sample(row, state, eos ?? NoEos);
        return (result.TokenId, row);
    }

    /// <summary>After a random draw the row holds the filtered unnormalized probabilities: kept = nonzero.</summary>
    private static int[] Kept(float[] row) => [.. Enumerable.Range(0, row.Length).Where(i => row[i] > 0f)];

    private static float[] Ln(params double[] weights) => [.. weights.Select(w => (float)Math.Log(w))];

    [Fact]
    public void Greedy_takes_the_argmax_and_the_lowest_id_on_ties()
    {
        var (token, _) = SampleCopy([1f, 5f, 5f, 2f], State(new() { Temperature = 0f }));
        Assert.Equal(1, token);
    }

    [Fact]
    public void Top_k_keeps_exactly_the_k_largest()
    {
        var logits = LogprobsTests.RandomLogits(1000, seed: 3);
        var expected = Enumerable.Range(0, 1000).OrderByDescending(i => logits[i]).Take(50).Order().ToArray();
        var (token, row) = SampleCopy(logits, State(new() { TopK = 50, Seed = 1 }));
        Assert.Equal(expected, Kept(row));
        Assert.Contains(token, expected);
    }

    [Fact]
    public void Top_k_keeps_ties_with_the_kth_value_as_vLLM()
    {
        var (_, row) = SampleCopy([3f, 2f, 2f, 1f, 2.5f], State(new() { TopK = 2 }));
        Assert.Equal([0, 4], Kept(row));
        (_, row) = SampleCopy([3f, 2f, 2f, 1f], State(new() { TopK = 2 }));
        Assert.Equal([0, 1, 2], Kept(row));
    }

    [Theory]
    [InlineData(0.5f, new[] { 0, 1 })]          // 0.25+0.25 reaches 0.5 exactly: the third is not needed
    [InlineData(0.5001f, new[] { 0, 1, 2 })]
    [InlineData(0.25f, new[] { 0 })]
    [InlineData(0.01f, new[] { 0 })]            // the most likely token always stays
    [InlineData(1f, new[] { 0, 1, 2, 3 })]
    public void Top_p_on_equal_probabilities_keeps_the_smallest_prefix_in_id_order(float topP, int[] expected)
    {
        var (_, row) = SampleCopy([0.7f, 0.7f, 0.7f, 0.7f], State(new() { TopP = topP }));
        Assert.Equal(expected, Kept(row));
    }

    [Theory]
    [InlineData(0.49f, new[] { 2 })]
    [InlineData(0.79f, new[] { 0, 2 })]
    [InlineData(0.81f, new[] { 0, 2, 3 })]
    [InlineData(0.96f, new[] { 0, 1, 2, 3 })]
    public void Top_p_keeps_the_smallest_set_reaching_p(float topP, int[] expected)
    {
        var logits = Ln(0.3, 0.05, 0.5, 0.15);
        var (token, row) = SampleCopy(logits, State(new() { TopP = topP, Seed = 9 }));
        Assert.Equal(expected, Kept(row));
        Assert.Contains(token, expected);
    }

    [Fact]
    public void Top_p_matches_a_sorting_reference_on_a_large_vocabulary()
    {
        const int vocab = 20_000;
        var logits = LogprobsTests.RandomLogits(vocab, seed: 11, scale: 6f);
        const double temperature = 0.8, topP = 0.9;
        double max = logits.Max() / temperature;
        var w = logits.Select(x => Math.Exp(x / temperature - max)).ToArray();
        double target = topP * w.Sum(), massAbove = 0;
        var expected = new List<int>();
        foreach (var id in Enumerable.Range(0, vocab).OrderByDescending(i => w[i]).ThenBy(i => i))
        {
            if (expected.Count > 0 && massAbove >= target)
                break;
            expected.Add(id);
            massAbove += w[id];
        }

        var (token, row) = SampleCopy(logits, State(new() { Temperature = (float)temperature, TopP = (float)topP, Seed = 5 }));
        Assert.Equal(expected.Order(), Kept(row));
        Assert.Contains(token, expected);
    }

    [Fact]
    public void Min_p_drops_tokens_below_min_p_times_the_top_probability()
    {
        var (_, row) = SampleCopy(Ln(0.09, 1.0, 0.5, 0.2, 0.11), State(new() { MinP = 0.1f }));
        Assert.Equal([1, 2, 3, 4], Kept(row));
    }

    [Fact]
    public void Min_p_runs_before_top_p_as_in_vLLM()
    {
        // min_p 0.3 drops 0.1 (< 0.12); top_p 0.75 then sees {0.4, 0.3, 0.2}/0.9 and stops after two.
        // Applied the other way round, top_p would keep three (0.4 + 0.3 < 0.75).
        var (_, row) = SampleCopy(Ln(0.4, 0.3, 0.2, 0.1), State(new() { MinP = 0.3f, TopP = 0.75f }));
        Assert.Equal([0, 1], Kept(row));
    }

    [Fact]
    public void Temperature_scales_before_the_softmax()
    {
        float[] logits = [1f, 0.5f, -0.3f, 2f, 0f];
        var (_, row) = SampleCopy(logits, State(new() { Temperature = 0.7f }));
        for (int i = 0; i < logits.Length; i++)
            Assert.Equal(Math.Exp((logits[i] - 2.0) / 0.7), row[i], 1e-6);
    }

    [Fact]
    public void Penalties_match_the_plain_vLLM_formula()
    {
        var logits = LogprobsTests.RandomLogits(64, seed: 21, scale: 3f);
        int[] prompt = [3, 5, 5, 7, 60];
        int[] output = [5, 9, 9, 9, 11, 3];
        var p = new SamplingParams { Temperature = 0f, RepetitionPenalty = 1.3f, FrequencyPenalty = 0.4f, PresencePenalty = 0.25f };
        var state = State(p, prompt);
        foreach (var t in output)
            state.Append(t);

        var expected = (float[])logits.Clone();
        foreach (var id in prompt.Concat(output).Distinct())
            expected[id] = expected[id] > 0 ? expected[id] / 1.3f : expected[id] * 1.3f;
        foreach (var g in output.GroupBy(t => t))
        {
            expected[g.Key] -= 0.4f * g.Count();
            expected[g.Key] -= 0.25f;
        }

        var (token, row) = SampleCopy(logits, state);
        Assert.Equal(expected, row);
        Assert.Equal(Array.IndexOf(expected, expected.Max()), token);
        // Prompt-only tokens feel the repetition penalty only; unseen tokens nothing.
        Assert.Equal(logits[7] > 0 ? logits[7] / 1.3f : logits[7] * 1.3f, row[7]);
        Assert.Equal(logits[8], row[8]);
    }

    [Fact]
    public void Logit_bias_adds_the_clamped_bias()
    {
        var logits = LogprobsTests.RandomLogits(16, seed: 2);
        var bias = new Dictionary<int, float> { [2] = 5f, [4] = -1e6f, [7] = float.PositiveInfinity };
        var (token, row) = SampleCopy(logits, State(new() { Temperature = 0f, LogitBias = bias }));
        Assert.Equal(logits[2] + 5f, row[2]);
        Assert.Equal(logits[4] - 100f, row[4]);
        Assert.Equal(logits[7] + 100f, row[7]);
        Assert.Equal(logits[0], row[0]);
        Assert.Equal(7, token);
    }

    [Fact]
    public void Allowed_token_ids_mask_everything_else()
    {
        var logits = LogprobsTests.RandomLogits(300, seed: 4);
        int[] allowed = [250, 2, 250, 9, 299];
        var (greedy, row) = SampleCopy(logits, State(new() { Temperature = 0f, AllowedTokenIds = allowed }));
        for (int i = 0; i < row.Length; i++)
            Assert.Equal(allowed.Contains(i) ? logits[i] : float.NegativeInfinity, row[i]);
        Assert.Equal(allowed.Distinct().MaxBy(i => logits[i]), greedy);

        var state = State(new() { Temperature = 2f, AllowedTokenIds = allowed, Seed = 3 });
        var seen = Enumerable.Range(0, 200).Select(_ => SampleCopy(logits, state).Token).ToHashSet();
        Assert.Subset(allowed.ToHashSet(), seen);
        Assert.Equal(4, seen.Count);
    }

    [Fact]
    public void Bad_words_ban_the_last_token_when_the_prefix_ends_the_output()
    {
        var logits = LogprobsTests.RandomLogits(32, seed: 6);
        List<int[]> badWords = [[11, 12], [10, 11, 13], [7], [11, 14, 15], [9, 16], [1, 2, 3, 4]];
        var state = State(new() { Temperature = 0f, BadWords = ["w"], BadWordsTokenIds = badWords }, prompt: [9, 1, 2, 3]);
        state.Append(10);
        state.Append(11);
        var (_, row) = SampleCopy(logits, state);
        var banned = Enumerable.Range(0, 32).Where(i => float.IsNegativeInfinity(row[i])).ToArray();
        Assert.Equal([7, 12, 13], banned);
    }

    [Fact]
    public void Min_tokens_masks_eos_and_stop_token_ids_until_reached()
    {
        float[] logits = [0f, 9f, 1f, 8f, 2f];
        var state = State(new() { Temperature = 0f, MinTokens = 2, StopTokenIds = [3], IgnoreEos = true });
        int[] eos = [1];

        var (token, row) = SampleCopy(logits, state, eos);
        Assert.Equal(4, token);
        Assert.True(float.IsNegativeInfinity(row[1]) && float.IsNegativeInfinity(row[3]));
        state.Append(token);
        Assert.Equal(4, SampleCopy(logits, state, eos).Token);
        state.Append(4);
        Assert.Equal(1, SampleCopy(logits, state, eos).Token);
    }

    [Fact]
    public void A_fully_masked_row_falls_back_to_an_allowed_token()
    {
        var p = new SamplingParams { AllowedTokenIds = [3], MinTokens = 1, StopTokenIds = [3], Seed = 1 };
        Assert.Equal(3, SampleCopy([1f, 2f, 3f, 4f], State(p)).Token);
        Assert.Equal(3, SampleCopy([1f, 2f, 3f, 4f], State(p with { Temperature = 0f })).Token);
    }

    private static int[] Generate(SamplingState state, float[] logits, int steps, SamplingState? interleaved = null)
    {
        var tokens = new int[steps];
        for (int i = 0; i < steps; i++)
        {
            if (interleaved is not null)
                interleaved.Append(SampleCopy(logits, interleaved).Token);
            tokens[i] = SampleCopy(logits, state).Token;
            state.Append(tokens[i]);
        }
        return tokens;
    }

    [Fact]
    public void A_seed_reproduces_the_tokens_whatever_else_is_sampled_alongside()
    {
        var logits = LogprobsTests.RandomLogits(500, seed: 8, scale: 2f);
        var p = new SamplingParams { Temperature = 1f, TopP = 0.95f, FrequencyPenalty = 0.1f, Seed = 1234 };
        var first = Generate(State(p, seed: 1234), logits, 64);
        var second = Generate(State(p, seed: 1234), logits, 64, interleaved: State(p with { Seed = null }, seed: 99));
        var other = Generate(State(p, seed: 1235), logits, 64);
        Assert.Equal(first, second);
        Assert.NotEqual(first, other);
        Assert.True(first.Distinct().Count() > 10, "temperature 1 over 500 near-flat tokens should vary");
    }

    [Fact]
    public void Temperature_sampling_follows_the_softmax_distribution()
    {
        float[] logits = [1f, 0.5f, -0.3f, 2f, 0f];
        const double temperature = 0.7;
        var expected = logits.Select(x => Math.Exp(x / temperature)).ToArray();
        double z = expected.Sum();
        var state = State(new() { Temperature = (float)temperature, Seed = 2024 }, seed: 2024);

        const int draws = 20_000;
        var counts = new int[logits.Length];
        var row = new float[logits.Length];
        for (int i = 0; i < draws; i++)
        {
            logits.CopyTo(row, 0);
            counts[Sampler.Sample(row, state, NoEos).TokenId]++;
        }

        double chi = 0;
        for (int i = 0; i < logits.Length; i++)
        {
            double e = draws * expected[i] / z;
            chi += (counts[i] - e) * (counts[i] - e) / e;
        }
        // 4 degrees of freedom: 18.47 is the 0.999 quantile. The seed is fixed, so the test can't flake.
        Assert.True(chi < 18.47, $"chi-square {chi}: counts {string.Join(",", counts)}");
    }

    [Fact]
    public void Logprobs_come_from_the_raw_logits_before_penalties_temperature_and_top_k()
    {
        var logits = LogprobsTests.RandomLogits(400, seed: 12);
        var p = new SamplingParams
        {
            Temperature = 0.5f, TopK = 3, RepetitionPenalty = 1.5f, Logprobs = 5, Seed = 7,
            LogitBias = new Dictionary<int, float> { [17] = 30f },
        };
        var state = State(p, prompt: [1, 2, 3]);
        var row = (float[])logits.Clone();
        var result = Sampler.Sample(row, state, NoEos);

        Assert.Equal(17, result.TokenId);   // the bias wins the draw…
        var expected = Logprobs.Compute(logits, 17, 5);   // …but the logprobs ignore it
        Assert.NotNull(result.Logprobs);
        Assert.Equal(expected.Chosen, result.Logprobs.Chosen);
        Assert.Equal(expected.Top, result.Logprobs.Top);
        Assert.True(result.Logprobs.Chosen.Rank > 1);
    }

    [Fact]
    public void No_logprobs_unless_asked()
    {
        var result = Sampler.Sample([1f, 2f], State(new()), NoEos);
        Assert.Null(result.Logprobs);
    }

    [Fact]
    public void A_decode_step_allocates_nothing()
    {
        var logits = LogprobsTests.RandomLogits(151_936, seed: 13);
        var row = new float[logits.Length];
        var state = State(new() { Temperature = 0.8f, TopK = 40, TopP = 0.9f, MinP = 0.01f, PresencePenalty = 0.5f, Seed = 1 }, prompt: [1, 2]);
        state.Append(5);
        // Warm the per-thread scratch and let the JIT tier the hot methods up: while it does (call counting, then the
        // tier-1 code installed), the runtime itself can allocate on this thread, which is not the sampler's doing.
        for (int i = 0; i < 40; i++)
        {
            logits.CopyTo(row, 0);
            Sampler.Sample(row, state, NoEos);
        }

        // A sampler that allocates per step allocates in every round; the runtime's one-off work shows in one at most.
        long fewest = long.MaxValue;
        for (int round = 0; round < 3 && fewest > 0; round++)
        {
            long before = GC.GetAllocatedBytesForCurrentThread();
            for (int i = 0; i < 5; i++)
            {
                logits.CopyTo(row, 0);
                Sampler.Sample(row, state, NoEos);
            }

            fewest = Math.Min(fewest, GC.GetAllocatedBytesForCurrentThread() - before);
        }

        Assert.Equal(0, fewest);
    }
}
