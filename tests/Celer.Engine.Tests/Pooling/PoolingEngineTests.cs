using Celer.Engine.Execution;
using Celer.Models.Config;
using Celer.Models.Weights;
using Celer.TestSupport;
using Xunit;

namespace Celer.Engine.Tests.Pooling;

/// <summary>
/// Pooling requests through the whole engine on the CPU, on a generative fixture turned into an embedder
/// (<c>--convert embed</c>): a vector per request, the same whether the prompt ran whole or in 16-token chunks, alone or
/// batched, with synchronous steps or async scheduling (each step's rows read while the next runs), and under
/// preemption, for each pooling type; and the refusals of requests the model cannot serve.
/// </summary>
public sealed class PoolingEngineTests
{
    private static readonly string Model = Path.Combine(RepoPaths.FixtureModels, "llama-gqa-bf16-v4config");

    private static LlmEngine Engine(
        string? poolerConfig = null, int maxNumBatchedTokens = 512, string convert = "embed", bool prefixCaching = true, bool asyncScheduling = false,
        int maxModelLen = 256, long? kvCacheBytes = null) =>
        ModelLoader.LoadOffline(new EngineArgs
        {
            Model = Model,
            Convert = convert,
            PoolerConfig = poolerConfig,
            MaxModelLen = maxModelLen,
            MaxNumBatchedTokens = maxNumBatchedTokens,
            MaxNumSeqs = 16,
            EnablePrefixCaching = prefixCaching,
            AsyncScheduling = asyncScheduling,
            KvCacheMemoryBytes = kvCacheBytes,
        }).Engine;

    private static int[] Prompt(int length, int salt) => [.. Enumerable.Range(0, length).Select(t => (t * 13 + salt * 7) % 500 + 5)];

    private static float[] Embed(LlmEngine engine, int[] prompt, PoolingParams? pooling = null) =>
        engine.Generate([GenerateRequest.ForPooling("solo", prompt, pooling ?? new PoolingParams())])[0].PoolerOutput!;

    [Theory]
    [InlineData("LAST", false)]
    [InlineData("MEAN", false)]
    [InlineData("CLS", false)]
    [InlineData("LAST", true)]
    [InlineData("MEAN", true)]
    [InlineData("CLS", true)]
    public void A_vector_is_the_same_chunked_or_whole_and_solo_or_batched(string type, bool asyncScheduling)
    {
        string config = $$"""{"pooling_type": "{{type}}"}""";
        int[][] prompts = [Prompt(1, 1), Prompt(37, 2), Prompt(70, 3), Prompt(16, 4)];
        float[][] solo;
        using (LlmEngine whole = Engine(config))
        {
            Assert.Equal(PoolerConfig.ParseType(type), whole.Pooler!.Type);
            solo = [.. prompts.Select(p => Embed(whole, p))];
        }

        using LlmEngine chunked = Engine(config, maxNumBatchedTokens: 16, asyncScheduling: asyncScheduling);
        AssertVectors(type, solo, chunked.Generate([.. prompts.Select((p, i) => GenerateRequest.ForPooling($"r{i}", p, new PoolingParams()))]));

        // A decoder embedder is normalized by default; the vectors differ between prompts.
        Assert.All(solo, v => Assert.Equal(1.0, Math.Sqrt(v.Sum(x => (double)x * x)), 4));
        Assert.NotEqual(solo[1], solo[2]);
    }

    /// <summary>
    /// Async scheduling with a KV pool that holds two of the six prompts: requests are preempted, some while their last
    /// chunk's rows are still on the way (they must neither run again before those rows arrive nor lose earlier chunks'
    /// rows), and every vector equals the one computed alone with synchronous steps.
    /// </summary>
    [Fact]
    public void Async_pooling_under_preemption_gives_the_vectors_of_solo_runs()
    {
        const string config = """{"pooling_type": "MEAN"}""";
        int[][] prompts = [.. Enumerable.Range(0, 6).Select(i => Prompt(60 + (7 * i), 10 + i))];
        float[][] solo;
        using (LlmEngine whole = Engine(config))
        {
            solo = [.. prompts.Select(p => Embed(whole, p))];
        }

        ModelConfig model = ModelConfig.Load(Model);
        long blockBytes = 2L * model.NumHiddenLayers * 16 * model.NumKeyValueHeads * model.HeadDim * sizeof(float);
        using LlmEngine tight = Engine(config, maxNumBatchedTokens: 64, asyncScheduling: true, maxModelLen: 96, kvCacheBytes: 8 * blockBytes);
        AssertVectors("MEAN", solo, tight.Generate([.. prompts.Select((p, i) => GenerateRequest.ForPooling($"r{i}", p, new PoolingParams()))]));
        Assert.True(tight.Stats.NumPreemptions > 0, "the pool was meant to force preemptions");
    }

    /// <summary>Each output ("r{i}") is finished, carries no tokens and equals <paramref name="expected"/>[i] within 1e-4.</summary>
    private static void AssertVectors(string type, float[][] expected, IReadOnlyList<RequestOutput> outputs)
    {
        Assert.Equal(expected.Length, outputs.Count);
        foreach (RequestOutput output in outputs)
        {
            float[] vector = expected[int.Parse(output.RequestId[1..], System.Globalization.CultureInfo.InvariantCulture)];
            Assert.True(output.Finished);
            Assert.Equal(FinishReason.Stop, output.Outputs[0].FinishReason);
            Assert.Empty(output.Outputs[0].TokenIdsDelta);
            Assert.Equal(vector.Length, output.PoolerOutput!.Length);
            for (int i = 0; i < vector.Length; i++)
            {
                Assert.True(Math.Abs(vector[i] - output.PoolerOutput[i]) < 1e-4f, $"{type} {output.RequestId}[{i}]: {output.PoolerOutput[i]} vs {vector[i]}");
            }
        }
    }

    [Fact]
    public void Last_token_pooling_reads_the_prefix_cache_and_mean_pooling_does_not()
    {
        int[] shared = Prompt(48, 5), longer = [.. shared, .. Prompt(9, 6)];
        foreach (string type in (string[])["LAST", "MEAN"])
        {
            float[] cold, warm;
            using (LlmEngine engine = Engine($$"""{"pooling_type": "{{type}}"}""", prefixCaching: false))
            {
                cold = Embed(engine, longer);
            }

            using (LlmEngine engine = Engine($$"""{"pooling_type": "{{type}}"}"""))
            {
                Embed(engine, shared);
                RequestOutput output = engine.Generate([GenerateRequest.ForPooling("hit", longer, new PoolingParams())])[0];
                warm = output.PoolerOutput!;
                Assert.Equal(type == "LAST" ? 48 : 0, output.NumCachedTokens);
            }

            Assert.Equal(cold.Length, warm.Length);
            Assert.All(cold.Zip(warm), p => Assert.True(Math.Abs(p.First - p.Second) < 1e-4f, $"{type}: {p.First} vs {p.Second}"));
        }
    }

    [Fact]
    public void Normalize_can_be_turned_off_per_request_and_by_the_pooler_config()
    {
        using LlmEngine engine = Engine("""{"normalize": false}""");
        float[] raw = Embed(engine, Prompt(20, 7));
        float[] normalized = Embed(engine, Prompt(20, 7), new PoolingParams { Normalize = true });
        double norm = Math.Sqrt(raw.Sum(x => (double)x * x));
        Assert.NotEqual(1.0, norm, 3);
        // The second request reads the first's cached prompt blocks and computes only the rest (a short causal run,
        // attended row by row on the CPU), so the two vectors agree to rounding, not bit for bit: within 1e-5 (an
        // Assert.Equal to 5 decimal places rounds both sides and fails when they straddle a rounding boundary).
        for (int i = 0; i < raw.Length; i++)
        {
            Assert.True(Math.Abs((raw[i] / norm) - normalized[i]) < 1e-5, $"{i}: {raw[i] / norm} vs {normalized[i]}");
        }
    }

    [Fact]
    public void Requests_the_model_cannot_serve_are_refused()
    {
        using (LlmEngine engine = Engine())
        {
            // Dimensions need a Matryoshka model; generation needs a generative one; the input must fit the context.
            var e = Assert.Throws<EngineRequestException>(() => Embed(engine, Prompt(5, 1), new PoolingParams { Dimensions = 8 }));
            Assert.Contains("matryoshka", e.Message, StringComparison.Ordinal);
            e = Assert.Throws<EngineRequestException>(() => engine.Generate([new GenerateRequest("g", Prompt(5, 1), new SamplingParams { MaxTokens = 4 })]));
            Assert.Contains("pooling model", e.Message, StringComparison.Ordinal);
            e = Assert.Throws<EngineRequestException>(() => Embed(engine, Prompt(257, 1)));
            Assert.Contains("maximum context length is 256", e.Message, StringComparison.Ordinal);
            Assert.NotEmpty(Embed(engine, Prompt(256, 1)));   // a whole context is fine: nothing follows it
        }

        using (LlmEngine generative = Engine(convert: "none"))
        {
            Assert.Null(generative.Pooler);
            var e = Assert.Throws<EngineRequestException>(() => Embed(generative, Prompt(5, 1)));
            Assert.Contains("generative model", e.Message, StringComparison.Ordinal);
        }

        var bad = Assert.Throws<ModelLoadException>(() => Engine("""{"pooling_type": "STEP"}"""));
        Assert.Contains("LAST, MEAN, CLS or MAX", bad.Message, StringComparison.Ordinal);
        bad = Assert.Throws<ModelLoadException>(() => Engine("""{"softmax": true}"""));
        Assert.Contains("'softmax' is not supported", bad.Message, StringComparison.Ordinal);
    }
}
