using Celer.Engine.Execution;
using Celer.Models.Weights;
using Celer.TestSupport;
using Celer.Tokenization;
using Xunit;

namespace Celer.Engine.Tests.Pooling;

/// <summary>
/// Encoders and classifiers against sentence-transformers and transformers (fp32, from the bf16 checkpoints) on tiny
/// random models in the Hub's layouts, made on the GPU machine by tools/reference/make_encoder_fixtures.py: a BERT embedder
/// as all-MiniLM ships (mean pooling, normalized, bare BertModel keys), an XLM-RoBERTa embedder as bge-m3 (CLS,
/// normalized; positions past the padding index), BERT and XLM-RoBERTa cross-encoders as ms-marco-MiniLM and
/// bge-reranker ship (CrossEncoder's sigmoid), a three-label BERT classifier, a decoder classifier
/// (Qwen3ForSequenceClassification, last token) and a decoder attending both ways as EmbeddingGemma ships (Gemma3TextModel
/// with use_bidirectional_attention: windows of |q − k| &lt; 17 on its sliding layers, two Dense modules; token ids only).
/// Celer's own tokenizer encodes every text and pair: its ids (and BERT's
/// token types) must be the reference's, so tokenizer and model are checked end to end. Embeddings: cosine ≥ 0.9999;
/// scores and probabilities within 1e-3 (the bars).
/// </summary>
public sealed class EncoderParityTests
{
    private const double ScoreTolerance = 1e-3;

    internal static EngineArgs Args(string name, string device = "cpu", string dtype = "auto") => new()
    {
        Model = Path.Combine(EncoderFixture.Root, name),
        Device = device,
        Dtype = dtype,
        MaxNumSeqs = 8,   // several steps, each holding several whole sequences
        KvCacheMemoryBytes = 16L << 20,
    };

    [Theory]
    [InlineData("bert-embed-mean", PoolingType.Mean)]
    [InlineData("xlmr-embed-cls", PoolingType.Cls)]
    [InlineData("bert-embed-dense", PoolingType.Mean)]   // a Dense module (128 -> 96, tanh) before the normalization
    // EmbeddingGemma's layout: a decoder attending both ways, |q − k| < 17 on its sliding layers, two Dense modules
    [InlineData("gemma3-embed-bidirectional", PoolingType.Mean)]
    public void Embeddings_match_sentence_transformers(string name, PoolingType pooling)
    {
        EncoderFixture fixture = EncoderFixture.Load(name);
        (LlmEngine engine, Tokenizer? tokenizer, _) = ModelLoader.LoadOffline(Args(name));
        using (engine)
        {
            Assert.Equal(pooling, engine.Pooler!.Type);
            Assert.True(engine.Pooler.Normalize);
            Assert.True(engine.Pooler.WholeSequences);
            foreach (EncoderFixture.Input c in fixture.TextCases)
            {
                Assert.Equal(c.PromptTokenIds, tokenizer!.Encode(c.Text!));
            }

            AssertEmbeddings(name, engine, [.. fixture.Cases, .. fixture.TextCases]);
        }
    }

    /// <summary>
    /// A decoder with bidirectional attention only pools: --runner generate is refused at load, naming the reason; and it
    /// reads each input whole, so a token budget below its longest input is refused as an encoder's is.
    /// </summary>
    [Fact]
    public void A_bidirectional_gemma_cannot_generate_nor_chunk_its_inputs()
    {
        var e = Assert.Throws<ModelLoadException>(() => ModelLoader.LoadOffline(Args("gemma3-embed-bidirectional") with { Runner = "generate" }));
        Assert.Contains("bidirectional attention (use_bidirectional_attention, or is_causal false), which cannot generate text", e.Message, StringComparison.Ordinal);
        var budget = Assert.Throws<ArgumentException>(() => ModelLoader.LoadOffline(Args("gemma3-embed-bidirectional") with { MaxNumBatchedTokens = 64 }));
        Assert.Contains("an encoder or EmbeddingGemma, reads each input whole", budget.Message, StringComparison.Ordinal);
    }

    /// <summary>The same embeddings in bf16 weights and fp32 math served from a bf16 copy: an encoder in the model dtype on the CPU.</summary>
    internal static void AssertEmbeddings(string name, LlmEngine engine, IReadOnlyList<EncoderFixture.Input> cases, double minCosine = 0.9999)
    {
        IReadOnlyList<RequestOutput> outputs = engine.Generate([.. cases.Select((c, i) => GenerateRequest.ForPooling($"e{i}", c.PromptTokenIds, new PoolingParams()))]);
        foreach (RequestOutput output in outputs)
        {
            EncoderFixture.Input c = cases[int.Parse(output.RequestId[1..], System.Globalization.CultureInfo.InvariantCulture)];
            double cosine = PoolingFixture.Cosine(c.Embedding!, output.PoolerOutput!);
            Assert.True(cosine >= minCosine, $"{name} {output.RequestId} ({c.PromptTokenIds.Length} tokens): cosine {cosine}");
            double ratio = PoolingFixture.Norm(output.PoolerOutput!) / PoolingFixture.Norm(c.Embedding!);
            Assert.True(Math.Abs(ratio - 1) < 1e-3, $"{name} {output.RequestId}: norms differ by a factor {ratio}");
        }
    }

    /// <summary>
    /// An encoder's requests end in the step that computes them, so its cache holds one step's sequences (the budget's
    /// blocks and a part-filled block per sequence), not --max-num-seqs whole contexts, and two steps' with async
    /// scheduling (the step in flight keeps its blocks while the next is built); a 512-token budget then takes the
    /// fixture's cases over several steps, embedded as before, either way.
    /// </summary>
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task An_encoders_cache_holds_one_steps_sequences(bool asyncScheduling)
    {
        EncoderFixture fixture = EncoderFixture.Load("bert-embed-mean");
        EngineArgs args = new() { Model = fixture.Directory, MaxNumSeqs = 8, MaxNumBatchedTokens = 512, KvCacheMemoryBytes = 64L << 20, AsyncScheduling = asyncScheduling };
        await using (LoadedModel loaded = ModelLoader.Load(args))
        {
            Assert.Equal(((asyncScheduling ? 2 : 1) * ((512 / 16) + 8)) + 1, loaded.NumKvBlocks);
        }

        using LlmEngine engine = ModelLoader.LoadOffline(args).Engine;
        AssertEmbeddings("bert-embed-mean", engine, [.. fixture.Cases, .. fixture.TextCases]);
    }

    [Theory]
    [InlineData("bert-cross-encoder")]
    [InlineData("xlmr-cross-encoder")]
    public void Cross_encoder_scores_match_CrossEncoder_predict(string name)
    {
        EncoderFixture fixture = EncoderFixture.Load(name);
        (LlmEngine engine, Tokenizer? tokenizer, _) = ModelLoader.LoadOffline(Args(name));
        using (engine)
        {
            Assert.Equal(PoolingType.Cls, engine.Pooler!.Type);
            Assert.Equal("torch.nn.modules.activation.Sigmoid", engine.Pooler.Classifier!.CrossEncoderActivation);
            AssertScores(name, engine, tokenizer!, fixture.Pairs);
        }
    }

    internal static void AssertScores(string name, LlmEngine engine, Tokenizer tokenizer, IReadOnlyList<EncoderFixture.Pair> pairs, double tolerance = ScoreTolerance)
    {
        var requests = new List<GenerateRequest>();
        for (int i = 0; i < pairs.Count; i++)
        {
            EncodedInput encoded = tokenizer.EncodeWithTypes(pairs[i].Query, pairs[i].Document);
            Assert.Equal(pairs[i].PromptTokenIds, encoded.InputIds);
            if (pairs[i].TokenTypeIds is { } types)
            {
                Assert.Equal(types, encoded.TokenTypeIds);
            }

            bool typed = engine.Pooler!.TokenTypes > 1;
            requests.Add(GenerateRequest.ForPooling($"p{i}", encoded.InputIds, new PoolingParams { Task = PoolingTask.Score, TokenTypeIds = typed ? encoded.TokenTypeIds : null }));
        }

        foreach (RequestOutput output in engine.Generate(requests))
        {
            EncoderFixture.Pair pair = pairs[int.Parse(output.RequestId[1..], System.Globalization.CultureInfo.InvariantCulture)];
            float score = Assert.Single(output.PoolerOutput!);
            Assert.True(Math.Abs(score - pair.Score) <= tolerance, $"{name} {output.RequestId}: score {score}, CrossEncoder {pair.Score}");
        }
    }

    /// <summary>BERT's token types matter: the same ids scored as one segment give another score (so the types reach the embeddings).</summary>
    [Fact]
    public void Bert_pairs_are_scored_with_their_token_types()
    {
        EncoderFixture fixture = EncoderFixture.Load("bert-cross-encoder");
        using LlmEngine engine = ModelLoader.LoadOffline(Args("bert-cross-encoder")).Engine;
        EncoderFixture.Pair pair = fixture.Pairs[0];
        float Score(IReadOnlyList<int>? types) => engine.Generate(
            [GenerateRequest.ForPooling("t", pair.PromptTokenIds, new PoolingParams { Task = PoolingTask.Score, TokenTypeIds = types })])[0].PoolerOutput![0];
        Assert.True(Math.Abs(Score(pair.TokenTypeIds) - pair.Score) <= ScoreTolerance);
        Assert.True(Math.Abs(Score(null) - pair.Score) > 10 * ScoreTolerance, "token types changed nothing");
    }

    [Theory]
    [InlineData("bert-classifier", 16384)]
    [InlineData("qwen3-seq-cls", 16)]   // a decoder classifier runs in chunks of 16 tokens
    public void Classifier_probabilities_match_transformers(string name, int budget)
    {
        EncoderFixture fixture = EncoderFixture.Load(name);
        EngineArgs args = Args(name);
        (LlmEngine engine, Tokenizer? tokenizer, _) = ModelLoader.LoadOffline(new EngineArgs
        {
            Model = args.Model, MaxNumSeqs = 8, KvCacheMemoryBytes = args.KvCacheMemoryBytes, MaxNumBatchedTokens = budget,
        });
        using (engine)
        {
            Assert.Equal(name.StartsWith("qwen3", StringComparison.Ordinal) ? PoolingType.Last : PoolingType.Cls, engine.Pooler!.Type);
            if (fixture.Labels.Count > 0)
            {
                Assert.Equal(fixture.Labels, engine.Pooler.Classifier!.Labels);
            }

            IReadOnlyList<EncoderFixture.Input> cases = fixture.Cases;
            IReadOnlyList<RequestOutput> outputs = engine.Generate([.. cases.Select((c, i) => GenerateRequest.ForPooling($"c{i}", c.PromptTokenIds, new PoolingParams { Task = PoolingTask.Classify }))]);
            foreach (RequestOutput output in outputs)
            {
                EncoderFixture.Input c = cases[int.Parse(output.RequestId[1..], System.Globalization.CultureInfo.InvariantCulture)];
                if (c.Text is not null)
                {
                    Assert.Equal(c.PromptTokenIds, tokenizer!.Encode(c.Text));
                }

                float[] expected = c.Probs ?? EncoderFixture.Softmax(c.Logits!);
                float[] actual = output.PoolerOutput!;
                Assert.Equal(expected.Length, actual.Length);
                for (int k = 0; k < expected.Length; k++)
                {
                    Assert.True(Math.Abs(actual[k] - expected[k]) <= ScoreTolerance, $"{name} {output.RequestId} label {k}: {actual[k]}, transformers {expected[k]}");
                }
            }
        }
    }

    [Fact]
    public void Encoders_read_whole_inputs_and_refuse_what_they_cannot_do()
    {
        EngineArgs args = Args("bert-embed-mean");
        using (LlmEngine engine = ModelLoader.LoadOffline(args).Engine)
        {
            // sentence_bert_config.json's max_seq_length (256) caps the 512 positions.
            Assert.Equal(256, engine.MaxModelLen);
            var classify = Assert.Throws<EngineRequestException>(() => engine.Generate([GenerateRequest.ForPooling("c", [2, 3], new PoolingParams { Task = PoolingTask.Classify })]));
            Assert.Contains("no classifier head", classify.Message, StringComparison.Ordinal);
            var types = Assert.Throws<EngineRequestException>(() => engine.Generate([GenerateRequest.ForPooling("t", [2, 3], new PoolingParams { TokenTypeIds = [0, 2] })]));
            Assert.Contains("token_type_ids must be in [0, 2)", types.Message, StringComparison.Ordinal);
        }

        // RoBERTa's 514 positions start past its padding index (1): 512 tokens.
        using (LlmEngine xlmr = ModelLoader.LoadOffline(Args("xlmr-embed-cls")).Engine)
        {
            Assert.Equal(512, xlmr.MaxModelLen);
        }

        var budget = Assert.Throws<ArgumentException>(() => ModelLoader.LoadOffline(new EngineArgs { Model = args.Model, MaxNumBatchedTokens = 64, MaxNumSeqs = 8, KvCacheMemoryBytes = args.KvCacheMemoryBytes }));
        Assert.Contains("reads each input whole", budget.Message, StringComparison.Ordinal);
        var generate = Assert.Throws<ModelLoadException>(() => ModelLoader.LoadOffline(new EngineArgs { Model = args.Model, Runner = "generate" }));
        Assert.Contains("no language-model head", generate.Message, StringComparison.Ordinal);
        using LlmEngine classifier = ModelLoader.LoadOffline(Args("bert-cross-encoder")).Engine;
        var embed = Assert.Throws<EngineRequestException>(() => classifier.Generate([GenerateRequest.ForPooling("e", [2, 3], new PoolingParams())]));
        Assert.Contains("computes no embeddings", embed.Message, StringComparison.Ordinal);
    }
}
