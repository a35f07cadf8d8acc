using Celer.Backends.Cpu;
using Celer.Models.Backend;
using Celer.Models.Weights;

namespace Celer.Backends.Cuda.Tests;

/// <summary>
/// Gemma 2/3's CUDA operators against the CPU backend on random inputs, as <see cref="OperatorParityTests"/> does for the
/// others (norm-relative errors, the same tolerances): Gemma's RMSNorm and fused residual step, GeGLU, logit and attention
/// soft-capping on every attention kernel, Gemma 3's q/k norm, and layers alternating between two RoPE tables.
/// </summary>
public sealed class GemmaOperatorParityTests
{
    private static double Tolerance(DType dtype) => dtype switch
    {
        DType.F32 => 1e-5,
        DType.F16 => 3e-3,
        _ => 2e-2,
    };

    [Theory]
    [InlineData(33, 2304, DType.BF16)]   // gemma-2-2b's hidden size
    [InlineData(9, 1000, DType.F16)]
    [InlineData(7, 257, DType.F32)]
    [InlineData(5, 1003, DType.BF16)]    // not a whole number of 16-byte vectors: the element-wise paths
    public void Gemma_norms_and_geglu_match_the_cpu(int rows, int hidden, DType dtype)
    {
        Gpu.Require();
        using var host = new HostTensors(rows + hidden + 1);
        WeightTensor x = host.Random("x", DType.F32, 2f, rows, hidden);
        WeightTensor residual = host.Random("r", DType.F32, 2f, rows, hidden);
        // Gemma's norm weights are offsets from 1 (1 + w multiplies): both signs, some near −1.
        WeightTensor post = host.Random("post", dtype, 0.9f, hidden), next = host.Random("next", dtype, 0.9f, hidden);
        WeightTensor gateUp = host.Random("gate_up", DType.F32, 4f, rows, 2 * hidden);

        (float[] Norm, float[] Added, float[] Residual, float[] Geglu) Run(IModelBackend b)
        {
            Tensor xs = b.LoadWeight(x), rs = b.LoadWeight(residual), ps = b.LoadWeight(post), ns = b.LoadWeight(next), gu = b.LoadWeight(gateUp);
            Tensor norm = b.Allocate("norm", b.ActivationDType, rows, hidden);
            b.GemmaRmsNorm(xs, rows, ns, 1e-6f, norm);
            Tensor geglu = b.Allocate("geglu", b.ActivationDType, rows, hidden);
            b.GeluTanhMul(gu, rows, geglu);
            b.GemmaAddRmsNorm(xs, rs, rows, ps, ns, 1e-6f);   // in place: xs and rs change
            return (HostTensors.Read(b, norm, rows), HostTensors.Read(b, xs, rows), HostTensors.Read(b, rs, rows), HostTensors.Read(b, geglu, rows));
        }

        using var cpu = new CpuBackend(DType.F32);
        using var gpu = new CudaBackend(Gpu.Device, dtype);
        // The GPU first: the CPU backend works on fp32 inputs in place, which a later LoadWeight would read.
        var g = Run(gpu);
        var c = Run(cpu);
        double tolerance = Tolerance(dtype);
        Assert.True(HostTensors.RelativeError(g.Norm, c.Norm) < tolerance, $"gemma_rms_norm {HostTensors.RelativeError(g.Norm, c.Norm)}");
        Assert.True(HostTensors.RelativeError(g.Added, c.Added) < tolerance, $"gemma_add_rms_norm output {HostTensors.RelativeError(g.Added, c.Added)}");
        Assert.True(HostTensors.RelativeError(g.Residual, c.Residual) < tolerance, $"gemma_add_rms_norm residual {HostTensors.RelativeError(g.Residual, c.Residual)}");
        Assert.True(HostTensors.RelativeError(g.Geglu, c.Geglu) < tolerance, $"gelu_tanh_mul {HostTensors.RelativeError(g.Geglu, c.Geglu)}");
    }

    /// <summary>The per-head view of Gemma's norm (x as [rows·heads, head_dim]), as Gemma 3's q/k norms use it.</summary>
    [Theory]
    [InlineData(DType.BF16)]
    [InlineData(DType.F32)]
    public void Gemma_norm_per_head_matches_the_cpu(DType dtype)
    {
        Gpu.Require();
        const int rows = 19, heads = 8, headDim = 256;
        using var host = new HostTensors(77);
        WeightTensor x = host.Random("x", DType.F32, 3f, rows, heads * headDim);
        WeightTensor w = host.Random("w", dtype, 0.9f, headDim);

        float[] Run(IModelBackend b)
        {
            Tensor y = b.Allocate("y", b.ActivationDType, rows, heads * headDim);
            b.GemmaRmsNorm(b.LoadWeight(x), rows, b.LoadWeight(w), 1e-6f, y);
            return HostTensors.Read(b, y, rows);
        }

        using var cpu = new CpuBackend(DType.F32);
        using var gpu = new CudaBackend(Gpu.Device, dtype);
        double error = HostTensors.RelativeError(Run(gpu), Run(cpu));
        Assert.True(error < Tolerance(dtype), $"relative error {error}");
    }

    /// <summary>Final logit soft-capping on the fp32 logits of an lm_head GEMM, capped at 30 (Gemma 2) and at 2 (most logits bent).</summary>
    [Theory]
    [InlineData(DType.BF16, 30f)]
    [InlineData(DType.BF16, 2f)]
    [InlineData(DType.F32, 30f)]
    public void Logit_softcap_matches_the_cpu(DType dtype, float cap)
    {
        Gpu.Require();
        const int rows = 6, hidden = 256, vocab = 1001;
        using var host = new HostTensors(rows + vocab + (int)cap);
        WeightTensor x = host.Random("x", DType.F32, 1f, rows, hidden);
        WeightTensor w = host.Random("lm_head", dtype, 0.5f, vocab, hidden);

        float[] Run(IModelBackend b)
        {
            Tensor logits = b.Allocate("logits", DType.F32, rows, vocab);
            b.Linear(b.LoadWeight(x), rows, b.LoadWeight(w), null, logits);
            b.SoftCap(logits, rows, cap);
            return HostTensors.Read(b, logits, rows);
        }

        using var cpu = new CpuBackend(DType.F32);
        using var gpu = new CudaBackend(Gpu.Device, dtype);
        float[] g = Run(gpu), c = Run(cpu);
        Assert.All(g, v => Assert.True(Math.Abs(v) <= cap, $"{v} beyond the cap {cap}"));
        double error = HostTensors.RelativeError(g, c);
        Assert.True(error < Tolerance(dtype), $"relative error {error}");
    }

    /// <summary>Gemma 3's q/k norm (1 + w, one rounding) inside prepare_attention, with its head size 256 and 128.</summary>
    [Theory]
    [InlineData(8, 4, 256, DType.BF16)]
    [InlineData(16, 8, 128, DType.F16)]
    [InlineData(4, 1, 256, DType.F32)]
    public void Prepare_attention_with_gemma_qk_norm_matches_the_cpu(int heads, int kvHeads, int headDim, DType dtype)
    {
        Gpu.Require();
        using var host = new HostTensors(heads * headDim + 3);
        const int rows = 45;
        WeightTensor qkv = host.Random("qkv", DType.F32, 2f, rows, (heads + 2 * kvHeads) * headDim);
        WeightTensor qNorm = host.Random("q_norm", dtype, 0.9f, headDim), kNorm = host.Random("k_norm", dtype, 0.9f, headDim);
        int[] positions = Enumerable.Range(0, rows).Select(i => i * 211 % 8000).ToArray();
        float[] invFreq = Enumerable.Range(0, headDim / 2).Select(i => (float)(1.0 / Math.Pow(1_000_000, 2.0 * i / headDim) / 8)).ToArray();
        var rope = new RopeSpec(invFreq, headDim, 1f, 8192);
        var spec = new AttentionSpec(heads, kvHeads, headDim, 1f / 16, 0) { GemmaQkNorm = true };

        float[] Run(IModelBackend b)
        {
            b.AllocateKvCache(1, 4, 16, spec);
            b.BeginStep(Batch(rows) with { Positions = positions, SlotMapping = Enumerable.Repeat(-1, rows).ToArray() });
            Tensor q = b.Allocate("q", b.ActivationDType, rows, heads * headDim);
            b.PrepareAttention(0, b.LoadWeight(qkv), rows, spec, rope, b.LoadWeight(qNorm), b.LoadWeight(kNorm), 1e-6f, q);
            return HostTensors.Read(b, q, rows);
        }

        using var cpu = new CpuBackend(DType.F32);
        using var gpu = new CudaBackend(Gpu.Device, dtype);
        double error = HostTensors.RelativeError(Run(gpu), Run(cpu));
        Assert.True(error < Tolerance(dtype), $"relative error {error}");
    }

    /// <summary>
    /// Layers that alternate between two RoPE slots (Gemma 3's local base 1e4 and its global base 1e6 with linear scaling
    /// 8): every call must rotate by its own slot's table, however the calls interleave.
    /// </summary>
    [Theory]
    [InlineData(DType.BF16)]
    [InlineData(DType.F32)]
    public void Prepare_attention_alternating_rope_slots_matches_the_cpu(DType dtype)
    {
        Gpu.Require();
        const int heads = 4, kvHeads = 1, headDim = 128, rows = 30;
        using var host = new HostTensors(5);
        WeightTensor qkv = host.Random("qkv", DType.F32, 2f, rows, (heads + 2 * kvHeads) * headDim);
        int[] positions = Enumerable.Range(0, rows).Select(i => i * 97 % 4000).ToArray();
        RopeSpec Rope(double theta, double factor, int slot) => new(
            Enumerable.Range(0, headDim / 2).Select(i => (float)(1.0 / Math.Pow(theta, 2.0 * i / headDim) / factor)).ToArray(), headDim, 1f, 4096)
        { Slot = slot };
        RopeSpec local = Rope(10_000, 1, 0), global = Rope(1_000_000, 8, 1);
        var spec = new AttentionSpec(heads, kvHeads, headDim, 1f / 16, 0);

        float[] Run(IModelBackend b)
        {
            b.AllocateKvCache(1, 4, 16, spec);
            b.BeginStep(Batch(rows) with { Positions = positions, SlotMapping = Enumerable.Repeat(-1, rows).ToArray() });
            Tensor input = b.LoadWeight(qkv);
            var outputs = new List<float>();
            foreach (RopeSpec rope in (RopeSpec[])[local, global, local, global])
            {
                Tensor q = b.Allocate("q", b.ActivationDType, rows, heads * headDim);
                b.PrepareAttention(0, input, rows, spec, rope, null, null, 1e-6f, q);
                outputs.AddRange(HostTensors.Read(b, q, rows));
            }

            return [.. outputs];
        }

        using var cpu = new CpuBackend(DType.F32);
        using var gpu = new CudaBackend(Gpu.Device, dtype);
        double error = HostTensors.RelativeError(Run(gpu), Run(cpu));
        Assert.True(error < Tolerance(dtype), $"relative error {error}");
    }

    /// <summary>
    /// Soft-capped attention (cap · tanh(score / cap)) over a mixed batch on every kernel: the CUDA-core one (fp32, and a
    /// GQA group wider than a tile), flash_attention and flash_decode (16-bit), split contexts (decode-only batches), a
    /// sliding window. Queries are scaled up so that the scores reach the cap, where capping changes the softmax.
    /// </summary>
    [Theory]
    [InlineData(8, 4, 256, 0, false, 50f, DType.F32)]
    [InlineData(8, 4, 256, 0, true, 5f, DType.F32)]
    [InlineData(8, 4, 256, 24, false, 5f, DType.BF16)]   // gemma-2's head size, flash_attention and flash_decode
    [InlineData(8, 4, 256, 0, true, 5f, DType.BF16)]
    [InlineData(16, 8, 128, 100, true, 5f, DType.F16)]
    [InlineData(4, 2, 16, 12, false, 50f, DType.BF16)]   // the Gemma 2 fixture's shape
    [InlineData(64, 2, 128, 0, false, 5f, DType.BF16)]   // GQA 32: the CUDA-core kernel in a 16-bit model
    public void Soft_capped_attention_matches_the_cpu(int heads, int kvHeads, int headDim, int window, bool decodeOnly, float cap, DType dtype)
    {
        Gpu.Require();
        (int Context, int Query)[] sequences = decodeOnly
            ? [(1000, 1), (300, 1), (15, 1)]
            : [(0, 37), (50, 1), (15, 17), (300, 1), (0, 150), (40, 3), (70, 90)];
        const int blockSize = 16;
        int maxBlocks = sequences.Max(s => (s.Context + s.Query + blockSize - 1) / blockSize);
        var spec = new AttentionSpec(heads, kvHeads, headDim, 1f / MathF.Sqrt(headDim), window) { LogitSoftCap = cap };
        float[] invFreq = Enumerable.Range(0, headDim / 2).Select(i => (float)(1.0 / Math.Pow(10000, 2.0 * i / headDim))).ToArray();
        var rope = new RopeSpec(invFreq, headDim, 1f, 2048);

        // The same seed on both sides: each run draws the same random q, k and v in the same order.
        float[] cpuOut, gpuOut;
        using (var host = new HostTensors(heads * 1000 + headDim + (int)cap))
        using (var cpu = new CpuBackend(DType.F32))
        {
            cpuOut = RunWith(cpu, host);
        }

        using (var host = new HostTensors(heads * 1000 + headDim + (int)cap))
        using (var gpu = new CudaBackend(Gpu.Device, dtype))
        {
            gpuOut = RunWith(gpu, host);
        }

        double error = HostTensors.RelativeError(gpuOut, cpuOut);
        Assert.True(error < Tolerance(dtype), $"relative error {error}");

        float[] RunWith(IModelBackend b, HostTensors h)
        {
            int width = (heads + 2 * kvHeads) * headDim;
            b.AllocateKvCache(1, 1 + sequences.Length * maxBlocks, blockSize, spec);
            ForwardBatch fill = ForwardBatch.ForSequences(sequences.Select(s => (0, s.Context)).ToArray(), maxBlocks, blockSize);
            b.BeginStep(fill);
            int contextRows = fill.NumTokens;
            Tensor q = b.Allocate("q", b.ActivationDType, Math.Max(contextRows, 1), heads * headDim);
            if (contextRows > 0)
            {
                b.PrepareAttention(0, b.LoadWeight(h.Random("qkv_context", DType.F32, 4f, contextRows, width)), contextRows, spec, rope, null, null, 1e-6f, q);
            }

            ForwardBatch step = ForwardBatch.ForSequences(sequences, maxBlocks, blockSize);
            b.BeginStep(step);
            int rows = step.NumTokens;
            Tensor qs = b.Allocate("qs", b.ActivationDType, rows, heads * headDim);
            b.PrepareAttention(0, b.LoadWeight(h.Random("qkv", DType.F32, 4f, rows, width)), rows, spec, rope, null, null, 1e-6f, qs);
            Tensor output = b.Allocate("o", b.ActivationDType, rows, heads * headDim);
            b.Attention(0, qs, output, spec);
            return HostTensors.Read(b, output, rows);
        }
    }

    /// <summary>Rows 0..n−1 of one sequence at positions 0..n−1 (for the position-only operators).</summary>
    private static ForwardBatch Batch(int rows) => new()
    {
        TokenIds = new int[rows],
        Positions = Enumerable.Range(0, rows).ToArray(),
        SlotMapping = Enumerable.Range(0, rows).ToArray(),
        QueryStartLoc = [0, rows],
        SeqLens = [rows],
        BlockTables = [0],
        MaxBlocksPerSeq = 1,
        LogitsRows = [],
    };
}
