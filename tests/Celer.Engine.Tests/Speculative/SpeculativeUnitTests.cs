using Celer.Engine.Speculative;
using Xunit;

namespace Celer.Engine.Tests.Speculative;

/// <summary>
/// The pieces of n-gram speculative decoding: --speculative-config as vLLM reads it, prompt lookup, and the
/// verification rule, which must leave the sampling distribution exactly the target's (vLLM's test_rejection_sampler:
/// the empirical distribution of many draws against the target, for drafts the target likes and dislikes).
/// </summary>
public sealed class SpeculativeUnitTests
{
    [Fact]
    public void The_config_takes_vllms_fields_and_defaults()
    {
        Assert.Equal(new SpeculativeConfig("ngram", 4, 5, 5), SpeculativeConfig.Parse("""{"method": "ngram", "num_speculative_tokens": 4}"""));
        Assert.Equal(new SpeculativeConfig("ngram", 2, 3, 3), SpeculativeConfig.Parse("""{"method": "ngram", "num_speculative_tokens": 2, "prompt_lookup_max": 3}"""));
        Assert.Equal(new SpeculativeConfig("ngram", 2, 2, 2), SpeculativeConfig.Parse("""{"method": "ngram", "num_speculative_tokens": 2, "prompt_lookup_min": 2}"""));
        Assert.Equal(new SpeculativeConfig("ngram", 3, 1, 4), SpeculativeConfig.Parse("""{"model": "[ngram]", "num_speculative_tokens": 3, "prompt_lookup_min": 1, "prompt_lookup_max": 4}"""));
        Assert.Equal(8, SpeculativeConfig.Parse("""{"method": "ngram", "num_speculative_tokens": 4, "disable_by_batch_size": 8}""")!.DisableByBatchSize);
        Assert.Equal(new SpeculativeConfig("draft_model", 4, 0, 0, null, "/m/draft"), SpeculativeConfig.Parse("""{"method": "draft_model", "model": "/m/draft", "num_speculative_tokens": 4}"""));
        // vLLM reads a model path without a method as a draft model.
        SpeculativeConfig draft = SpeculativeConfig.Parse("""{"model": "/m/draft", "num_speculative_tokens": 2, "draft_tensor_parallel_size": 1}""")!;
        Assert.Equal(("draft_model", "/m/draft", 2), (draft.Method, draft.Model, draft.NumLookaheadTokens));
        Assert.Equal(0, SpeculativeConfig.Parse("""{"method": "ngram", "num_speculative_tokens": 4}""")!.NumLookaheadTokens);
        // EAGLE heads: named, or inferred from the head's name as vLLM does ("eagle-" for EAGLE-1, "eagle3" for EAGLE-3).
        Assert.Equal(new SpeculativeConfig("eagle3", 3, 0, 0, null, "/h"), SpeculativeConfig.Parse("""{"method": "eagle3", "model": "/h", "num_speculative_tokens": 3}"""));
        Assert.Equal("eagle3", SpeculativeConfig.Parse("""{"model": "yuhuili/EAGLE3-LLaMA3.1-Instruct-8B", "num_speculative_tokens": 3}""")!.Method);
        Assert.Equal("eagle", SpeculativeConfig.Parse("""{"model": "yuhuili/EAGLE-LLaMA3-Instruct-8B", "num_speculative_tokens": 3}""")!.Method);
        Assert.Equal(3, SpeculativeConfig.Parse("""{"method": "eagle", "model": "/h", "num_speculative_tokens": 3}""")!.NumLookaheadTokens);
        Assert.Null(SpeculativeConfig.Parse(null));
        Assert.Null(SpeculativeConfig.Parse("  "));
    }

    [Theory]
    [InlineData("""{"method": "eagle3", "num_speculative_tokens": 3}""", "eagle3 needs 'model', the directory of the EAGLE-3 head")]
    [InlineData("""{"method": "medusa", "model": "m", "num_speculative_tokens": 3}""", "method 'medusa' needs a kind of draft head Celer does not run yet")]
    [InlineData("""{"method": "eagle", "model": "h", "num_speculative_tokens": 3, "prompt_lookup_max": 2}""", "'prompt_lookup_max' belongs to the ngram method, not eagle")]
    [InlineData("""{"method": "draft_model", "num_speculative_tokens": 3}""", "draft_model needs 'model'")]
    [InlineData("""{"method": "draft_model", "model": "d", "num_speculative_tokens": 3, "prompt_lookup_max": 3}""", "'prompt_lookup_max' belongs to the ngram method")]
    [InlineData("""{"method": "draft_model", "model": "d", "num_speculative_tokens": 3, "draft_tensor_parallel_size": 2}""", "'draft_tensor_parallel_size' must be 1")]
    [InlineData("""{"method": "lookahead", "num_speculative_tokens": 3}""", "'lookahead' is not a speculative decoding method")]
    [InlineData("""{"method": "ngram"}""", "'num_speculative_tokens' is required")]
    [InlineData("""{"method": "ngram", "num_speculative_tokens": 0}""", "must be at least 1")]
    [InlineData("""{"method": "ngram", "num_speculative_tokens": 2, "prompt_lookup_min": 4, "prompt_lookup_max": 2}""", "must not exceed")]
    [InlineData("""{"method": "ngram", "num_speculative_tokens": 2, "prompt_lookup_min": 0}""", "at least 1")]
    [InlineData("""{"method": "ngram", "num_speculative_tokens": "4"}""", "must be an integer")]
    [InlineData("""{"method": "ngram", "num_speculative_tokens": 4, "acceptance_method": "typical"}""", "'acceptance_method' is not supported")]
    [InlineData("""{"method": "ngram", "num_speculative_tokens": 4, "disable_by_batch_size": 1}""", "'disable_by_batch_size' must be at least 2")]
    [InlineData("""[1, 2]""", "must be a JSON object")]
    [InlineData("""{"method": """, "not valid JSON")]
    public void A_bad_config_is_refused_naming_the_field(string json, string expected)
    {
        var e = Assert.Throws<ArgumentException>(() => SpeculativeConfig.Parse(json));
        Assert.Contains(expected, e.Message, StringComparison.Ordinal);
        Assert.Contains("--speculative-config", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Prompt_lookup_takes_the_longest_suffix_at_its_latest_earlier_occurrence()
    {
        var proposer = new NgramProposer(minN: 1, maxN: 3, k: 3);
        // [1, 5, 6] occurs nowhere earlier; [5, 6] at 1 and 6, and the later one is followed by 9, 4, 1.
        Assert.Equal([9, 4, 1], proposer.Propose([3, 5, 6, 7, 8, 0, 5, 6, 9, 4, 1, 5, 6], 3));
        // The longest match wins over a later shorter one: [1, 2, 3] at 0 → 4; [3] alone would give 7.
        Assert.Equal([4, 3, 7], proposer.Propose([1, 2, 3, 4, 3, 7, 1, 2, 3], 3));
        Assert.Equal([4], proposer.Propose([1, 2, 3, 4, 3, 7, 1, 2, 3], 1));
        Assert.Empty(proposer.Propose([1, 2, 3, 4], 3));   // no earlier occurrence of any suffix
        Assert.Empty(proposer.Propose([1, 2, 1], 0));
        // A repeated token continues itself (the occurrence may overlap the suffix).
        Assert.Equal([7], proposer.Propose([7, 7, 7], 3));   // only one token follows the occurrence
        Assert.Empty(new NgramProposer(minN: 2, maxN: 2, k: 3).Propose([1, 2, 3, 2], 3));   // only 1-grams match
        Assert.True(new NgramProposer(1, 2, 3, disableByBatchSize: 4).ProposesFor(3));
        Assert.False(new NgramProposer(1, 2, 3, disableByBatchSize: 4).ProposesFor(4));
    }

    [Theory]
    [InlineData(2, 0f)]    // the target's most likely token
    [InlineData(4, 0f)]    // a token the target rarely draws
    [InlineData(0, 0.9f)]  // top_p removes it: it can never be accepted
    public void Verification_keeps_the_target_distribution(int draft, float topPCut)
    {
        float[] logits = [-1.5f, 0.2f, 1.4f, 0.9f, -2.5f];
        var p = new SamplingParams { Temperature = 0.7f, TopP = topPCut > 0 ? topPCut : 1f, Seed = 11 };
        var state = new SamplingState(p, [], 11);
        float[] target = TargetDistribution(logits, p);
        const int Draws = 200_000;
        var counts = new int[logits.Length];
        int accepted = 0;
        for (int i = 0; i < Draws; i++)
        {
            float[] row = (float[])logits.Clone();
            (SampleResult result, bool ok) = Sampler.Verify(row, state, [], draft);
            counts[result.TokenId]++;
            accepted += ok ? 1 : 0;
        }

        for (int t = 0; t < logits.Length; t++)
        {
            // Five standard deviations of a binomial count.
            double sd = Math.Sqrt(Draws * target[t] * (1 - target[t]));
            Assert.True(Math.Abs(counts[t] - Draws * target[t]) <= 5 * sd + 1, $"token {t}: {counts[t]} draws, expected {Draws * target[t]:F0}");
        }

        Assert.Equal(counts[draft], accepted);   // the draft is drawn exactly when it is accepted
    }

    [Fact]
    public void Greedy_verification_accepts_exactly_the_argmax()
    {
        var state = new SamplingState(new SamplingParams { Temperature = 0 }, [], 0);
        Assert.Equal((2, true), Verify([0.1f, 0.3f, 0.9f], state, 2));
        Assert.Equal((2, false), Verify([0.1f, 0.3f, 0.9f], state, 1));
    }

    private static (int, bool) Verify(float[] logits, SamplingState state, int draft)
    {
        (SampleResult result, bool accepted) = Sampler.Verify(logits, state, [], draft);
        return (result.TokenId, accepted);
    }

    /// <summary>softmax(logits / T), then top_p's smallest most-likely set, renormalized, in double.</summary>
    private static float[] TargetDistribution(float[] logits, SamplingParams p)
    {
        double[] w = [.. logits.Select(x => Math.Exp(x / p.Temperature))];
        double total = w.Sum();
        int[] order = [.. Enumerable.Range(0, w.Length).OrderByDescending(i => w[i])];
        double mass = 0;
        var keep = new bool[w.Length];
        foreach (int i in order)
        {
            if (mass >= p.TopP * total)
            {
                break;
            }

            keep[i] = true;
            mass += w[i];
        }

        double kept = Enumerable.Range(0, w.Length).Where(i => keep[i]).Sum(i => w[i]);
        return [.. Enumerable.Range(0, w.Length).Select(i => keep[i] ? (float)(w[i] / kept) : 0f)];
    }
}
