using Celer.Backends.Cpu;
using Celer.Models.Backend;
using Celer.Models.Quantization;
using Celer.Models.Weights;
using Celer.TestSupport;

namespace Celer.Backends.Cuda.Tests;

/// <summary>
/// <c>moe.cu</c> against the CPU backend: <see cref="IModelBackend.MoeExperts"/> over decode-sized and prefill-sized steps
/// (16- and 64-row tiles, several passes of <see cref="CudaBackend"/>'s row chunk), expert counts and top-k of Mixtral,
/// Qwen2-MoE and Qwen3-MoE shapes, hidden and intermediate sizes off the GEMM's 32-k and 64-column tiles, each model
/// dtype (fp32: the CUDA-core GEMM), with and without renormalization; <see cref="IModelBackend.AddSigmoidGated"/>; and
/// the MoE inside a recorded CUDA graph, replayed with different routing. Router logits are made in the model dtype so
/// that both backends rank the same values (ties included); tolerances as <see cref="OperatorParityTests"/>.
/// </summary>
public sealed class MoeParityTests
{
    private static double Tolerance(DType dtype) => dtype switch
    {
        DType.F32 => 1e-4,   // fp32 sums of different order, through two GEMMs and the weighted sum
        DType.F16 => 3e-3,
        _ => 2e-2,
    };

    [Theory]
    [InlineData(DType.BF16, 1, 8, 2, 96, 80, true)]          // Mixtral-like decode: 16-row tiles
    [InlineData(DType.BF16, 5, 60, 4, 200, 32, false)]       // Qwen2-MoE-like routing, no renormalization
    [InlineData(DType.BF16, 64, 8, 2, 200, 1408, true)]      // 16 rows per expert on average: 16-row tiles
    [InlineData(DType.BF16, 300, 60, 8, 96, 80, false)]      // prefill: 64-row tiles
    [InlineData(DType.BF16, 300, 128, 8, 128, 96, true)]     // Qwen3-MoE-like expert count
    [InlineData(DType.F16, 300, 4, 1, 200, 80, true)]        // top-1
    [InlineData(DType.F16, 5, 8, 8, 96, 1408, true)]         // top-k = every expert
    [InlineData(DType.BF16, 2100, 8, 2, 96, 80, true)]       // two passes of the 2048-row chunk
    [InlineData(DType.F32, 5, 8, 2, 200, 80, true)]
    [InlineData(DType.F32, 64, 60, 4, 96, 32, false)]
    [InlineData(DType.F32, 300, 8, 2, 100, 70, true)]        // hidden and I not multiples of 8
    public void Moe_experts_match_the_cpu(DType dtype, int rows, int experts, int topK, int hidden, int intermediate, bool normalize)
    {
        Gpu.Require();
        using var host = new HostTensors(rows * 7 + experts * 3 + topK + hidden + intermediate);
        WeightTensor x = host.Random("x", DType.F32, 1f, rows, hidden);
        WeightTensor logits = host.Random("router_logits", dtype, 3f, rows, experts);
        WeightTensor gateUp = host.Random("gate_up", dtype, 0.1f, experts * 2 * intermediate, hidden);
        WeightTensor down = host.Random("down", dtype, 0.1f, experts * hidden, intermediate);

        float[] Run(IModelBackend b)
        {
            Tensor output = b.Allocate("out", b.ActivationDType, rows, hidden);
            b.MoeExperts(b.LoadWeight(x), rows, b.LoadWeight(logits), topK, normalize, b.LoadWeight(gateUp), b.LoadWeight(down), output);
            return HostTensors.Read(b, output, rows);
        }

        using var cpu = new CpuBackend(DType.F32);
        using var gpu = new CudaBackend(Gpu.Device, dtype);
        double error = HostTensors.RelativeError(Run(gpu), Run(cpu));
        Assert.True(error < Tolerance(dtype), $"relative error {error}");
    }

    /// <summary>
    /// gpt-oss's experts (a bias after each projection, the clamped SwiGLU with a limit small enough that the clamps bite)
    /// through each GEMM path: moe_gemv (a decode row), 16- and 64-row tiles, and the CUDA-core GEMM of fp32 models.
    /// </summary>
    [Theory]
    [InlineData(DType.BF16, 1, 32, 4, 96, 80)]
    [InlineData(DType.BF16, 40, 8, 2, 200, 96)]
    [InlineData(DType.F16, 300, 32, 4, 128, 80)]
    [InlineData(DType.F32, 1, 16, 4, 96, 80)]
    [InlineData(DType.F32, 64, 8, 2, 100, 70)]
    public void Biased_experts_with_the_clamped_swiglu_match_the_cpu(DType dtype, int rows, int experts, int topK, int hidden, int intermediate)
    {
        Gpu.Require();
        using var host = new HostTensors(rows * 5 + experts + hidden);
        WeightTensor x = host.Random("x", DType.F32, 1f, rows, hidden);
        WeightTensor logits = host.Random("router_logits", dtype, 3f, rows, experts);
        WeightTensor gateUp = host.Random("gate_up", dtype, 0.3f, experts * 2 * intermediate, hidden);
        WeightTensor down = host.Random("down", dtype, 0.1f, experts * hidden, intermediate);
        WeightTensor gateUpBias = host.Random("gate_up_bias", dtype, 1f, experts * 2 * intermediate);
        WeightTensor downBias = host.Random("down_bias", dtype, 1f, experts * hidden);

        float[] Run(IModelBackend b)
        {
            Tensor output = b.Allocate("out", b.ActivationDType, rows, hidden);
            var options = new ExpertOptions(b.LoadWeight(gateUpBias), b.LoadWeight(downBias), SwigluLimit: 0.8f);
            b.MoeExperts(b.LoadWeight(x), rows, b.LoadWeight(logits), topK, true, b.LoadWeight(gateUp), b.LoadWeight(down), output, options);
            return HostTensors.Read(b, output, rows);
        }

        using var cpu = new CpuBackend(DType.F32);
        using var gpu = new CudaBackend(Gpu.Device, dtype);
        double error = HostTensors.RelativeError(Run(gpu), Run(cpu));
        Assert.True(error < Tolerance(dtype), $"relative error {error}");
    }

    /// <summary>
    /// MXFP4 experts kept packed (<see cref="CudaBackend.LoadMxfp4"/>) against the same experts decoded into bf16 on both
    /// backends: the 64-row tiles decode each stage into the shared tile the 16-bit weights reach by cp.async, so they give
    /// the 16-bit kernels' bits; the 16-row tiles (B fragments decoded from the codes) and moe_gemv sum the same products
    /// in another order, within bf16 rounding of the CPU's fp32 result.
    /// </summary>
    [Theory]
    [InlineData(1, 32, 4, 128, 96, false)]      // moe_gemv
    [InlineData(3, 16, 4, 96, 160, true)]       // moe_gemv, gpt-oss's biases and clamped SwiGLU
    [InlineData(40, 8, 2, 160, 96, true)]       // 16-row tiles, n off both kernels' column blocks
    [InlineData(300, 32, 4, 128, 96, false)]    // 64-row tiles
    [InlineData(64, 32, 4, 2880, 2880, true)]   // gpt-oss's widths
    public void Mxfp4_experts_compute_what_their_decoded_values_compute(int rows, int experts, int topK, int hidden, int intermediate, bool gptOss)
    {
        Gpu.Require();
        using var host = new HostTensors(rows + experts + hidden);
        WeightTensor x = host.Random("x", DType.F32, 1f, rows, hidden);
        WeightTensor logits = host.Random("router_logits", DType.BF16, 3f, rows, experts);
        (WeightTensor Blocks, WeightTensor Scales, WeightTensor Values) gateUp = host.Mxfp4("gate_up", experts * 2 * intermediate, hidden);
        (WeightTensor Blocks, WeightTensor Scales, WeightTensor Values) down = host.Mxfp4("down", experts * hidden, intermediate);
        WeightTensor gateUpBias = host.Random("gate_up_bias", DType.BF16, 1f, experts * 2 * intermediate);
        WeightTensor downBias = host.Random("down_bias", DType.BF16, 1f, experts * hidden);

        float[] Run(IModelBackend b, Tensor w1, Tensor w2)
        {
            Tensor output = b.Allocate("out", b.ActivationDType, rows, hidden);
            ExpertOptions? options = gptOss ? new ExpertOptions(b.LoadWeight(gateUpBias), b.LoadWeight(downBias), SwigluLimit: 0.8f) : null;
            b.MoeExperts(b.LoadWeight(x), rows, b.LoadWeight(logits), topK, true, w1, w2, output, options);
            return HostTensors.Read(b, output, rows);
        }

        using var cpu = new CpuBackend(DType.F32);
        using var gpu = new CudaBackend(Gpu.Device, DType.BF16);
        Tensor packedGateUp = gpu.LoadMxfp4("gate_up", gateUp.Blocks, gateUp.Scales)!, packedDown = gpu.LoadMxfp4("down", down.Blocks, down.Scales)!;
        Assert.NotNull(packedGateUp.Mxfp4);
        float[] packed = Run(gpu, packedGateUp, packedDown);
        float[] decoded = Run(gpu, gpu.LoadWeight(gateUp.Values), gpu.LoadWeight(down.Values));
        float[] reference = Run(cpu, cpu.LoadWeight(gateUp.Values), cpu.LoadWeight(down.Values));
        if (rows * topK > 16 * experts)
        {
            Assert.Equal(decoded, packed);   // 64-row tiles
        }

        double error = HostTensors.RelativeError(packed, reference);
        Assert.True(error < Tolerance(DType.BF16), $"relative error {error}");
    }

    /// <summary>
    /// FP8 experts as an FP8 checkpoint's parts reach the backend (<see cref="CudaBackend.LoadStacked"/>: each expert's
    /// gate, up and down E4M3 matrix with its scales, per row, per tensor or per 128 × 128 block) against the same parts
    /// dequantized (code × scale, the weight the kernels decode into the model dtype): bit-equal on the 64-row tiles and
    /// the CUDA-core GEMM of fp32 models (the plain kernels' products and order), and within the dtype's rounding of the
    /// CPU's fp32 result on every path.
    /// </summary>
    [Theory]
    [InlineData(DType.BF16, Fp8WeightScales.PerChannel, 1, 16, 4, 128, 96, false)]     // moe_gemv
    [InlineData(DType.BF16, Fp8WeightScales.PerChannel, 40, 8, 2, 160, 96, true)]      // 16-row tiles, gpt-oss's biases and SwiGLU
    [InlineData(DType.F16, Fp8WeightScales.PerChannel, 300, 16, 4, 96, 160, false)]    // 64-row tiles
    [InlineData(DType.BF16, Fp8WeightScales.PerTensor, 5, 8, 2, 96, 64, false)]
    [InlineData(DType.BF16, Fp8WeightScales.PerBlock, 1, 8, 2, 256, 128, false)]       // block scales: moe_gemv
    [InlineData(DType.BF16, Fp8WeightScales.PerBlock, 40, 8, 2, 256, 128, false)]      // 16-row tiles
    [InlineData(DType.F16, Fp8WeightScales.PerBlock, 300, 8, 2, 384, 128, true)]       // 64-row tiles
    [InlineData(DType.BF16, Fp8WeightScales.PerBlock, 4, 128, 8, 2048, 768, false)]    // Qwen3-30B-A3B-FP8's widths
    [InlineData(DType.F32, Fp8WeightScales.PerChannel, 5, 8, 2, 96, 64, true)]         // fp32 models: the CUDA-core GEMM
    [InlineData(DType.F32, Fp8WeightScales.PerBlock, 300, 8, 2, 256, 128, false)]
    public void Fp8_experts_compute_what_their_dequantized_values_compute(DType dtype, Fp8WeightScales kind, int rows, int experts, int topK,
        int hidden, int intermediate, bool gptOss)
    {
        Gpu.Require();
        using var host = new HostTensors(rows + experts + hidden + (int)kind);
        WeightTensor x = host.Random("x", DType.F32, 1f, rows, hidden);
        WeightTensor logits = host.Random("router_logits", dtype, 3f, rows, experts);
        WeightTensor[] gateUp = [.. Enumerable.Range(0, experts).SelectMany(e => new[]
        {
            host.Fp8($"experts.{e}.gate_proj", kind, intermediate, hidden), host.Fp8($"experts.{e}.up_proj", kind, intermediate, hidden),
        })];
        WeightTensor[] down = [.. Enumerable.Range(0, experts).Select(e => host.Fp8($"experts.{e}.down_proj", kind, hidden, intermediate))];
        WeightTensor gateUpBias = host.Random("gate_up_bias", dtype, 1f, experts * 2 * intermediate);
        WeightTensor downBias = host.Random("down_bias", dtype, 1f, experts * hidden);

        float[] Run(IModelBackend b, WeightTensor[] w1, WeightTensor[] w2)
        {
            Tensor output = b.Allocate("out", b.ActivationDType, rows, hidden);
            ExpertOptions? options = gptOss ? new ExpertOptions(b.LoadWeight(gateUpBias), b.LoadWeight(downBias), SwigluLimit: 0.8f) : null;
            b.MoeExperts(b.LoadWeight(x), rows, b.LoadWeight(logits), topK, true, b.LoadStacked("gate_up", w1), b.LoadStacked("down", w2), output, options);
            return HostTensors.Read(b, output, rows);
        }

        WeightTensor[] Dequantized(WeightTensor[] parts) => [.. parts.Select(host.Dequantized)];
        using var cpu = new CpuBackend(DType.F32);
        using var gpu = new CudaBackend(Gpu.Device, dtype);
        float[] packed = Run(gpu, gateUp, down);
        float[] decoded = Run(gpu, Dequantized(gateUp), Dequantized(down));
        float[] reference = Run(cpu, Dequantized(gateUp), Dequantized(down));
        if (rows * topK > 16 * experts)
        {
            Assert.Equal(decoded, packed);   // 64-row tiles
        }

        double error = HostTensors.RelativeError(packed, reference);
        Assert.True(error < Tolerance(dtype), $"relative error {error}");
    }

    /// <summary>
    /// 4-bit integer experts (GPTQ / AWQ / compressed-tensors W4A16, loaded by LoadExperts): kept packed in 16-bit models
    /// (groups of 32 to 128, and per channel, repeated over the widest power-of-two group of the width), the *_int4
    /// kernels compute what the same backend computes on the values dequantized into the model dtype (bit for bit on the
    /// 64-row tiles, which decode into the same shared tile), and both stay within the dtype's tolerance of the CPU's fp32
    /// on the exact values. Act-order and 8-bit experts, and fp32 models, take the values dequantized at load.
    /// </summary>
    [Theory]
    [InlineData(DType.BF16, 4, 32, 1, 16, 4, 128, 96, false)]       // moe_gemv
    [InlineData(DType.F16, 4, 128, 3, 16, 4, 256, 128, true)]       // moe_gemv, gpt-oss's biases and SwiGLU
    [InlineData(DType.BF16, 4, 64, 40, 8, 2, 128, 192, true)]       // 16-row tiles
    [InlineData(DType.F16, 4, 32, 300, 16, 4, 96, 160, false)]      // 64-row tiles
    [InlineData(DType.BF16, 4, 0, 40, 8, 2, 128, 96, false)]        // per channel: groups of 128 and 32 (96 = 3 × 32)
    [InlineData(DType.BF16, 4, 128, 4, 128, 8, 2048, 768, false)]   // Qwen3-30B-A3B's widths (GPTQ's groups of 128)
    [InlineData(DType.BF16, 4, 16, 40, 8, 2, 128, 96, false)]       // groups of 16: dequantized at load
    [InlineData(DType.BF16, 8, 32, 40, 8, 2, 128, 96, false)]       // 8-bit: dequantized at load
    [InlineData(DType.F32, 4, 32, 40, 8, 2, 128, 96, false)]        // fp32 models: dequantized at load
    public void Int4_experts_compute_what_their_dequantized_values_compute(DType dtype, int bits, int groupSize, int rows, int experts, int topK,
        int hidden, int intermediate, bool gptOss)
    {
        Gpu.Require();
        var random = new Random(rows + experts + hidden + groupSize);
        using var host = new HostTensors(rows + experts + hidden + groupSize);
        WeightTensor x = host.Random("x", DType.F32, 1f, rows, hidden);
        WeightTensor logits = host.Random("router_logits", dtype, 3f, rows, experts);
        IntWeights Create(int n, int k) => RandomIntWeights.Create(random, n, k, bits, groupSize, null);
        IntWeights[] gateUp = [.. Enumerable.Range(0, 2 * experts).Select(_ => Create(intermediate, hidden))];
        IntWeights[] down = [.. Enumerable.Range(0, experts).Select(_ => Create(hidden, intermediate))];
        WeightTensor gateUpBias = host.Random("gate_up_bias", dtype, 1f, experts * 2 * intermediate);
        WeightTensor downBias = host.Random("down_bias", dtype, 1f, experts * hidden);
        WeightTensor[] Packed(IntWeights[] w) => [.. w.Select((q, i) => new WeightTensor($"experts.{i}", DType.I32, [q.Rows, q.Columns], 0, 0) { Packed = q })];
        WeightTensor[] Dequantized(IntWeights[] w) => [.. w.Select((q, i) => host.FromValues($"experts.{i}", RandomIntWeights.Dequantize(q), q.Rows, q.Columns))];

        float[] Run(IModelBackend b, WeightTensor[] w1, WeightTensor[] w2, Action<Tensor>? check = null)
        {
            Tensor output = b.Allocate("out", b.ActivationDType, rows, hidden);
            ExpertOptions? options = gptOss ? new ExpertOptions(b.LoadWeight(gateUpBias), b.LoadWeight(downBias), SwigluLimit: 0.8f) : null;
            Tensor g = b.LoadExperts("gate_up", w1);
            check?.Invoke(g);
            b.MoeExperts(b.LoadWeight(x), rows, b.LoadWeight(logits), topK, true, g, b.LoadExperts("down", w2), output, options);
            return HostTensors.Read(b, output, rows);
        }

        using var cpu = new CpuBackend(DType.F32);
        using var gpu = new CudaBackend(Gpu.Device, dtype);
        bool keptPacked = dtype != DType.F32 && bits == 4 && groupSize is 0 or >= 32;
        float[] packed = Run(gpu, Packed(gateUp), Packed(down), g => Assert.Equal(keptPacked, g.Int4 is { Layout: Int4Layout.Experts }));
        float[] decoded = Run(gpu, Dequantized(gateUp), Dequantized(down));
        float[] reference = Run(cpu, Packed(gateUp), Packed(down));   // the CPU's own packed experts, in fp32
        if (!keptPacked || rows * topK > 16 * experts)
        {
            Assert.Equal(decoded, packed);   // 64-row tiles, or the same dequantized weights
        }

        double error = HostTensors.RelativeError(packed, reference);
        Assert.True(error < Tolerance(dtype), $"relative error {error}");
    }

    /// <summary>Fewer rows than the buffers hold (a step smaller than the capacity the scratch was sized for), then more.</summary>
    [Theory]
    [InlineData(DType.BF16)]
    [InlineData(DType.F32)]
    public void Moe_experts_over_part_of_the_buffers_match_the_cpu(DType dtype)
    {
        Gpu.Require();
        const int capacity = 200, experts = 16, topK = 4, hidden = 96, intermediate = 80;
        using var host = new HostTensors(capacity + experts);
        WeightTensor x = host.Random("x", DType.F32, 1f, capacity, hidden);
        WeightTensor logits = host.Random("router_logits", dtype, 3f, capacity, experts);
        WeightTensor gateUp = host.Random("gate_up", dtype, 0.1f, experts * 2 * intermediate, hidden);
        WeightTensor down = host.Random("down", dtype, 0.1f, experts * hidden, intermediate);
        using var cpu = new CpuBackend(DType.F32);
        using var gpu = new CudaBackend(Gpu.Device, dtype);
        Tensor cx = cpu.LoadWeight(x), cl = cpu.LoadWeight(logits), cg = cpu.LoadWeight(gateUp), cd = cpu.LoadWeight(down);
        Tensor gx = gpu.LoadWeight(x), gl = gpu.LoadWeight(logits), gg = gpu.LoadWeight(gateUp), gd = gpu.LoadWeight(down);
        Tensor co = cpu.Allocate("out", DType.F32, capacity, hidden), go = gpu.Allocate("out", dtype, capacity, hidden);
        foreach (int rows in new[] { 3, 1, 17, 200, 64 })
        {
            cpu.MoeExperts(cx, rows, cl, topK, true, cg, cd, co);
            gpu.MoeExperts(gx, rows, gl, topK, true, gg, gd, go);
            double error = HostTensors.RelativeError(HostTensors.Read(gpu, go, rows), HostTensors.Read(cpu, co, rows));
            Assert.True(error < Tolerance(dtype), $"{rows} rows: relative error {error}");
        }
    }

    [Theory]
    [InlineData(DType.BF16, 7, 2048)]
    [InlineData(DType.F16, 1, 96)]
    [InlineData(DType.F32, 3, 1001)]
    public void Add_sigmoid_gated_matches_the_cpu(DType dtype, int rows, int hidden)
    {
        Gpu.Require();
        using var host = new HostTensors(rows + hidden);
        WeightTensor x = host.Random("x", dtype, 2f, rows, hidden);
        WeightTensor gate = host.Random("gate", dtype, 4f, rows, 1);
        WeightTensor output = host.Random("out", dtype, 2f, rows, hidden);

        float[] Run(IModelBackend b)
        {
            Tensor o = b.LoadWeight(output);   // in place (the CPU's fp32 backend may alias the host values: the GPU runs first)
            b.AddSigmoidGated(b.LoadWeight(x), b.LoadWeight(gate), rows, o);
            return HostTensors.Read(b, o, rows);
        }

        using var gpu = new CudaBackend(Gpu.Device, dtype);
        float[] g = Run(gpu);
        using var cpu = new CpuBackend(DType.F32);
        double error = HostTensors.RelativeError(g, Run(cpu));
        Assert.True(error < Tolerance(dtype), $"relative error {error}");
    }

    /// <summary>
    /// The router GEMM and the MoE recorded in a CUDA graph after one eager call (which sizes the scratch): replayed after x
    /// changes (so the routing changes), the graph gives what the same operators give eagerly on the new x.
    /// </summary>
    [Theory]
    [InlineData(DType.BF16, 4, 60, 4)]     // decode: 16-row tiles
    [InlineData(DType.BF16, 256, 8, 2)]    // 64-row tiles
    [InlineData(DType.F32, 8, 16, 2)]
    public void Moe_experts_in_a_cuda_graph_follow_the_routing_of_each_replay(DType dtype, int rows, int experts, int topK)
    {
        Gpu.Require();
        const int hidden = 128, intermediate = 96;
        using var host = new HostTensors(rows + experts);
        using var gpu = new CudaBackend(Gpu.Device, dtype);
        Tensor x = gpu.LoadWeight(host.Random("x", DType.F32, 1f, rows, hidden));
        Tensor router = gpu.LoadWeight(host.Random("router", dtype, 0.3f, experts, hidden));
        Tensor gateUp = gpu.LoadWeight(host.Random("gate_up", dtype, 0.1f, experts * 2 * intermediate, hidden));
        Tensor down = gpu.LoadWeight(host.Random("down", dtype, 0.1f, experts * hidden, intermediate));
        Tensor logits = gpu.Allocate("logits", dtype, rows, experts);
        Tensor graphOut = gpu.Allocate("graph_out", dtype, rows, hidden), eagerOut = gpu.Allocate("eager_out", dtype, rows, hidden);

        void Forward(Tensor output)
        {
            gpu.Linear(x, rows, router, null, logits);
            gpu.MoeExperts(x, rows, logits, topK, true, gateUp, down, output);
        }

        Forward(eagerOut);   // the first eager call sizes the scratch and times the router GEMM's algorithms
        Forward(eagerOut);   // the chosen algorithm, which the graph records
        gpu.BeginCapture();
        Forward(graphOut);
        gpu.EndCapture(rows);   // launches the graph once
        Assert.True(HostTensors.RelativeError(HostTensors.Read(gpu, graphOut, rows), HostTensors.Read(gpu, eagerOut, rows)) < 1e-6, "the recorded graph differs from eager");

        float[] before = HostTensors.Read(gpu, graphOut, rows);
        foreach (float factor in new[] { -1.5f, 0.7f })
        {
            gpu.Scale(x, rows, factor);   // new logits: a different ranking of the experts (a sign flip reverses it)
            Assert.True(gpu.TryReplay(rows));
            Forward(eagerOut);
            float[] replayed = HostTensors.Read(gpu, graphOut, rows), eager = HostTensors.Read(gpu, eagerOut, rows);
            Assert.True(HostTensors.RelativeError(replayed, eager) < 1e-6, $"factor {factor}: the replay differs from eager");
            Assert.True(HostTensors.RelativeError(replayed, before) > 0.1, $"factor {factor}: the replay did not follow the new x");
            before = replayed;
        }
    }
}
