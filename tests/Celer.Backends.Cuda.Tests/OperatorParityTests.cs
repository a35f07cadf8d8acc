using Celer.Backends.Cpu;
using Celer.Models.Backend;
using Celer.Models.Weights;

namespace Celer.Backends.Cuda.Tests;

/// <summary>
/// Each CUDA operator against the CPU backend's kernel (itself tested against scalar references) on random
/// inputs, with odd sizes and block-boundary cases. Tolerances are norm-relative (‖gpu − cpu‖ / ‖cpu‖):
/// fp32 work lands near 1e-6; a GEMM over 16-bit weights rounds its fp32 activations to bf16 (8 bits of
/// mantissa, so ~2e-3 per element) before multiplying, as a bf16 model does.
/// </summary>
public sealed class OperatorParityTests
{
    private const double Fp32Tolerance = 1e-5;
    private const double Bf16Tolerance = 1e-2;

    [Theory]
    [InlineData(DType.BF16, 1, 4096, 1024)]
    [InlineData(DType.BF16, 37, 96, 80)]
    [InlineData(DType.F16, 130, 257, 129)]
    [InlineData(DType.F32, 5, 200, 333)]
    public void Linear_with_bias_matches_the_cpu(DType dtype, int rows, int k, int n)
    {
        Gpu.Require();
        using var host = new HostTensors(rows * 31 + k);
        WeightTensor x = host.Random("x", DType.F32, 1f, rows, k);
        WeightTensor w = host.Random("w", dtype, 0.05f, n, k);
        WeightTensor bias = host.Random("b", dtype, 0.5f, n);

        float[] Run(IModelBackend b)
        {
            Tensor y = b.Allocate("y", rows, n);
            b.Linear(b.LoadWeight(x), rows, b.LoadWeight(w), b.LoadWeight(bias), y);
            return HostTensors.Read(b, y, rows);
        }

        using var cpu = new CpuBackend();
        using var gpu = new CudaBackend(Gpu.Device);
        double error = HostTensors.RelativeError(Run(gpu), Run(cpu));
        Assert.True(error < (dtype == DType.F32 ? Fp32Tolerance * 10 : Bf16Tolerance), $"relative error {error}");
    }

    [Theory]
    [InlineData(1, 64, DType.BF16)]
    [InlineData(33, 4096, DType.BF16)]
    [InlineData(7, 257, DType.F32)]
    public void Norms_silu_and_embedding_match_the_cpu(int rows, int hidden, DType dtype)
    {
        Gpu.Require();
        using var host = new HostTensors(rows + hidden);
        WeightTensor x = host.Random("x", DType.F32, 2f, rows, hidden);
        WeightTensor residual = host.Random("r", DType.F32, 2f, rows, hidden);
        WeightTensor weight = host.Random("w", dtype, 1.5f, hidden);
        WeightTensor up = host.Random("up", DType.F32, 3f, rows, hidden);
        WeightTensor table = host.Random("embed", dtype, 1f, 300, hidden);
        int[] ids = Enumerable.Range(0, rows).Select(i => (i * 97 + 13) % 300).ToArray();

        (float[] Norm, float[] Added, float[] Residual, float[] Silu, float[] Embedded) Run(IModelBackend b)
        {
            b.BeginStep(Batch(ids));
            Tensor xs = b.LoadWeight(x), rs = b.LoadWeight(residual), ws = b.LoadWeight(weight), ups = b.LoadWeight(up);
            Tensor norm = b.Allocate("norm", rows, hidden);
            b.RmsNorm(xs, rows, ws, 1e-5f, norm);
            Tensor silu = b.Allocate("silu", rows, hidden);
            b.SiluMul(xs, ups, rows, silu);
            b.AddRmsNorm(xs, rs, rows, ws, 1e-6f);   // in place: xs and rs change
            Tensor embedded = b.Allocate("e", rows, hidden);
            b.Embedding(b.LoadWeight(table), embedded);
            return (HostTensors.Read(b, norm, rows), HostTensors.Read(b, xs, rows), HostTensors.Read(b, rs, rows),
                HostTensors.Read(b, silu, rows), HostTensors.Read(b, embedded, rows));
        }

        using var cpu = new CpuBackend();
        using var gpu = new CudaBackend(Gpu.Device);
        // The GPU runs first: the CPU backend works on fp32 inputs in place (no copy), so the in-place
        // AddRmsNorm changes the host arrays that a later LoadWeight would read.
        var g = Run(gpu);
        var c = Run(cpu);
        Assert.True(HostTensors.RelativeError(g.Norm, c.Norm) < Fp32Tolerance, "rms_norm");
        Assert.True(HostTensors.RelativeError(g.Added, c.Added) < Fp32Tolerance, "add_rms_norm output");
        Assert.True(HostTensors.RelativeError(g.Residual, c.Residual) < Fp32Tolerance, "add_rms_norm residual");
        Assert.True(HostTensors.RelativeError(g.Silu, c.Silu) < Fp32Tolerance, "silu_mul");
        Assert.Equal(c.Embedded, g.Embedded);
    }

    [Theory]
    [InlineData(32, 128, 1f)]        // Llama-3-8B shape
    [InlineData(16, 80, 0.1f)]       // odd head size, yarn-like scaling
    [InlineData(4, 64, 1f)]
    public void Rope_matches_the_cpu(int heads, int headDim, float scaling)
    {
        Gpu.Require();
        using var host = new HostTensors(heads * headDim);
        int rows = 45;
        WeightTensor q = host.Random("q", DType.F32, 1f, rows, heads * headDim);
        int[] positions = Enumerable.Range(0, rows).Select(i => i * 211 % 8000).ToArray();
        float[] invFreq = Enumerable.Range(0, headDim / 2).Select(i => (float)(1.0 / Math.Pow(500000, 2.0 * i / headDim))).ToArray();
        var rope = new RopeSpec(invFreq, headDim, scaling);

        float[] Run(IModelBackend b)
        {
            b.BeginStep(Batch(new int[rows]) with { Positions = positions });
            Tensor t = b.LoadWeight(q);
            b.Rope(t, rows, heads, headDim, rope);
            return HostTensors.Read(b, t, rows);
        }

        using var cpu = new CpuBackend();
        using var gpu = new CudaBackend(Gpu.Device);
        double error = HostTensors.RelativeError(Run(gpu), Run(cpu));
        // Angles reach 8000 rad: cosf/sinf on the two sides agree to a few ulps of the reduced argument.
        Assert.True(error < 1e-5, $"relative error {error}");
    }

    [Theory]
    [InlineData(32, 8, 128, 0, false)]      // GQA 4, Llama-3-8B
    [InlineData(12, 12, 80, 0, false)]      // MHA, head size not a multiple of 32
    [InlineData(8, 2, 64, 24, false)]       // sliding window crossing block boundaries
    [InlineData(4, 1, 256, 0, false)]       // MQA, the largest head size the kernel takes
    [InlineData(32, 8, 128, 0, true)]       // few decode rows: the context is split across blocks and merged
    [InlineData(32, 2, 64, 0, true)]        // a GQA group of 16 spans two blocks, split as well
    [InlineData(8, 2, 64, 100, true)]       // split context under a sliding window
    public void Paged_attention_over_mixed_prefill_and_decode_matches_the_cpu(int heads, int kvHeads, int headDim, int window, bool decodeOnly)
    {
        Gpu.Require();
        // (tokens already in the cache, new tokens this step): a fresh prefill, decodes over short and long contexts,
        // a chunk that starts mid-block and ends past a block boundary. Decode-only: three rows over long contexts.
        (int Context, int Query)[] sequences = decodeOnly
            ? [(1000, 1), (300, 1), (15, 1)]
            : [(0, 37), (50, 1), (15, 17), (300, 1), (1, 1)];
        const int blockSize = 16;
        int maxBlocks = sequences.Max(s => (s.Context + s.Query + blockSize - 1) / blockSize);
        float scale = 1f / MathF.Sqrt(headDim);

        // The same seed on both sides: each run draws the same random K, V and Q in the same order.
        float[] cpuOut, gpuOut;
        using (var host = new HostTensors(heads * 1000 + headDim))
        using (var cpu = new CpuBackend())
        {
            cpuOut = RunWith(cpu, host);
        }

        using (var host = new HostTensors(heads * 1000 + headDim))
        using (var gpu = new CudaBackend(Gpu.Device))
        {
            gpuOut = RunWith(gpu, host);
        }

        double error = HostTensors.RelativeError(gpuOut, cpuOut);
        Assert.True(error < Fp32Tolerance, $"relative error {error}");

        // Step 1 fills each context into the cache; step 2 writes the new tokens and attends with them.
        float[] RunWith(IModelBackend b, HostTensors h)
        {
            b.AllocateKvCache(1, 1 + sequences.Length * maxBlocks, blockSize, kvHeads, headDim);
            b.BeginStep(AttentionBatch(sequences.Select(s => (0, s.Context)).ToArray(), maxBlocks, blockSize));
            int contextRows = sequences.Sum(s => s.Context);
            b.WriteKv(0, b.LoadWeight(h.Random("kc", DType.F32, 1f, contextRows, kvHeads * headDim)), b.LoadWeight(h.Random("vc", DType.F32, 1f, contextRows, kvHeads * headDim)), contextRows);
            ForwardBatch step = AttentionBatch(sequences, maxBlocks, blockSize);
            b.BeginStep(step);
            int rows = step.NumTokens;
            b.WriteKv(0, b.LoadWeight(h.Random("k", DType.F32, 1f, rows, kvHeads * headDim)), b.LoadWeight(h.Random("v", DType.F32, 1f, rows, kvHeads * headDim)), rows);
            Tensor output = b.Allocate("o", rows, heads * headDim);
            b.Attention(0, b.LoadWeight(h.Random("q", DType.F32, 2f, rows, heads * headDim)), output, new AttentionSpec(heads, kvHeads, headDim, scale, window));
            return HostTensors.Read(b, output, rows);
        }
    }

    /// <summary>A batch of the given tokens at positions 0..n−1 of one sequence (for the position-only operators).</summary>
    private static ForwardBatch Batch(int[] tokenIds) => new()
    {
        TokenIds = tokenIds,
        Positions = Enumerable.Range(0, tokenIds.Length).ToArray(),
        SlotMapping = Enumerable.Range(0, tokenIds.Length).ToArray(),
        QueryStartLoc = [0, tokenIds.Length],
        SeqLens = [tokenIds.Length],
        BlockTables = [0],
        MaxBlocksPerSeq = 1,
        LogitsRows = [],
    };

    /// <summary>Sequence s owns blocks 1 + s·maxBlocks…; its rows are positions Context..Context+Query−1.</summary>
    private static ForwardBatch AttentionBatch((int Context, int Query)[] sequences, int maxBlocks, int blockSize)
    {
        var positions = new List<int>();
        var slots = new List<int>();
        var queryStart = new List<int> { 0 };
        var blockTables = new int[sequences.Length * maxBlocks];
        for (int s = 0; s < sequences.Length; s++)
        {
            for (int j = 0; j < maxBlocks; j++)
            {
                blockTables[s * maxBlocks + j] = 1 + s * maxBlocks + j;
            }

            for (int p = sequences[s].Context; p < sequences[s].Context + sequences[s].Query; p++)
            {
                positions.Add(p);
                slots.Add(blockTables[s * maxBlocks + p / blockSize] * blockSize + p % blockSize);
            }

            queryStart.Add(positions.Count);
        }

        return new ForwardBatch
        {
            TokenIds = new int[positions.Count],
            Positions = [.. positions],
            SlotMapping = [.. slots],
            QueryStartLoc = [.. queryStart],
            SeqLens = sequences.Select(s => s.Context + s.Query).ToArray(),
            BlockTables = blockTables,
            MaxBlocksPerSeq = maxBlocks,
            LogitsRows = [],
        };
    }
}
