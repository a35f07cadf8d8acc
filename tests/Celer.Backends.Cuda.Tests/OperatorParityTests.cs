using Celer.Backends.Cpu;
using Celer.Models.Backend;
using Celer.Models.Weights;

namespace Celer.Backends.Cuda.Tests;

/// <summary>
/// Each CUDA operator against the CPU backend's kernel (itself tested against scalar references) on random
/// inputs, with odd sizes and block-boundary cases, in each model dtype. Tolerances are norm-relative
/// (‖gpu − cpu‖ / ‖cpu‖) against the CPU in fp32 (weights widened exactly, activations loaded as they are): fp32 work lands near 1e-6; a bf16 model rounds its inputs,
/// weights and every output to bf16 (8 bits of mantissa: ~4e-3 per rounding, a few roundings deep), fp16 to 11 bits.
/// </summary>
public sealed class OperatorParityTests
{
    private const double Fp32Tolerance = 1e-5;

    private static double Tolerance(DType dtype) => dtype switch
    {
        DType.F32 => Fp32Tolerance,
        DType.F16 => 3e-3,
        _ => 2e-2,
    };

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
            Tensor y = b.Allocate("y", b.ActivationDType, rows, n);
            b.Linear(b.LoadWeight(x), rows, b.LoadWeight(w), b.LoadWeight(bias), y);
            return HostTensors.Read(b, y, rows);
        }

        using var cpu = new CpuBackend(DType.F32);
        using var gpu = new CudaBackend(Gpu.Device, dtype);
        double error = HostTensors.RelativeError(Run(gpu), Run(cpu));
        Assert.True(error < (dtype == DType.F32 ? Fp32Tolerance * 10 : Tolerance(dtype)), $"relative error {error}");
    }

    /// <summary>
    /// Every algorithm cuBLASLt's heuristic offers for a shape (the tuner may pick any of them), each run alone: row counts
    /// at and between buckets (24 rows run bucket 32's algorithm, 700 rows bucket 1024's), the bias in the epilogue (a bias
    /// in the output's dtype) and in its own kernel (fp32 logits out), k and n that are not multiples of 8.
    /// </summary>
    [Theory]
    [InlineData(DType.BF16, 1, 4096, 1024, true, false)]
    [InlineData(DType.BF16, 24, 4096, 6144, true, false)]
    [InlineData(DType.BF16, 256, 1024, 2048, false, false)]
    [InlineData(DType.F16, 700, 520, 333, true, false)]
    [InlineData(DType.BF16, 7, 2048, 1000, true, true)]
    [InlineData(DType.F32, 40, 200, 129, true, false)]
    public void Every_cublaslt_candidate_matches_the_cpu(DType dtype, int rows, int k, int n, bool withBias, bool logitsOut)
    {
        Gpu.Require();
        using var host = new HostTensors(rows * 13 + k + n);
        WeightTensor x = host.Random("x", DType.F32, 1f, rows, k);
        WeightTensor w = host.Random("w", dtype, 0.05f, n, k);
        WeightTensor bias = host.Random("b", dtype, 0.5f, n);

        float[] Run(IModelBackend b)
        {
            Tensor y = b.Allocate("y", logitsOut ? DType.F32 : b.ActivationDType, rows, n);
            b.Linear(b.LoadWeight(x), rows, b.LoadWeight(w), withBias ? b.LoadWeight(bias) : null, y);
            return HostTensors.Read(b, y, rows);
        }

        using var cpu = new CpuBackend(DType.F32);
        float[] expected = Run(cpu);
        int candidates;
        using (var probe = new CudaBackend(Gpu.Device, dtype))
        {
            Tensor y = probe.Allocate("y", logitsOut ? DType.F32 : probe.ActivationDType, rows, n);
            candidates = probe.LtCandidateCount(probe.LoadWeight(x), rows, probe.LoadWeight(w), withBias ? probe.LoadWeight(bias) : null, y);
        }

        Assert.True(candidates > 0, "cuBLASLt offered no algorithm");
        for (int candidate = 0; candidate < candidates; candidate++)
        {
            using var gpu = new CudaBackend(Gpu.Device, dtype) { GemmPolicy = GemmPolicy.CublasLt, LtCandidate = candidate };
            double error = HostTensors.RelativeError(Run(gpu), expected);
            Assert.True(error < (dtype == DType.F32 ? Fp32Tolerance * 10 : Tolerance(dtype)), $"candidate {candidate} of {candidates}: relative error {error}");
        }
    }

    /// <summary>
    /// The tuned GEMM (what serving runs): the first call times every candidate for each bucket the buffers hold, later
    /// calls of every row count run the winner of their bucket, which must still compute the product; the choices are
    /// reported per bucket.
    /// </summary>
    [Theory]
    [InlineData(DType.BF16, 4096, 1536)]
    [InlineData(DType.F16, 1000, 96)]
    public void Tuned_gemm_matches_the_cpu_at_every_row_count(DType dtype, int k, int n)
    {
        Gpu.Require();
        const int capacity = 600;
        using var host = new HostTensors(k + n);
        WeightTensor x = host.Random("x", DType.F32, 1f, capacity, k);
        WeightTensor w = host.Random("w", dtype, 0.05f, n, k);
        WeightTensor bias = host.Random("b", dtype, 0.5f, n);
        using var cpu = new CpuBackend(DType.F32);
        using var gpu = new CudaBackend(Gpu.Device, dtype);
        Tensor cx = cpu.LoadWeight(x), cw = cpu.LoadWeight(w), cb = cpu.LoadWeight(bias), cy = cpu.Allocate("y", DType.F32, capacity, n);
        Tensor gx = gpu.LoadWeight(x), gw = gpu.LoadWeight(w), gb = gpu.LoadWeight(bias), gy = gpu.Allocate("y", gpu.ActivationDType, capacity, n);
        foreach (int rows in new[] { 1, 3, 8, 17, 64, 100, 256, 333, 512, 600 })
        {
            cpu.Linear(cx, rows, cw, cb, cy);
            gpu.Linear(gx, rows, gw, gb, gy);
            double error = HostTensors.RelativeError(HostTensors.Read(gpu, gy, rows), HostTensors.Read(cpu, cy, rows));
            Assert.True(error < Tolerance(dtype), $"{rows} rows: relative error {error}");
        }

        int[] tuned = [.. gpu.TunedGemmChoices.Keys.Where(key => key.N == n && key.K == k).Select(key => key.Bucket).Order()];
        Assert.Equal([1, 2, 4, 8, 16, 32, 64, 128, 256, 512], tuned);
    }

    /// <summary>
    /// The kernels for decode steps of up to 64 rows (<c>skinny_gemm.cu</c>), forced on: every row bucket of the
    /// CUDA-core kernel (1, 2, 4) and of the tensor-core one (8 to 64, rows short of a bucket too), the model dtype and
    /// fp32 (logits) out, column counts that leave a block partly empty, k with and without a tail shorter than the
    /// kernels' unrolled strides, and a k that the four warps of a tensor-core block split unevenly.
    /// </summary>
    [Theory]
    [InlineData(DType.BF16, 1, 4096, 1024, false)]
    [InlineData(DType.BF16, 2, 4120, 333, true)]
    [InlineData(DType.BF16, 3, 200, 77, false)]
    [InlineData(DType.BF16, 4, 14336, 96, true)]
    [InlineData(DType.F16, 3, 1032, 257, false)]
    [InlineData(DType.F32, 4, 516, 130, false)]
    [InlineData(DType.BF16, 5, 4096, 1000, false)]
    [InlineData(DType.BF16, 8, 4128, 64, true)]
    [InlineData(DType.F16, 16, 1024, 333, false)]
    [InlineData(DType.BF16, 29, 14336, 200, false)]
    [InlineData(DType.BF16, 32, 96, 48, true)]
    [InlineData(DType.BF16, 64, 2080, 517, false)]
    [InlineData(DType.F16, 47, 4096, 160, true)]
    public void Skinny_gemm_for_a_few_rows_matches_the_cpu(DType dtype, int rows, int k, int n, bool logitsOut)
    {
        Gpu.Require();
        using var host = new HostTensors(rows * 7 + k + n);
        WeightTensor x = host.Random("x", DType.F32, 1f, rows, k);
        WeightTensor w = host.Random("w", dtype, 0.05f, n, k);

        float[] Run(IModelBackend b)
        {
            Tensor y = b.Allocate("y", logitsOut ? DType.F32 : b.ActivationDType, rows, n);
            b.Linear(b.LoadWeight(x), rows, b.LoadWeight(w), null, y);
            return HostTensors.Read(b, y, rows);
        }

        using var cpu = new CpuBackend(DType.F32);
        using var gpu = new CudaBackend(Gpu.Device, dtype) { GemmPolicy = GemmPolicy.Skinny };
        double error = HostTensors.RelativeError(Run(gpu), Run(cpu));
        Assert.True(error < (dtype == DType.F32 ? Fp32Tolerance * 10 : Tolerance(dtype)), $"relative error {error}");
    }

    /// <summary>
    /// The MLP's gate/up GEMM with its activation in one kernel (<c>skinny_gemm_gated</c>, taken where the GEMM alone
    /// runs on the CUDA-core skinny kernel) equals the GEMM followed by the activation kernel bit for bit, SiLU and
    /// gelu(tanh), every bucket of 1–4 rows, an intermediate size that leaves a block partly empty; and 5 rows, past
    /// the fused kernel, take the two launches and agree too.
    /// </summary>
    [Theory]
    [InlineData(DType.BF16, 1, 4096, 1792, false)]
    [InlineData(DType.BF16, 2, 4096, 333, true)]
    [InlineData(DType.F16, 3, 1032, 257, false)]
    [InlineData(DType.BF16, 4, 2048, 1000, false)]
    [InlineData(DType.F32, 4, 516, 130, true)]
    [InlineData(DType.BF16, 5, 4096, 512, false)]
    public void Gated_gemm_equals_the_gemm_then_the_activation(DType dtype, int rows, int k, int intermediate, bool geluTanh)
    {
        Gpu.Require();
        using var host = new HostTensors(rows * 3 + k + intermediate);
        WeightTensor x = host.Random("x", DType.F32, 1f, rows, k);
        WeightTensor gate = host.Random("gate", dtype, 0.05f, intermediate, k), up = host.Random("up", dtype, 0.05f, intermediate, k);
        using var gpu = new CudaBackend(Gpu.Device, dtype) { GemmPolicy = GemmPolicy.Skinny };
        Tensor xs = gpu.LoadWeight(x), gateUp = gpu.LoadStacked("gate_up", gate, up);
        // The gate/up buffer starts with values of its own: the one-kernel path never writes it, the two-kernel one does.
        Tensor buffer = gpu.LoadWeight(host.Random("gate_up_out", dtype, 1f, rows, 2 * intermediate));
        Tensor fused = gpu.Allocate("fused", dtype, rows, intermediate), unfused = gpu.Allocate("unfused", dtype, rows, intermediate);
        float[] before = HostTensors.Read(gpu, buffer, rows);
        gpu.GatedLinear(xs, rows, gateUp, null, null, geluTanh, buffer, fused);
        Assert.Equal(rows <= 4, before.SequenceEqual(HostTensors.Read(gpu, buffer, rows)));

        IModelBackend.LinearThenActivation(gpu, xs, rows, gateUp, null, null, geluTanh, buffer, unfused, null);
        float[] expected = HostTensors.Read(gpu, unfused, rows);
        Assert.Equal(expected, HostTensors.Read(gpu, fused, rows));
        Assert.True(expected.Distinct().Count() > intermediate / 2, "the outputs vary");
    }

    [Theory]
    [InlineData(DType.BF16, 3, 4096, 1024, false)]
    [InlineData(DType.F16, 2, 64, 40, false)]
    [InlineData(DType.BF16, 3, 4096, 1024, true)]
    public void Stacked_weights_equal_their_parts_one_after_another(DType stored, int rows, int k, int n, bool skinnyGemm)
    {
        Gpu.Require();
        using var host = new HostTensors(n);
        WeightTensor x = host.Random("x", DType.F32, 1f, rows, k);
        WeightTensor a = host.Random("a", stored, 0.05f, n, k), c = host.Random("c", stored, 0.05f, n / 2, k);
        // Served in the other 16-bit dtype: the weights are converted on the GPU as they load. One GEMM path for all
        // three shapes: the tuned choice may differ between them, and the two paths sum in different orders.
        using var gpu = new CudaBackend(Gpu.Device, stored == DType.BF16 ? DType.F16 : DType.BF16) { GemmPolicy = skinnyGemm ? GemmPolicy.Skinny : GemmPolicy.CublasGemmEx };
        Tensor xs = gpu.LoadWeight(x), stacked = gpu.LoadStacked("ac", a, c);
        Tensor y = gpu.Allocate("y", DType.F32, rows, n + n / 2), ya = gpu.Allocate("ya", DType.F32, rows, n), yc = gpu.Allocate("yc", DType.F32, rows, n / 2);
        gpu.Linear(xs, rows, stacked, null, y);
        gpu.Linear(xs, rows, gpu.LoadWeight(a), null, ya);
        gpu.Linear(xs, rows, gpu.LoadWeight(c), null, yc);
        float[] whole = HostTensors.Read(gpu, y, rows), partA = HostTensors.Read(gpu, ya, rows), partC = HostTensors.Read(gpu, yc, rows);
        for (int r = 0; r < rows; r++)
        {
            Assert.Equal(partA.AsSpan(r * n, n), whole.AsSpan(r * (n + n / 2), n));
            Assert.Equal(partC.AsSpan(r * (n / 2), n / 2), whole.AsSpan(r * (n + n / 2) + n, n / 2));
        }
    }

    [Theory]
    [InlineData(DType.BF16)]
    [InlineData(DType.F16)]
    [InlineData(DType.F32)]
    public void Dummy_weights_made_on_the_gpu_equal_the_host_ones(DType dtype)
    {
        Gpu.Require();
        using var host = new DummyWeightSource(dtype, seed: 11);
        using var device = new DummyWeightSource(dtype, seed: 11, materialize: false);
        using var gpu = new CudaBackend(Gpu.Device, dtype);
        foreach (string name in new[] { "model.layers.3.mlp.up_proj.weight", "model.norm.weight" })
        {
            Tensor made = gpu.LoadWeight(device.Get(name, 300, 77)), copied = gpu.LoadWeight(host.Get(name, 300, 77));
            float[] expected = HostTensors.Read(gpu, copied, 300);
            Assert.True(name.EndsWith("norm.weight", StringComparison.Ordinal) ? expected.All(v => v == 1f) : expected.Distinct().Count() > 1000);
            Assert.Equal(expected, HostTensors.Read(gpu, made, 300));
        }
    }

    /// <summary>
    /// OLMo-2's operators: the norm of a column slice of each row in place (its q/k norms inside the fused q/k/v row,
    /// with the rest of the row untouched) and the residual add; scaling (Granite) with them.
    /// </summary>
    [Theory]
    [InlineData(6, 96, 40, DType.BF16)]
    [InlineData(3, 200, 0, DType.F16)]
    [InlineData(5, 130, 65, DType.F32)]
    public void Slice_norm_add_and_scale_match_the_cpu(int rows, int width, int offset, DType dtype)
    {
        Gpu.Require();
        int size = width - offset - 7;
        using var host = new HostTensors(rows + width + offset);
        WeightTensor x = host.Random("x", DType.F32, 2f, rows, width);
        WeightTensor other = host.Random("o", DType.F32, 2f, rows, width);
        WeightTensor weight = host.Random("w", dtype, 1.5f, size);

        (float[] Normed, float[] Sum) Run(IModelBackend b)
        {
            Tensor xs = b.LoadWeight(x), os = b.LoadWeight(other), ws = b.LoadWeight(weight);
            b.RmsNormSlice(xs, rows, offset, ws, 1e-6f);
            b.Scale(os, rows, 0.37f);
            b.Add(xs, rows, os);
            return (HostTensors.Read(b, xs, rows), HostTensors.Read(b, os, rows));
        }

        using var cpu = new CpuBackend(DType.F32);
        using var gpu = new CudaBackend(Gpu.Device, dtype);
        var g = Run(gpu);   // first: the CPU works in place on the host arrays
        var c = Run(cpu);
        Assert.True(HostTensors.RelativeError(g.Normed, c.Normed) < Tolerance(dtype), "rms_norm_slice");
        Assert.True(HostTensors.RelativeError(g.Sum, c.Sum) < Tolerance(dtype), "scale and add_into");
    }

    [Theory]
    [InlineData(1, 64, DType.BF16)]
    [InlineData(33, 4096, DType.BF16)]
    [InlineData(9, 1000, DType.F16)]
    [InlineData(7, 257, DType.F32)]
    [InlineData(5, 1003, DType.BF16)]   // not a whole number of 16-byte vectors: the element-wise paths
    public void Norms_silu_and_embedding_match_the_cpu(int rows, int hidden, DType dtype)
    {
        Gpu.Require();
        using var host = new HostTensors(rows + hidden);
        WeightTensor x = host.Random("x", DType.F32, 2f, rows, hidden);
        WeightTensor residual = host.Random("r", DType.F32, 2f, rows, hidden);
        WeightTensor weight = host.Random("w", dtype, 1.5f, hidden);
        WeightTensor gateUp = host.Random("gate_up", DType.F32, 3f, rows, 2 * hidden);
        WeightTensor table = host.Random("embed", dtype, 1f, 300, hidden);
        int[] ids = Enumerable.Range(0, rows).Select(i => (i * 97 + 13) % 300).ToArray();

        (float[] Norm, float[] Added, float[] Residual, float[] Silu, float[] Embedded) Run(IModelBackend b)
        {
            b.BeginStep(Batch(ids));
            Tensor xs = b.LoadWeight(x), rs = b.LoadWeight(residual), ws = b.LoadWeight(weight), gu = b.LoadWeight(gateUp);
            Tensor norm = b.Allocate("norm", b.ActivationDType, rows, hidden);
            b.RmsNorm(xs, rows, ws, 1e-5f, norm);
            Tensor silu = b.Allocate("silu", b.ActivationDType, rows, hidden);
            b.SiluMul(gu, rows, silu);
            b.AddRmsNorm(xs, rs, rows, ws, 1e-6f);   // in place: xs and rs change
            Tensor embedded = b.Allocate("e", b.ActivationDType, rows, hidden);
            b.Embedding(b.LoadWeight(table), embedded);
            return (HostTensors.Read(b, norm, rows), HostTensors.Read(b, xs, rows), HostTensors.Read(b, rs, rows),
                HostTensors.Read(b, silu, rows), HostTensors.Read(b, embedded, rows));
        }

        using var cpu = new CpuBackend(DType.F32);
        using var gpu = new CudaBackend(Gpu.Device, dtype);
        // The GPU runs first: the CPU backend works on fp32 inputs in place (no copy), so the in-place
        // AddRmsNorm changes the host arrays that a later LoadWeight would read.
        var g = Run(gpu);
        var c = Run(cpu);
        double tolerance = Tolerance(dtype);
        Assert.True(HostTensors.RelativeError(g.Norm, c.Norm) < tolerance, "rms_norm");
        Assert.True(HostTensors.RelativeError(g.Added, c.Added) < tolerance, "add_rms_norm output");
        Assert.True(HostTensors.RelativeError(g.Residual, c.Residual) < tolerance, "add_rms_norm residual");
        Assert.True(HostTensors.RelativeError(g.Silu, c.Silu) < tolerance, "silu_mul");
        // The table holds values of the model dtype, which both sides copy exactly.
        Assert.Equal(c.Embedded, g.Embedded);
    }

    [Theory]
    [InlineData(32, 8, 128, 128, 1f, false, DType.F32)]     // Llama-3-8B shape
    [InlineData(16, 16, 80, 80, 0.1f, false, DType.F32)]    // odd head size, yarn-like scaling
    [InlineData(16, 8, 128, 64, 1f, true, DType.F32)]       // partial rotary, Qwen3's q/k norm
    [InlineData(32, 8, 128, 128, 1f, true, DType.BF16)]
    [InlineData(8, 2, 64, 64, 1f, false, DType.F16)]
    public void Prepare_attention_matches_the_cpu(int heads, int kvHeads, int headDim, int rotaryDim, float scaling, bool qkNorm, DType dtype)
    {
        Gpu.Require();
        using var host = new HostTensors(heads * headDim + rotaryDim);
        int rows = 45;
        WeightTensor qkv = host.Random("qkv", DType.F32, 1f, rows, (heads + 2 * kvHeads) * headDim);
        WeightTensor qNorm = host.Random("q_norm", dtype, 1.5f, headDim), kNorm = host.Random("k_norm", dtype, 1.5f, headDim);
        int[] positions = Enumerable.Range(0, rows).Select(i => i * 211 % 8000).ToArray();
        float[] invFreq = Enumerable.Range(0, rotaryDim / 2).Select(i => (float)(1.0 / Math.Pow(500000, 2.0 * i / rotaryDim))).ToArray();
        var rope = new RopeSpec(invFreq, rotaryDim, scaling, 8192);
        var spec = new AttentionSpec(heads, kvHeads, headDim, 1f / MathF.Sqrt(headDim), 0);

        float[] Run(IModelBackend b)
        {
            b.AllocateKvCache(1, 4, 16, spec);
            b.BeginStep(Batch(new int[rows]) with { Positions = positions, SlotMapping = Enumerable.Repeat(-1, rows).ToArray() });
            Tensor q = b.Allocate("q", b.ActivationDType, rows, heads * headDim);
            b.PrepareAttention(0, b.LoadWeight(qkv), rows, spec, rope, qkNorm ? b.LoadWeight(qNorm) : null, qkNorm ? b.LoadWeight(kNorm) : null, 1e-6f, q);
            return HostTensors.Read(b, q, rows);
        }

        using var cpu = new CpuBackend(DType.F32);
        using var gpu = new CudaBackend(Gpu.Device, dtype);
        double error = HostTensors.RelativeError(Run(gpu), Run(cpu));
        // Angles reach 8000 rad: cosf/sinf on the two sides agree to a few ulps of the reduced argument.
        Assert.True(error < Tolerance(dtype), $"relative error {error}");
    }

    [Theory]
    [InlineData(32, 8, 128, 0, false, DType.F32)]     // GQA 4, Llama-3-8B, CUDA-core kernel
    [InlineData(12, 12, 80, 0, false, DType.F32)]     // MHA, head size not a multiple of 32
    [InlineData(8, 2, 64, 24, false, DType.F32)]      // sliding window crossing block boundaries
    [InlineData(4, 1, 256, 0, false, DType.F32)]      // MQA, the largest head size the kernel takes
    [InlineData(32, 8, 128, 0, true, DType.F32)]      // few decode rows: the context is split across blocks and merged
    [InlineData(32, 2, 64, 0, true, DType.F32)]       // a GQA group of 16 spans two blocks, split as well
    [InlineData(8, 2, 64, 100, true, DType.F32)]      // split context under a sliding window
    [InlineData(32, 8, 128, 0, false, DType.BF16)]    // the tensor-core kernel from here on
    [InlineData(32, 8, 128, 0, true, DType.BF16)]
    [InlineData(12, 12, 80, 0, false, DType.BF16)]
    [InlineData(12, 4, 96, 0, true, DType.F16)]
    [InlineData(8, 2, 64, 24, false, DType.BF16)]
    [InlineData(8, 2, 64, 100, true, DType.BF16)]
    [InlineData(4, 1, 256, 0, false, DType.BF16)]
    [InlineData(4, 1, 256, 0, true, DType.F16)]
    [InlineData(32, 2, 64, 0, false, DType.BF16)]     // GQA 16
    [InlineData(14, 2, 64, 0, false, DType.BF16)]     // GQA 7: a group that does not divide the tile
    [InlineData(4, 2, 16, 0, false, DType.BF16)]      // the fixture models' head sizes
    [InlineData(4, 2, 32, 0, true, DType.F16)]
    [InlineData(40, 8, 128, 0, false, DType.BF16)]    // GQA 5
    [InlineData(64, 2, 128, 0, false, DType.BF16)]    // GQA 32: wider than a tile, the CUDA-core kernel
    [InlineData(64, 8, 64, 128, false, DType.BF16, true)]   // gpt-oss's attention: sinks, a 128-token window
    [InlineData(64, 8, 64, 0, true, DType.BF16, true)]      // sinks with a split context: added once, in the merge
    [InlineData(8, 2, 64, 24, false, DType.F32, true)]      // sinks in the CUDA-core kernel
    [InlineData(8, 2, 64, 0, true, DType.F32, true)]
    [InlineData(64, 2, 128, 0, false, DType.BF16, true)]
    public void Paged_attention_over_mixed_prefill_and_decode_matches_the_cpu(int heads, int kvHeads, int headDim, int window, bool decodeOnly, DType dtype, bool sinks = false)
    {
        Gpu.Require();
        // (tokens already in the cache, new tokens this step): a long fresh prefill, decodes over short and long
        // contexts, chunks that start mid-block and end past a block boundary, a 3-token chunk (speculative tokens:
        // with GQA <= 5 it fits the decode kernel's 16 rows). Decode-only: rows over long contexts.
        (int Context, int Query)[] sequences = decodeOnly
            ? [(1000, 1), (300, 1), (15, 1)]
            : [(0, 37), (50, 1), (15, 17), (300, 1), (1, 1), (0, 150), (40, 3), (70, 90)];
        const int blockSize = 16;
        int maxBlocks = sequences.Max(s => (s.Context + s.Query + blockSize - 1) / blockSize);
        var spec = new AttentionSpec(heads, kvHeads, headDim, 1f / MathF.Sqrt(headDim), window);
        float[] invFreq = Enumerable.Range(0, headDim / 2).Select(i => (float)(1.0 / Math.Pow(10000, 2.0 * i / headDim))).ToArray();
        var rope = new RopeSpec(invFreq, headDim, 1f, 2048);

        // The same seed on both sides: each run draws the same random q, k and v in the same order.
        float[] cpuOut, gpuOut;
        using (var host = new HostTensors(heads * 1000 + headDim))
        using (var cpu = new CpuBackend(DType.F32))
        {
            cpuOut = RunWith(cpu, host);
        }

        using (var host = new HostTensors(heads * 1000 + headDim))
        using (var gpu = new CudaBackend(Gpu.Device, dtype))
        {
            gpuOut = RunWith(gpu, host);
        }

        double error = HostTensors.RelativeError(gpuOut, cpuOut);
        Assert.True(error < Tolerance(dtype), $"relative error {error}");

        // Step 1 fills each context into the cache; step 2 writes the new tokens and attends with them.
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
                b.PrepareAttention(0, b.LoadWeight(h.Random("qkv_context", DType.F32, 1f, contextRows, width)), contextRows, spec, rope, null, null, 1e-6f, q);
            }

            ForwardBatch step = ForwardBatch.ForSequences(sequences, maxBlocks, blockSize);
            b.BeginStep(step);
            int rows = step.NumTokens;
            Tensor qs = b.Allocate("qs", b.ActivationDType, rows, heads * headDim);
            b.PrepareAttention(0, b.LoadWeight(h.Random("qkv", DType.F32, 2f, rows, width)), rows, spec, rope, null, null, 1e-6f, qs);
            Tensor output = b.Allocate("o", b.ActivationDType, rows, heads * headDim);
            // gpt-oss's sinks, every third head's far above its scores (that head's softmax is then mostly the sink).
            Tensor? sinkLogits = sinks
                ? b.LoadWeight(h.FromValues("sinks", [.. Enumerable.Range(0, heads).Select(i => i % 3 == 2 ? 6f + i % 5 : 0.5f * (i % 7) - 1.5f)], heads))
                : null;
            b.Attention(0, qs, output, spec, sinkLogits);
            return HostTensors.Read(b, output, rows);
        }
    }

    [Theory]
    [InlineData(32, 8, 128, false, DType.F8E4M3, true)]
    [InlineData(32, 8, 128, true, DType.F8E4M3, true)]
    [InlineData(8, 2, 64, false, DType.F8E5M2, true)]
    [InlineData(12, 4, 96, true, DType.F8E5M2, true)]
    [InlineData(4, 1, 256, false, DType.F8E4M3, true)]
    [InlineData(32, 8, 128, false, DType.F8E4M3, false)]
    [InlineData(8, 2, 64, true, DType.F8E5M2, false)]
    [InlineData(64, 2, 128, false, DType.F8E4M3, true)]     // GQA 32: the CUDA-core kernel reads FP8 too
    [InlineData(4, 2, 32, false, DType.F8E4M3, true)]       // the fixture models' head sizes
    [InlineData(4, 2, 32, true, DType.F8E4M3, false)]
    [InlineData(4, 2, 16, false, DType.F8E5M2, true)]
    [InlineData(4, 2, 16, true, DType.F8E4M3, true)]
    public void Paged_attention_over_an_fp8_cache_matches_the_cpu(int heads, int kvHeads, int headDim, bool decodeOnly, DType kv, bool exact)
    {
        Gpu.Require();
        // exact: keys and values are drawn from numbers FP8 (and bf16) hold exactly, stored with a power-of-two scale
        // and RoPE the identity, so only bf16 rounding of q and of the output remains. Otherwise arbitrary values
        // under a scale of 0.37, which FP8's 3 (E4M3) or 2 (E5M2) mantissa bits round: a few percent per element.
        (int Context, int Query)[] sequences = decodeOnly ? [(700, 1), (33, 1)] : [(0, 37), (50, 1), (15, 17), (0, 150)];
        const int blockSize = 16;
        float cacheScale = exact ? 0.5f : 0.37f;
        int maxBlocks = sequences.Max(s => (s.Context + s.Query + blockSize - 1) / blockSize);
        var spec = new AttentionSpec(heads, kvHeads, headDim, 1f / MathF.Sqrt(headDim), 0);
        float[] invFreq = exact ? new float[headDim / 2] : Enumerable.Range(0, headDim / 2).Select(i => (float)(1.0 / Math.Pow(10000, 2.0 * i / headDim))).ToArray();
        var rope = new RopeSpec(invFreq, headDim, 1f, 2048);
        int width = (heads + 2 * kvHeads) * headDim, qDim = heads * headDim;
        int mantissaBits = kv == DType.F8E4M3 ? 3 : 2;

        float[] Qkv(Random random, int rows) => Enumerable.Range(0, rows * width).Select(i =>
        {
            if (!exact || i % width < qDim)
            {
                return (float)(random.NextDouble() * 4 - 2);
            }

            float mantissa = 1f + random.Next(1 << mantissaBits) / (float)(1 << mantissaBits);
            return (random.Next(2) == 0 ? -1 : 1) * mantissa * MathF.Pow(2, random.Next(-3, 2));
        }).ToArray();

        float[] RunWith(IModelBackend b)
        {
            var random = new Random(heads * 7 + headDim);
            using var h = new HostTensors(1);
            b.AllocateKvCache(1, 1 + sequences.Length * maxBlocks, blockSize, spec);
            (b as CudaBackend)?.SetKvCacheScales([cacheScale], [cacheScale]);
            ForwardBatch fill = ForwardBatch.ForSequences(sequences.Select(s => (0, s.Context)).ToArray(), maxBlocks, blockSize);
            b.BeginStep(fill);
            Tensor q = b.Allocate("q", b.ActivationDType, Math.Max(fill.NumTokens, 1), qDim);
            if (fill.NumTokens > 0)
            {
                b.PrepareAttention(0, b.LoadWeight(h.FromValues("ctx", Qkv(random, fill.NumTokens), fill.NumTokens, width)), fill.NumTokens, spec, rope, null, null, 1e-6f, q);
            }

            ForwardBatch step = ForwardBatch.ForSequences(sequences, maxBlocks, blockSize);
            b.BeginStep(step);
            Tensor qs = b.Allocate("qs", b.ActivationDType, step.NumTokens, qDim);
            b.PrepareAttention(0, b.LoadWeight(h.FromValues("new", Qkv(random, step.NumTokens), step.NumTokens, width)), step.NumTokens, spec, rope, null, null, 1e-6f, qs);
            Tensor output = b.Allocate("o", b.ActivationDType, step.NumTokens, qDim);
            b.Attention(0, qs, output, spec);
            return HostTensors.Read(b, output, step.NumTokens);
        }

        float[] cpuOut, gpuOut;
        using (var cpu = new CpuBackend(DType.F32))
        {
            cpuOut = RunWith(cpu);
        }

        using (var gpu = new CudaBackend(Gpu.Device, DType.BF16, kvCacheDType: kv))
        {
            gpuOut = RunWith(gpu);
        }

        double error = HostTensors.RelativeError(gpuOut, cpuOut);
        double tolerance = exact ? Tolerance(DType.BF16) : kv == DType.F8E4M3 ? 0.06 : 0.12;
        Assert.True(error < tolerance, $"relative error {error} (tolerance {tolerance})");
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
}
