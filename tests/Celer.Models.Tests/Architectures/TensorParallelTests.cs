using Celer.Backends.Cpu;
using Celer.Models.Architectures;
using Celer.Models.Config;
using Celer.Models.Weights;
using Celer.TestSupport;
using Xunit;

namespace Celer.Models.Tests.Architectures;

/// <summary>
/// Tensor parallelism's arithmetic on the CPU (<see cref="TensorParallelShard"/>, an <see cref="InProcessGroup"/> of
/// threads): a fixture model split over 2 or 4 ranks, each rank a model of its own on its own backend fed the same
/// batches, gives every rank the logits of the whole model, within fp32 rounding (the row-parallel sums add the ranks'
/// partial sums in another order than one matmul), and greedy continuations token for token those of the whole model.
/// Covers GQA with KV heads split and replicated (more ranks than KV heads), q/k/v biases, fused q/k/v and gate/up
/// (Phi-3), tied and untied heads, sliding windows, q/k norms, Gemma's layers and soft-capping, Granite's multipliers.
/// </summary>
public sealed class TensorParallelTests
{
    private const int BlockSize = 16;
    private const int MaxBlocksPerSeq = 8;

    public static TheoryData<string, int> Cases() => new()
    {
        { "llama-gqa-bf16-v4config", 2 },
        { "llama-gqa-bf16-v4config", 4 },
        { "llama-mha-dynamic-bf16", 4 },
        { "llama3-rope-tied-f32", 2 },
        { "qwen2-bias-yarn-bf16", 4 },
        { "qwen3-headdim-qknorm-bf16", 2 },
        { "phi3-longrope-partial-bf16", 2 },
        { "mistral-sliding-window-f16", 4 },
        { "gemma2-softcap-window-bf16", 2 },
        { "gemma3-text-local-rope-bf16", 4 },
        { "granite-multipliers-bf16", 2 },
        { "smollm3-norope-layers-bf16", 2 },
    };

    /// <summary>One rank's model over its backend and the checkpoint, fed the same batches as the others.</summary>
    private sealed class RankModel : IDisposable
    {
        private readonly CpuBackend _backend;
        private readonly IWeightSource _weights;

        public RankModel(string dir, Celer.Models.Backend.ICollectives? group)
        {
            ModelConfig config = ModelConfig.Load(dir);
            _backend = new CpuBackend(config.TorchDtype ?? DType.BF16);
            _weights = SafetensorsWeightSource.Open(dir);
            var model = new DecoderModel(config, _weights, _backend, maxNumTokens: 128, maxLogitsRows: 64, tensorParallel: group);
            _backend.AllocateKvCache(config.NumHiddenLayers, 1 + (2 * MaxBlocksPerSeq), BlockSize, model.Attention);
            Runner = new PagedSequenceRunner(model, BlockSize, MaxBlocksPerSeq);
        }

        public PagedSequenceRunner Runner { get; }

        public void Dispose()
        {
            _backend.Dispose();
            _weights.Dispose();
        }
    }

    /// <summary>The first sequence's last row in a step's logits: the prefill feeds its 23 prompt rows, each decode one.</summary>
    private static int LastRowOfFirst(int step) => step == 0 ? 22 : 0;

    /// <summary>Two prompts prefilled together, then greedy decoding of both, one token each per step; every step's logits.</summary>
    private static List<float[][]> Generate(Func<IReadOnlyList<(int, IReadOnlyList<int>, int)>, float[][]> step, IReadOnlyList<int> next)
    {
        var random = new Random(41);
        List<int>[] tokens = [[.. Enumerable.Range(0, 23).Select(_ => random.Next(1, 500))], [.. Enumerable.Range(0, 37).Select(_ => random.Next(1, 500))]];
        int[] computed = [0, 0];
        var steps = new List<float[][]>();
        for (int s = 0; s < 12; s++)
        {
            float[][] logits = step([(0, tokens[0], computed[0]), (1, tokens[1], computed[1])]);
            steps.Add(logits);
            computed[0] = tokens[0].Count;
            computed[1] = tokens[1].Count;
            tokens[0].Add(next.Count > 0 ? next[2 * s] : PagedSequenceRunner.ArgMax(logits[LastRowOfFirst(s)]));
            tokens[1].Add(next.Count > 0 ? next[(2 * s) + 1] : PagedSequenceRunner.ArgMax(logits[^1]));
        }

        return steps;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void Every_rank_of_a_split_model_gets_the_whole_models_logits_and_greedy_tokens(string model, int ranks)
    {
        string dir = Path.Combine(RepoPaths.FixtureModels, model);
        List<float[][]> whole;
        using (var one = new RankModel(dir, null))
        {
            whole = Generate(one.Runner.Step, []);
        }

        // The whole model's greedy choices, fed to the split one too: equal tokens in, so any difference is in the logits.
        List<int> greedy = [.. Enumerable.Range(0, whole.Count).SelectMany(step => new[]
        {
            PagedSequenceRunner.ArgMax(whole[step][LastRowOfFirst(step)]), PagedSequenceRunner.ArgMax(whole[step][^1]),
        })];

        using var group = new InProcessGroup(ranks);
        var split = new List<float[][]>[ranks];
        Parallel.For(0, ranks, new ParallelOptions { MaxDegreeOfParallelism = ranks }, rank =>
        {
            using var part = new RankModel(dir, group.Member(rank));
            split[rank] = Generate(part.Runner.Step, greedy);
        });

        for (int step = 0; step < whole.Count; step++)
        {
            for (int row = 0; row < whole[step].Length; row++)
            {
                float[] expected = whole[step][row];
                float scale = expected.Max(Math.Abs);
                for (int rank = 0; rank < ranks; rank++)
                {
                    float[] actual = split[rank][step][row];
                    Assert.True(rank == 0 || actual.AsSpan().SequenceEqual(split[0][step][row]), $"rank {rank}'s logits differ from rank 0's (step {step}, row {row})");
                    float worst = expected.Zip(actual, (e, a) => Math.Abs(e - a)).Max();
                    Assert.True(worst <= 1e-4f * Math.Max(1f, scale), $"step {step}, row {row}: a logit is off by {worst} (largest {scale})");
                }
            }

            Assert.Equal(greedy[2 * step], PagedSequenceRunner.ArgMax(split[0][step][LastRowOfFirst(step)]));
            Assert.Equal(greedy[(2 * step) + 1], PagedSequenceRunner.ArgMax(split[0][step][^1]));
        }
    }

    [Fact]
    public void A_split_the_heads_or_sizes_do_not_divide_is_refused_by_name()
    {
        string dir = Path.Combine(RepoPaths.FixtureModels, "llama-gqa-bf16-v4config");
        using var group = new InProcessGroup(3);
        var e = Assert.Throws<ModelLoadException>(() => new RankModel(dir, group.Member(0)));
        Assert.Contains("num_attention_heads 4 does not divide into a tensor-parallel group of 3", e.Message, StringComparison.Ordinal);

        using var two = new InProcessGroup(2);
        var moe = Assert.Throws<ModelLoadException>(() => new RankModel(Path.Combine(RepoPaths.FixtureModels, "mixtral-moe-bf16"), two.Member(0)));
        Assert.Contains("mixture-of-experts", moe.Message, StringComparison.Ordinal);
    }
}
