using System.Runtime.InteropServices;
using Celer.Backends.Cpu;
using Celer.Models.Backend;
using Celer.Models.Quantization;
using Celer.Models.Weights;

namespace Celer.Backends.Cuda.Tests;

/// <summary>
/// The FP8 W8A8 linear layers (input quantization in <c>fp8_quant.cu</c>, cuBLASLt's scaled FP8 GEMM) against the CPU
/// backend's W8A8 (its inputs quantized by <c>Fp8Activations</c>, itself checked code for code, times the dequantized
/// weights) on random E4M3 weights and scales: per-channel and per-tensor weights stacked from parts with scales of their
/// own, dynamic per-token and static inputs, 128 x 128 blocks with per-token groups of 128 where k and the last part end in
/// partial blocks (a grid row padded to 4 columns), a bias, models in bf16, fp16 and fp32, and row counts across the
/// tuner's buckets on one backend. Both sides quantize the same inputs to the same codes, so what differs is fp32
/// summation order and the GPU's 16-bit output: a norm-relative error near 2e-3; a scale read from the wrong place is off
/// by tens of percent.
/// </summary>
public sealed unsafe class Fp8GemmTests : IDisposable
{
    private const double Tolerance = 1e-2;

    private readonly List<nint> _memory = [];

    [Theory]
    [InlineData(Fp8WeightScales.PerChannel, ActivationScaling.DynamicPerToken, 4096, "1536", false, DType.BF16)]
    [InlineData(Fp8WeightScales.PerChannel, ActivationScaling.DynamicPerToken, 176, "352,48", true, DType.BF16)]
    [InlineData(Fp8WeightScales.PerTensor, ActivationScaling.StaticPerTensor, 4096, "512,128,128", false, DType.BF16)]
    [InlineData(Fp8WeightScales.PerTensor, ActivationScaling.DynamicPerToken, 1024, "2048,2048", true, DType.BF16)]
    [InlineData(Fp8WeightScales.PerBlock, ActivationScaling.DynamicPerTokenGroup, 320, "256,128,96", false, DType.BF16)]
    [InlineData(Fp8WeightScales.PerBlock, ActivationScaling.DynamicPerTokenGroup, 4096, "1024,1024", true, DType.BF16)]
    [InlineData(Fp8WeightScales.PerChannel, ActivationScaling.DynamicPerToken, 4096, "1024,256,256", false, DType.F32)]
    [InlineData(Fp8WeightScales.PerBlock, ActivationScaling.DynamicPerTokenGroup, 320, "256,128,96", true, DType.F32)]
    [InlineData(Fp8WeightScales.PerTensor, ActivationScaling.StaticPerTensor, 1024, "512", false, DType.F16)]
    // A down projection's k: four quantized rows take more than the 48 KB of shared memory a kernel gets by default.
    [InlineData(Fp8WeightScales.PerChannel, ActivationScaling.DynamicPerToken, 14336, "96", false, DType.BF16)]
    [InlineData(Fp8WeightScales.PerBlock, ActivationScaling.DynamicPerTokenGroup, 14336, "128", true, DType.BF16)]
    public void Fp8_linear_matches_the_cpu_w8a8_at_every_row_count(Fp8WeightScales kind, ActivationScaling scaling, int k, string parts, bool withBias, DType dtype)
    {
        foreach ((GemmPolicy policy, int warps) in Policies)
        {
            Compare(kind, scaling, k, parts, withBias, dtype, policy, warps);
        }
    }

    /// <summary>
    /// One backend per kernel choice: the tuner's (what serving runs), the skinny FP8 kernel in blocks of 4 and of 8
    /// warps forced where it applies (1 to 8 rows; cuBLASLt beyond), and cuBLASLt's first candidate forced (block scales
    /// at 1 to 3 rows run 4).
    /// </summary>
    private static readonly (GemmPolicy Policy, int Warps)[] Policies =
        [(GemmPolicy.Tune, 4), (GemmPolicy.Skinny, 4), (GemmPolicy.Skinny, 8), (GemmPolicy.CublasLt, 4)];

    /// <summary>The three ways a checkpoint pairs weight scales with input quantization.</summary>
    public static TheoryData<Fp8WeightScales, ActivationScaling> Schemes => new()
    {
        { Fp8WeightScales.PerChannel, ActivationScaling.DynamicPerToken },
        { Fp8WeightScales.PerTensor, ActivationScaling.StaticPerTensor },
        { Fp8WeightScales.PerBlock, ActivationScaling.DynamicPerTokenGroup },
    };

    /// <summary>An input quantization of <paramref name="scaling"/>, with <paramref name="staticScale"/> where it is static and groups of 128 where per group.</summary>
    private static ActivationQuantization Activations(ActivationScaling scaling, float staticScale) =>
        new(scaling, StaticScale: scaling == ActivationScaling.StaticPerTensor ? staticScale : 0,
            GroupSize: scaling == ActivationScaling.DynamicPerTokenGroup ? CudaBackend.Fp8ScaleBlock : 0);

    private static void Compare(Fp8WeightScales kind, ActivationScaling scaling, int k, string parts, bool withBias, DType dtype, GemmPolicy policy, int warps)
    {
        Gpu.Require();
        int[] partRows = [.. parts.Split(',').Select(int.Parse)];
        int n = partRows.Sum(), capacity = 600;
        using var host = new HostTensors(k + n);
        WeightTensor x = host.Random("x", dtype, 2f, capacity, k);
        WeightTensor bias = host.Random("b", dtype, 0.5f, n);
        WeightTensor[] weights = [.. partRows.Select((rows, i) => host.Fp8($"w{i}", kind, rows, k))];
        ActivationQuantization activations = Activations(scaling, 2f / 448 * 0.75f);   // static: saturates the largest inputs, as calibration may

        using var cpu = new CpuBackend(DType.F32);
        using var gpu = new CudaBackend(Gpu.Device, dtype) { GemmPolicy = policy, Fp8SkinnyWarps = warps };
        Tensor cx = cpu.LoadWeight(x), cw = cpu.LoadStacked("w", [.. weights.Select(host.Dequantized)]), cy = cpu.Allocate("y", DType.F32, capacity, n);
        Tensor gx = gpu.LoadWeight(x), gw = gpu.LoadStacked("w", weights), gy = gpu.Allocate("y", dtype, capacity, n);
        Tensor? cb = withBias ? cpu.LoadWeight(bias) : null, gb = withBias ? gpu.LoadWeight(bias) : null;
        foreach (int rows in new[] { 1, 2, 3, 4, 5, 8, 17, 64, 300, 598 })
        {
            cpu.Linear(cx, rows, cw, cb, cy, activations);
            gpu.Linear(gx, rows, gw, gb, gy, activations);
            double error = HostTensors.RelativeError(HostTensors.Read(gpu, gy, rows), HostTensors.Read(cpu, cy, rows));
            Assert.True(error < Tolerance, $"{policy} ({warps} warps), {rows} rows: relative error {error}");
        }

        if (policy == GemmPolicy.Tune)
        {
            string[] kernels = [.. gpu.TunedGemmChoices.Where(c => c.Key.N == n && c.Key.K == k).OrderBy(c => c.Key.Bucket).Select(c => $"{c.Key.Bucket}: {c.Value}")];
            Assert.NotEmpty(kernels);
            TestContext.Current.SendDiagnosticMessage($"FP8 {kind} [{n}, {k}]: {string.Join(", ", kernels)}");
        }
    }

    /// <summary>
    /// The input quantization bit for bit: through an identity weight (E4M3 1.0, scale 1) in an fp32 model each output is
    /// one exact product, code(x / s) · s, so the GPU's codes and scales must equal the CPU's (<c>Fp8Activations</c>)
    /// exactly, in every scheme: through the skinny kernel (1, 3 and 6 rows, blocks of 4 and 8 warps) and cuBLASLt (1,
    /// 3, 6 and 37 rows), both of which read <c>quantize_fp8</c>'s codes and scales.
    /// </summary>
    [Theory]
    [MemberData(nameof(Schemes))]
    public void Quantized_inputs_equal_the_cpu_codes_exactly(Fp8WeightScales kind, ActivationScaling scaling)
    {
        Gpu.Require();
        const int k = 320, capacity = 40;
        using var host = new HostTensors(k + (int)kind);
        WeightTensor x = host.Random("x", DType.F32, 3f, capacity, k), identity = Identity("w", kind, k);
        ActivationQuantization activations = Activations(scaling, 3f / 448 * 0.8f);

        using var cpu = new CpuBackend(DType.F32);
        Tensor cx = cpu.LoadWeight(x), cw = cpu.LoadWeight(host.Dequantized(identity)), cy = cpu.Allocate("y", DType.F32, capacity, k);
        foreach ((GemmPolicy policy, int warps) in Policies.Where(p => p.Policy != GemmPolicy.Tune))
        {
            using var gpu = new CudaBackend(Gpu.Device, DType.F32) { GemmPolicy = policy, Fp8SkinnyWarps = warps };
            Tensor gx = gpu.LoadWeight(x), gw = gpu.LoadWeight(identity), gy = gpu.Allocate("y", DType.F32, capacity, k);
            foreach (int rows in new[] { 1, 3, 6, 37 })
            {
                cpu.Linear(cx, rows, cw, null, cy, activations);
                gpu.Linear(gx, rows, gw, null, gy, activations);
                Assert.Equal(HostTensors.Read(cpu, cy, rows), HostTensors.Read(gpu, gy, rows));
            }
        }
    }

    /// <summary>
    /// The codes a norm or a gated activation writes for the FP8 layer that reads its output next (AddRmsNorm, SiluMul and
    /// GeluTanhMul told that layer's scheme) are those the layer would write itself: through identity weights (each output
    /// one exact product, code · scale, rounded once to bf16, whatever order a GEMM sums in) the layer's output is the same
    /// bit for bit with the hint and without it, in every scheme, on the skinny kernel and cuBLASLt, at 1 to 37 rows, with
    /// widths that end in partial groups of 128. A kernel run between the two (here a scaling of the norm's output) voids
    /// the codes: the layer quantizes the changed input itself.
    /// </summary>
    [Theory]
    [MemberData(nameof(Schemes))]
    public void Codes_written_ahead_are_the_layers_own(Fp8WeightScales kind, ActivationScaling scaling)
    {
        Gpu.Require();
        const int k = 1040, d = 2064, capacity = 40;
        const float eps = 1e-5f;
        using var host = new HostTensors(17 + (int)kind);
        WeightTensor x = host.Random("x", DType.BF16, 2f, capacity, k), residual = host.Random("r", DType.BF16, 3f, capacity, k);
        WeightTensor norm = host.Random("norm", DType.BF16, 1f, k), gateUp = host.Random("gate_up", DType.BF16, 4f, capacity, 2 * d);
        WeightTensor qkv = Identity("qkv", kind, k), down = Identity("down", kind, d);
        ActivationQuantization activations = Activations(scaling, 4f / 448);

        foreach ((GemmPolicy policy, int warps) in Policies)
        {
            using var gpu = new CudaBackend(Gpu.Device, DType.BF16) { GemmPolicy = policy, Fp8SkinnyWarps = warps };
            Tensor wq = gpu.LoadWeight(qkv), wd = gpu.LoadWeight(down), nw = gpu.LoadWeight(norm);
            Tensor hidden = gpu.Allocate("h", DType.BF16, capacity, d), y = gpu.Allocate("y", DType.BF16, capacity, k), y2 = gpu.Allocate("y2", DType.BF16, capacity, d);

            // The norm, then maybe a kernel between it and the layer, then the layer: its output.
            float[] Norm(int rows, ActivationQuantization? hint, bool between)
            {
                Tensor gx = gpu.LoadWeight(x), gr = gpu.LoadWeight(residual);
                gpu.AddRmsNorm(gx, gr, rows, nw, eps, hint);
                if (between)
                {
                    gpu.Scale(gx, rows, 2f);
                }

                gpu.Linear(gx, rows, wq, null, y, activations);
                return HostTensors.Read(gpu, y, rows);
            }

            // A gated activation, then the down projection: its output.
            float[] Gated(int rows, bool gelu, ActivationQuantization? hint)
            {
                Tensor gu = gpu.LoadWeight(gateUp);
                if (gelu)
                {
                    gpu.GeluTanhMul(gu, rows, hidden, hint);
                }
                else
                {
                    gpu.SiluMul(gu, rows, hidden, hint);
                }

                gpu.Linear(hidden, rows, wd, null, y2, activations);
                return HostTensors.Read(gpu, y2, rows);
            }

            foreach (int rows in new[] { 1, 3, 8, 37 })
            {
                string at = $"{policy} ({warps} warps), {rows} rows";
                // The hint first: a row bucket's first use times the kernels after the codes were written.
                Assert.True(Norm(rows, activations, false).SequenceEqual(Norm(rows, null, false)), $"add_rms_norm_fp8, {at}");
                Assert.True(Norm(rows, null, true).SequenceEqual(Norm(rows, activations, true)), $"a kernel between the norm and the layer, {at}");
                Assert.True(Gated(rows, false, activations).SequenceEqual(Gated(rows, false, null)), $"silu_mul_fp8, {at}");
                Assert.True(Gated(rows, true, null).SequenceEqual(Gated(rows, true, activations)), $"gelu_tanh_mul_fp8, {at}");
            }
        }
    }

    /// <summary>
    /// A layer's input quantization must fit its weight's scales: block scales take per-token groups, per-row scales the
    /// other schemes, and an FP8 weight needs one at all.
    /// </summary>
    [Fact]
    public void An_fp8_weight_refuses_an_input_quantization_that_does_not_fit_its_scales()
    {
        Gpu.Require();
        using var host = new HostTensors(3);
        using var gpu = new CudaBackend(Gpu.Device, DType.BF16);
        Tensor x = gpu.LoadWeight(host.Random("x", DType.BF16, 1f, 4, 256)), y = gpu.Allocate("y", DType.BF16, 4, 128);
        Tensor rowScaled = gpu.LoadWeight(host.Fp8("w", Fp8WeightScales.PerChannel, 128, 256));
        Tensor blockScaled = gpu.LoadWeight(host.Fp8("v", Fp8WeightScales.PerBlock, 128, 256));

        Assert.Throws<ArgumentException>(() => gpu.Linear(x, 4, rowScaled, null, y));
        Assert.Throws<ArgumentException>(() => gpu.Linear(x, 4, rowScaled, null, y, new ActivationQuantization(ActivationScaling.DynamicPerTokenGroup, GroupSize: 128)));
        Assert.Throws<ArgumentException>(() => gpu.Linear(x, 4, blockScaled, null, y, new ActivationQuantization(ActivationScaling.DynamicPerToken)));
    }

    /// <summary>The identity matrix of size <paramref name="k"/> in E4M3 (0x38 = 1.0) with scales of 1 in the scheme's grid.</summary>
    private WeightTensor Identity(string name, Fp8WeightScales kind, int k)
    {
        byte* codes = (byte*)NativeMemory.AlignedAlloc((nuint)k * (nuint)k, 64);
        _memory.Add((nint)codes);
        for (long i = 0; i < (long)k * k; i++)
        {
            codes[i] = i / k == i % k ? (byte)0x38 : (byte)0;
        }

        (int blockRows, int blockColumns) = kind == Fp8WeightScales.PerBlock ? (CudaBackend.Fp8ScaleBlock, CudaBackend.Fp8ScaleBlock) : kind == Fp8WeightScales.PerTensor ? (k, k) : (1, k);
        int grid = ((k + blockRows - 1) / blockRows) * ((k + blockColumns - 1) / blockColumns);
        return new WeightTensor(name, DType.F8E4M3, [k, k], (nint)codes, (long)k * k)
        {
            Scales = new WeightScales(kind, [.. Enumerable.Repeat(1f, grid)], blockRows, blockColumns, k, k),
        };
    }

    public void Dispose()
    {
        foreach (nint p in _memory)
        {
            NativeMemory.AlignedFree((void*)p);
        }
    }
}
