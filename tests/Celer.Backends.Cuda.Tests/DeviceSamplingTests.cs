using Celer.Engine;
using Celer.Models.Backend;
using Celer.Models.Weights;

namespace Celer.Backends.Cuda.Tests;

/// <summary>
/// The GPU sampler (sampling.cu through <see cref="DeviceSamplingBatch"/>) against the engine's host sampler on the
/// same logits and the same sequence states: greedy tokens and logprobs identical, every logits processor included;
/// random draws identical (both take the same uniform from the sequence's generator and invert the same CDF, so only
/// exp/sum rounding at a boundary could part them); and the empirical distribution of many draws.
/// </summary>
public sealed class DeviceSamplingTests
{
    private static readonly int[] Eos = [2, 7];

    private static SamplingParams[] Variants(Random random, int vocab) =>
    [
        new() { Temperature = 0 },
        new() { Temperature = 0, Logprobs = 5 },
        new()
        {
            Temperature = 0, Logprobs = 20, RepetitionPenalty = 1.3f, FrequencyPenalty = 0.4f, PresencePenalty = 0.3f,
            LogitBias = new Dictionary<int, float> { [11] = 5f, [random.Next(vocab)] = -3f }, MinTokens = 50, StopTokenIds = [13],
            BadWordsTokenIds = [[101], [40, 41]],
        },
        new() { Temperature = 0, AllowedTokenIds = [5, 900, 17, 4000, 42] },
        new() { Temperature = 0, AllowedTokenIds = [2, 7], MinTokens = 100 },   // everything masked: the fallback
        new() { Temperature = 1f },
        new() { Temperature = 0.7f, TopK = 50, Logprobs = 3 },
        new() { Temperature = 1.3f, TopP = 0.9f },
        new() { Temperature = 0.8f, MinP = 0.05f, TopK = 200, TopP = 0.95f, FrequencyPenalty = 0.5f },
        new() { Temperature = 1f, TopP = 0.5f, AllowedTokenIds = Enumerable.Range(0, 300).ToArray(), LogitBias = new Dictionary<int, float> { [3] = 2f } },
        new() { Temperature = 0, Logprobs = 4, Grammar = Grammar(vocab) },
        new() { Temperature = 0.9f, TopK = 40, Logprobs = 2, Grammar = Grammar(vocab), MinTokens = 3 },
    ];

    /// <summary>
    /// Structured outputs over a made-up vocabulary (ids below 128 are one ASCII byte, the rest two): an output of
    /// the pattern allows about a fifth of the tokens, and the end of sequence (EOS id 2) once it is complete.
    /// </summary>
    private static Celer.Grammars.CompiledGrammar Grammar(int vocab)
    {
        var bytes = new byte[]?[vocab];
        for (int id = 0; id < vocab; id++)
        {
            bytes[id] = id is 2 or 7 ? null : id < 128 ? [(byte)id] : [(byte)(32 + id % 95), (byte)(32 + id / 95 % 95)];
        }

        var automaton = Celer.Grammars.GrammarAutomaton.Compile(Celer.Grammars.RegexGrammar.Compile("[a-p][0-9a-z ]{0,12}"));
        return new Celer.Grammars.CompiledGrammar(automaton, new Celer.Grammars.TokenVocabulary(bytes, Eos));
    }

    // 5003: odd, so rows start at every offset from a 16-byte boundary (the kernel's scalar head and tail around
    // its 16-byte loads); 4096: every row aligned, no head or tail.
    [Theory]
    [InlineData(5003)]
    [InlineData(4096)]
    public void Device_sampling_matches_the_host_sampler_on_the_same_logits(int vocab)
    {
        Gpu.Require();
        var random = new Random(3);
        const int rows = 200;
        using var host = new HostTensors(17);
        float[] values = host.Random("logits", DType.F32, 6f, rows, vocab).AsSpan<float>().ToArray();
        // Ties at the top of plain greedy rows (variant 0): the lower id wins, wherever the two fall (head, body, tail).
        for (int r = 0; r < rows; r += 10)
        {
            int low = random.Next(8), high = vocab - 1 - random.Next(8);
            values[r * vocab + low] = values[r * vocab + high] = 50f;
        }

        using var gpu = new CudaBackend(Gpu.Device, DType.F32);
        gpu.ReserveSampling(rows, vocab);
        Tensor logits;
        unsafe
        {
            fixed (float* data = values)
            {
                logits = gpu.LoadWeight(new WeightTensor("logits", DType.F32, [rows, vocab], (nint)data, values.Length * sizeof(float)));
            }
        }

        var hostStates = new SamplingState[rows];
        var deviceStates = new SamplingState[rows];
        SamplingParams[] variants = Variants(random, vocab);
        var batch = new DeviceSamplingBatch();
        for (int r = 0; r < rows; r++)
        {
            SamplingParams p = variants[r % variants.Length];
            int[] prompt = Enumerable.Range(0, 20).Select(_ => random.Next(vocab)).ToArray();
            int[] output = [.. Enumerable.Range(0, r % 7).Select(_ => random.Next(vocab)), 40];   // ends in a bad word's prefix
            hostStates[r] = new SamplingState(p, prompt, seed: 1000 + r);
            deviceStates[r] = new SamplingState(p, prompt, seed: 1000 + r);
            foreach (int t in output)
            {
                hostStates[r].Append(t);
                deviceStates[r].Append(t);
            }

            batch.Add(deviceStates[r], Eos, vocab);
        }

        SampleResult[] device = batch.Sample(gpu, logits);
        int randomRows = 0, randomDiffer = 0;
        for (int r = 0; r < rows; r++)
        {
            SampleResult expected = Sampler.Sample(values.AsSpan(r * vocab, vocab).ToArray(), hostStates[r], Eos);
            if (hostStates[r].Temperature == 0f)
            {
                Assert.True(expected.TokenId == device[r].TokenId, $"row {r}: greedy token {device[r].TokenId}, host {expected.TokenId}");
            }
            else
            {
                randomRows++;
                randomDiffer += expected.TokenId == device[r].TokenId ? 0 : 1;
            }

            Assert.Equal(expected.Logprobs is null, device[r].Logprobs is null);
            if (expected.Logprobs is { } e && device[r].Logprobs is { } d && expected.TokenId == device[r].TokenId)
            {
                Assert.Equal(e.Chosen.Rank, d.Chosen.Rank);
                Assert.True(Math.Abs(e.Chosen.Logprob - d.Chosen.Logprob) < 1e-4, $"row {r}: chosen logprob {d.Chosen.Logprob} vs {e.Chosen.Logprob}");
                Assert.Equal(e.Top.Select(t => t.TokenId), d.Top.Select(t => t.TokenId));
                Assert.Equal(e.Top.Select(t => t.Rank), d.Top.Select(t => t.Rank));
                Assert.All(e.Top.Zip(d.Top), pair => Assert.True(Math.Abs(pair.First.Logprob - pair.Second.Logprob) < 1e-4));
            }
        }

        // The same uniform and the same CDF: a draw may only move where exp/sum rounding straddles a boundary.
        Assert.True(randomDiffer <= randomRows / 50, $"{randomDiffer} of {randomRows} random rows drew another token than the host");
    }

    [Fact]
    public void Device_draws_follow_the_filtered_distribution()
    {
        Gpu.Require();
        const int vocab = 40, draws = 20000;
        float temperature = 0.8f, topP = 0.9f;
        var random = new Random(9);
        float[] row = Enumerable.Range(0, vocab).Select(_ => (float)(random.NextDouble() * 4 - 2)).ToArray();

        // The expected distribution: softmax(x / T), then the smallest most-likely set reaching top_p, renormalized.
        double[] weights = row.Select(x => Math.Exp(x / temperature)).ToArray();
        int[] order = Enumerable.Range(0, vocab).OrderByDescending(i => weights[i]).ThenBy(i => i).ToArray();
        double total = weights.Sum(), above = 0;
        var kept = new HashSet<int>();
        foreach (int i in order)
        {
            if (kept.Count > 0 && above >= topP * total)
            {
                break;
            }

            kept.Add(i);
            above += weights[i];
        }

        double keptMass = kept.Sum(i => weights[i]);

        using var gpu = new CudaBackend(Gpu.Device, DType.F32);
        gpu.ReserveSampling(draws, vocab);
        var repeated = new float[draws * vocab];
        for (int d = 0; d < draws; d++)
        {
            row.CopyTo(repeated, d * vocab);
        }

        unsafe
        {
            fixed (float* data = repeated)
            {
                Tensor logits = gpu.LoadWeight(new WeightTensor("logits", DType.F32, [draws, vocab], (nint)data, repeated.Length * sizeof(float)));
                var batch = new DeviceSamplingBatch();
                var states = new SamplingState[draws];
                for (int d = 0; d < draws; d++)
                {
                    states[d] = new SamplingState(new SamplingParams { Temperature = temperature, TopP = topP }, [], seed: d);
                    batch.Add(states[d], [], vocab);
                }

                int[] counts = new int[vocab];
                foreach (SampleResult result in batch.Sample(gpu, logits))
                {
                    counts[result.TokenId]++;
                }

                for (int i = 0; i < vocab; i++)
                {
                    double p = kept.Contains(i) ? weights[i] / keptMass : 0;
                    double sigma = Math.Sqrt(draws * p * (1 - p));
                    Assert.True(Math.Abs(counts[i] - draws * p) <= 5 * sigma + 1e-9, $"token {i}: {counts[i]} draws, expected {draws * p:F1} ± {sigma:F1}");
                }
            }
        }
    }
}
