using Celer.Engine.Execution;
using Celer.Models.Weights;
using Celer.TestSupport;
using Celer.Tokenization;
using Xunit;

namespace Celer.Engine.Tests.Pooling;

/// <summary>
/// vLLM's LLM-as-reranker conversion (how Qwen3-Reranker is served: <c>--hf-overrides</c> with <c>architectures</c>
/// <c>…ForSequenceClassification</c>, <c>classifier_from_token</c> and <c>method</c> or <c>is_original_qwen3_reranker</c>),
/// on the shipped model: the converted classifier must score a prompt exactly as the causal LM's own next-token
/// distribution says, which the generative path (checked against transformers elsewhere) gives as logprobs of the
/// whole vocabulary. from_2_way_softmax's score is softmax over the two tokens' logits, the second's share;
/// no_post_processing's probabilities are that softmax itself.
/// </summary>
public sealed class LlmRerankerTests
{
    private const string No = "def", Yes = "return";   // two tokens of the shipped tokenizer's vocabulary

    private static readonly string[] Texts = ["def add(a, b):\n    ", "import os\nx = 1\n", "class A:\n    def f(self):"];

    private static EngineArgs Args(string? overrides = null) => new()
    {
        Model = RepoPaths.DefaultModel, HfOverrides = overrides, MaxLogprobs = 8192, MaxNumSeqs = 8, KvCacheMemoryBytes = 32L << 20,
    };

    private static string Converted(string method) =>
        $$"""{"architectures": ["LlamaForSequenceClassification"], "classifier_from_token": ["{{No}}", "{{Yes}}"], "method": "{{method}}"}""";

    [Fact]
    public void The_converted_head_scores_as_the_causal_LMs_two_token_softmax()
    {
        (LlmEngine generator, Tokenizer? tokenizer, _) = ModelLoader.LoadOffline(Args());
        int no = tokenizer!.TokenToId(No)!.Value, yes = tokenizer.TokenToId(Yes)!.Value;
        int[][] prompts = [.. Texts.Select(t => tokenizer.Encode(t))];
        var expected = new double[prompts.Length];
        using (generator)
        {
            for (int i = 0; i < prompts.Length; i++)
            {
                RequestOutput output = generator.Generate([new GenerateRequest($"g{i}", prompts[i], new SamplingParams { MaxTokens = 1, Temperature = 0, Logprobs = 8192 })])[0];
                IReadOnlyList<TokenLogprob> top = output.Outputs[0].LogprobsDelta![0].Top;
                double lNo = top.Single(t => t.TokenId == no).Logprob, lYes = top.Single(t => t.TokenId == yes).Logprob;
                expected[i] = Math.Exp(lYes) / (Math.Exp(lYes) + Math.Exp(lNo));
            }
        }

        using (LlmEngine reranker = ModelLoader.LoadOffline(Args(Converted("from_2_way_softmax"))).Engine)
        {
            Assert.Equal(1, reranker.Pooler!.Classifier!.NumLabels);
            Assert.False(reranker.Pooler.Classifier.UsePadToken);
            Assert.Equal(PoolingType.Last, reranker.Pooler.Type);
            IReadOnlyList<RequestOutput> scores = reranker.Generate([.. prompts.Select((p, i) => GenerateRequest.ForPooling($"s{i}", p, new PoolingParams { Task = PoolingTask.Score }))]);
            foreach (RequestOutput s in scores)
            {
                int i = s.RequestId[1] - '0';
                Assert.True(Math.Abs(s.PoolerOutput![0] - expected[i]) < 1e-4, $"prompt {i}: score {s.PoolerOutput[0]}, causal LM {expected[i]}");
            }
        }

        using LlmEngine twoLabels = ModelLoader.LoadOffline(Args(Converted("no_post_processing"))).Engine;
        Assert.Equal(2, twoLabels.Pooler!.Classifier!.NumLabels);
        for (int i = 0; i < prompts.Length; i++)
        {
            float[] probs = twoLabels.Generate([GenerateRequest.ForPooling("c", prompts[i], new PoolingParams { Task = PoolingTask.Classify })])[0].PoolerOutput!;
            Assert.True(Math.Abs(probs[1] - expected[i]) < 1e-4 && Math.Abs(probs[0] - (1 - expected[i])) < 1e-4, $"prompt {i}: {probs[0]}, {probs[1]}");
        }
    }

    /// <summary>--convert classify names the …ForSequenceClassification itself: the same head as the override of the architecture.</summary>
    [Fact]
    public void Convert_classify_reads_the_causal_LM_as_its_classifier()
    {
        int[] prompt = ModelLoader.LoadOffline(Args()).Tokenizer!.Encode(Texts[0]);
        float Score(EngineArgs args)
        {
            using LlmEngine engine = ModelLoader.LoadOffline(args).Engine;
            return engine.Generate([GenerateRequest.ForPooling("s", prompt, new PoolingParams { Task = PoolingTask.Score })])[0].PoolerOutput![0];
        }

        EngineArgs converted = Args($$"""{"classifier_from_token": ["{{No}}", "{{Yes}}"], "method": "from_2_way_softmax"}""");
        Assert.Equal(Score(Args(Converted("from_2_way_softmax"))), Score(new EngineArgs
        {
            Model = converted.Model, HfOverrides = converted.HfOverrides, Convert = "classify", MaxNumSeqs = 8, KvCacheMemoryBytes = converted.KvCacheMemoryBytes,
        }));
        var noHead = Assert.Throws<ModelLoadException>(() => ModelLoader.LoadOffline(new EngineArgs { Model = RepoPaths.DefaultModel, Convert = "classify", KvCacheMemoryBytes = 32L << 20 }));
        Assert.Contains("score.weight", noHead.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_conversion_it_cannot_make_is_refused_by_name()
    {
        var unknown = Assert.Throws<ModelLoadException>(() => ModelLoader.LoadOffline(Args(
            """{"architectures": ["LlamaForSequenceClassification"], "classifier_from_token": ["def", "no-such-token"], "method": "from_2_way_softmax"}""")));
        Assert.Contains("'no-such-token', which is not a token of the tokenizer", unknown.Message, StringComparison.Ordinal);
        var three = Assert.ThrowsAny<Exception>(() => ModelLoader.LoadOffline(Args(
            """{"architectures": ["LlamaForSequenceClassification"], "classifier_from_token": ["def", "return", "class"], "method": "from_2_way_softmax"}""")));
        Assert.Contains("takes two tokens", three.Message, StringComparison.Ordinal);
        var method = Assert.ThrowsAny<Exception>(() => ModelLoader.LoadOffline(Args(
            """{"architectures": ["LlamaForSequenceClassification"], "classifier_from_token": ["def"], "method": "mean"}""")));
        Assert.Contains("'method' value 'mean' is not supported", method.Message, StringComparison.Ordinal);
    }
}
