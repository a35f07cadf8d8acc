using Celer.Engine.Execution;
using Celer.TestSupport;
using Xunit;

namespace Celer.Engine.Tests.Pooling;

/// <summary>
/// Embeddings against sentence-transformers (<c>SentenceTransformer.forward</c>, fp32, from the bf16 checkpoints) on
/// tiny random embedders in the Hub's layouts, made on the GPU machine by tools/reference/make_pooling_fixtures.py:
/// a Qwen3 embedder as Qwen3-Embedding ships (a bare base model's weights under a ForCausalLM architecture, last-token
/// pooling, normalized), a bare LlamaModel with mean pooling, and a Qwen2 causal LM pooled from its first token.
/// Every case's vector has cosine ≥ 0.9999 with the reference and the same norm; the 150-token case runs in 16-token
/// chunks, and Matryoshka <c>dimensions</c> (the config declared <c>is_matryoshka</c> by <c>--hf-overrides</c>) cut
/// the vector before normalizing, as vLLM does.
/// </summary>
public sealed class SentenceTransformersParityTests
{
    public static TheoryData<string> Fixtures() => new(PoolingFixture.Names());

    internal static EngineArgs Args(string name, string device = "cpu", string dtype = "auto") => new()
    {
        Model = Path.Combine(PoolingFixture.Root, name),
        Runner = "pooling",
        Device = device,
        Dtype = dtype,
        MaxNumBatchedTokens = 16,
        MaxNumSeqs = 16,
        HfOverrides = """{"is_matryoshka": true}""",
        KvCacheMemoryBytes = 16L << 20,
    };

    [Theory]
    [MemberData(nameof(Fixtures))]
    public void Embeddings_match_sentence_transformers(string name)
    {
        PoolingFixture fixture = PoolingFixture.Load(name);
        using LlmEngine engine = ModelLoader.LoadOffline(Args(name)).Engine;
        Assert.Equal(fixture.Pooling switch { "lasttoken" => PoolingType.Last, "mean" => PoolingType.Mean, _ => PoolingType.Cls }, engine.Pooler!.Type);
        Assert.Equal(fixture.Normalize, engine.Pooler.Normalize);
        IReadOnlyList<PoolingFixture.Input> cases = fixture.Cases;

        // A fixture with include_prompt false (llama-embed-mean-prompt) leaves its prompt's tokens out, across the chunks.
        IReadOnlyList<RequestOutput> full = engine.Generate([.. cases.Select((c, i) => GenerateRequest.ForPooling($"f{i}", c.PromptTokenIds, new PoolingParams { ExcludedPromptTokens = c.ExcludedPromptTokens }))]);
        IReadOnlyList<RequestOutput> cut = engine.Generate([.. cases.Select((c, i) => GenerateRequest.ForPooling($"c{i}", c.PromptTokenIds, new PoolingParams { Dimensions = 32, ExcludedPromptTokens = c.ExcludedPromptTokens }))]);
        foreach ((IReadOnlyList<RequestOutput> outputs, bool first32) in new[] { (full, false), (cut, true) })
        {
            foreach (RequestOutput output in outputs)
            {
                PoolingFixture.Input c = cases[int.Parse(output.RequestId[1..], System.Globalization.CultureInfo.InvariantCulture)];
                float[] expected = first32 ? c.EmbeddingFirst32 : c.Embedding;
                float[] actual = output.PoolerOutput!;
                Assert.Equal(expected.Length, actual.Length);
                double cosine = PoolingFixture.Cosine(expected, actual);
                Assert.True(cosine >= 0.9999, $"{name} {output.RequestId} ({c.PromptTokenIds.Length} tokens): cosine {cosine}");
                double ratio = PoolingFixture.Norm(actual) / PoolingFixture.Norm(expected);
                Assert.True(Math.Abs(ratio - 1) < 1e-3, $"{name} {output.RequestId}: norms differ by a factor {ratio}");
            }
        }
    }

    /// <summary>
    /// is_causal false (here by --hf-overrides, as gte-Qwen2's config.json says it): the decoder attends both ways, so the
    /// first token's state, which CLS pooling returns, depends on the tokens after it; under causal attention it cannot.
    /// Such a model reads each input whole (no chunked prefill).
    /// </summary>
    [Fact]
    public void Is_causal_false_lets_the_first_token_see_the_tokens_after_it()
    {
        int[] first = [5, 6, 7, 8, 9], second = [5, 6, 7, 8, 10];
        double Cosine(EngineArgs args, bool wholeSequences)
        {
            using LlmEngine engine = ModelLoader.LoadOffline(args).Engine;
            Assert.Equal(wholeSequences, engine.Pooler!.WholeSequences);
            IReadOnlyList<RequestOutput> outputs = engine.Generate([GenerateRequest.ForPooling("a", first, new PoolingParams()), GenerateRequest.ForPooling("b", second, new PoolingParams())]);
            return PoolingFixture.Cosine(outputs.Single(o => o.RequestId == "a").PoolerOutput!, outputs.Single(o => o.RequestId == "b").PoolerOutput!);
        }

        Assert.Equal(1.0, Cosine(Args("qwen2-embed-cls"), wholeSequences: false), 6);
        double bidirectional = Cosine(Args("qwen2-embed-cls") with { HfOverrides = """{"is_causal": false}""", MaxNumBatchedTokens = null }, wholeSequences: true);
        Assert.True(bidirectional < 0.9999, $"the first token's vectors agree (cosine {bidirectional}) though the last tokens differ");
    }

    /// <summary>A bare base model's architecture (LlamaModel) needs no --runner: it has no head to generate with.</summary>
    [Fact]
    public void A_bare_base_model_is_a_pooling_model_by_itself_and_cannot_generate()
    {
        EngineArgs args = Args("llama-embed-mean");
        using (LlmEngine engine = ModelLoader.LoadOffline(new EngineArgs { Model = args.Model, KvCacheMemoryBytes = args.KvCacheMemoryBytes }).Engine)
        {
            Assert.Equal(PoolingType.Mean, engine.Pooler!.Type);
            // sentence_bert_config.json's max_seq_length (200) caps the inputs below the 256 positions, as vLLM takes it.
            Assert.Equal(200, engine.MaxModelLen);
            var tooLong = Assert.Throws<EngineRequestException>(() => engine.Generate([GenerateRequest.ForPooling("long", new int[201], new PoolingParams())]));
            Assert.Contains("maximum context length is 200", tooLong.Message, StringComparison.Ordinal);
        }

        var e = Assert.Throws<Celer.Models.Weights.ModelLoadException>(() => ModelLoader.LoadOffline(new EngineArgs { Model = args.Model, Runner = "generate" }));
        Assert.Contains("no language-model head", e.Message, StringComparison.Ordinal);
    }
}
