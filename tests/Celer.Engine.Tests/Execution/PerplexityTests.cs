using System.Text.Json;
using Celer.Engine.Execution;
using Celer.Models.Config;
using Celer.TestSupport;
using Xunit;

namespace Celer.Engine.Tests.Execution;

/// <summary>
/// Perplexity of the default model (models/celer-tiny-py) on a held-out slice of the Python standard library,
/// computed from the engine's prompt logprobs, against transformers' fp32 number for the same tokens
/// (tests/fixtures/celer-tiny-py/heldout.json, written by tools/train/train_small_model.py).
/// </summary>
public sealed class PerplexityTests(ITestOutputHelper log)
{
    /// <summary>heldout.json: the token ids and transformers' mean NLL / perplexity over predictions of tokens 1..n-1.</summary>
    private sealed record HeldOut(int[] TokenIds, int PredictedTokens, double MeanNll, double Perplexity)
    {
        public static HeldOut Load()
        {
            string path = Path.Combine(RepoPaths.Fixtures, "celer-tiny-py", "heldout.json");
            using JsonDocument doc = JsonDocument.Parse(File.ReadAllText(path));
            JsonElement root = doc.RootElement;
            return new HeldOut(
                root.GetProperty("token_ids").EnumerateArray().Select(e => e.GetInt32()).ToArray(),
                root.GetProperty("predicted_tokens").GetInt32(),
                root.GetProperty("mean_nll").GetDouble(),
                root.GetProperty("perplexity").GetDouble());
        }
    }

    // Prompt logprobs come back per prefill chunk and are reassembled by position: 1024 takes the slice in one
    // step, 96 cuts it into 11 chunks whose edges fall inside 16-token KV blocks.
    [Theory]
    [InlineData(1024)]
    [InlineData(96)]
    public void Perplexity_over_the_held_out_slice_matches_transformers(int maxNumBatchedTokens)
    {
        HeldOut heldOut = HeldOut.Load();
        int maxPositions = ModelConfig.Load(RepoPaths.DefaultModel).MaxPositionEmbeddings;
        // The whole slice plus the one generated token must fit the context, or the engine rejects the request.
        Assert.True(heldOut.TokenIds.Length + 1 <= maxPositions, $"{heldOut.TokenIds.Length} tokens + 1 do not fit {maxPositions} positions");
        Assert.Equal(heldOut.TokenIds.Length - 1, heldOut.PredictedTokens);

        var args = new EngineArgs
        {
            Model = RepoPaths.DefaultModel,
            // One sequence: the KV pool is sized for MaxNumSeqs full-length sequences, so this keeps it to ~3 MB.
            MaxNumSeqs = 1,
            MaxNumBatchedTokens = maxNumBatchedTokens,
            Seed = 1,
        };
        using LlmEngine engine = ModelLoader.LoadOffline(args).Engine;
        Assert.True(engine.MaxModelLen >= heldOut.TokenIds.Length + 1, $"max_model_len {engine.MaxModelLen} is too short for the slice");

        var request = new GenerateRequest("heldout", heldOut.TokenIds, new SamplingParams { PromptLogprobs = 0, MaxTokens = 1, Temperature = 0 });
        RequestOutput output = engine.Generate([request])[0];

        IReadOnlyList<PositionLogprobs?> positions = output.PromptLogprobs ?? throw new Xunit.Sdk.XunitException("no prompt logprobs returned");
        Assert.Equal(heldOut.TokenIds.Length, positions.Count);
        Assert.Null(positions[0]);
        double nllSum = 0;
        for (int i = 1; i < positions.Count; i++)
        {
            PositionLogprobs position = positions[i] ?? throw new Xunit.Sdk.XunitException($"prompt position {i} has no logprob");
            // Each entry must score the prompt's own next token, not a neighbour's.
            Assert.Equal(heldOut.TokenIds[i], position.Chosen.TokenId);
            Assert.True(position.Chosen.Logprob <= 0 && float.IsFinite(position.Chosen.Logprob), $"position {i}: logprob {position.Chosen.Logprob}");
            nllSum -= position.Chosen.Logprob;
        }

        double meanNll = nllSum / heldOut.PredictedTokens;
        double perplexity = Math.Exp(meanNll);
        // 1% relative on perplexity is 0.01 nats of mean NLL: both sides run fp32 on the same bf16 weights, so only
        // summation order differs (~1e-4 nats); an off-by-one position or a wrong RoPE offset costs far more.
        double relative = Math.Abs(perplexity / heldOut.Perplexity - 1);
        log.WriteLine($"budget {maxNumBatchedTokens}: Celer mean NLL {meanNll:F6}, perplexity {perplexity:F4}; transformers {heldOut.MeanNll:F6}, {heldOut.Perplexity:F4}; relative {relative:E2}");
        Assert.True(relative < 0.01,
            $"Celer perplexity {perplexity:F4} (mean NLL {meanNll:F6}) vs transformers {heldOut.Perplexity:F4} (mean NLL {heldOut.MeanNll:F6}): {relative:P3} apart");
    }
}
