using Celer.Backends.Cpu;
using Celer.Models.Backend;
using Celer.Models.Quantization;
using Celer.Models.Weights;
using Celer.TestSupport;

namespace Celer.Backends.Cuda.Tests;

/// <summary>
/// The W4A16 linear layers (<c>int4_gemm.cu</c>: where a 16-bit model's widths and groups allow the tensor-core layout,
/// the tuner's choice and every kernel it chooses from, int4_gemm_tc up to <see cref="CudaBackend.Int4TensorCoreRows"/>
/// rows, int4_gemm_tiled with blocks of 4 or 8 warps and with or without split k, and the dequantized weight
/// under cuBLASLt; else the CUDA-core GEMV up to <see cref="CudaBackend.Int4GemvRows"/>, the dequantized weight above)
/// against the CPU backend's GEMM over the exactly dequantized weights, on random
/// codes, zero points and scales: parts stacked into one weight, groups of 16 to 128 columns and per channel, act-order
/// columns (a random group per column, shared by the parts), widths whose rows take 16-byte loads and widths that do not
/// (176), a bias, fp32 outputs from a 16-bit model (a quantized lm_head), and weights the packed layout does not take
/// (8-bit, groups of 4, parts with different column orders), which load dequantized. The GEMV computes in fp32 from exact
/// weights, so in fp32 models only summation order differs; in 16-bit ones the output's rounding and, above the GEMV,
/// the weight's rounding to the model dtype: a norm-relative error of a few 1e-3. A code or scale read from the wrong
/// place is off by tens of percent.
/// </summary>
public sealed class Int4GemmTests
{
    [Theory]
    [InlineData(4096, "1536", 128, false, false, DType.BF16, DType.BF16)]
    [InlineData(176, "64,32,32", 16, true, true, DType.BF16, DType.BF16)]
    [InlineData(512, "256,256", 0, false, true, DType.F16, DType.F16)]
    [InlineData(320, "96", 32, true, false, DType.F32, DType.F32)]
    [InlineData(256, "200", 64, false, false, DType.BF16, DType.F32)]
    [InlineData(512, "128,64", 32, true, true, DType.BF16, DType.BF16)]
    public void Packed_4_bit_linear_matches_the_dequantized_gemm_at_every_row_count(int k, string parts, int groupSize, bool actOrder, bool withBias, DType dtype, DType output)
    {
        Gpu.Require();
        int[] partRows = [.. parts.Split(',').Select(int.Parse)];
        var random = new Random(k + partRows.Sum());
        int[]? groupIndex = actOrder ? RandomIntWeights.ActOrder(random, k, groupSize) : null;
        IntWeights[] weights = [.. partRows.Select(rows => RandomIntWeights.Create(random, rows, k, 4, groupSize, groupIndex))];
        Tensor packed = Compare(weights, k, withBias, dtype, output);
        Assert.NotNull(packed.Int4);
    }

    [Theory]
    [InlineData(8, 64, false)]    // 8-bit codes
    [InlineData(4, 4, false)]     // groups of 4: a word would span two
    [InlineData(4, 32, true)]     // the parts sort their columns differently
    public void Integer_weights_the_packed_layout_does_not_take_load_dequantized(int bits, int groupSize, bool ordersDiffer)
    {
        Gpu.Require();
        const int k = 128;
        var random = new Random(bits * 100 + groupSize);
        IntWeights[] weights =
        [
            RandomIntWeights.Create(random, 48, k, bits, groupSize, ordersDiffer ? RandomIntWeights.ActOrder(random, k, groupSize) : null),
            RandomIntWeights.Create(random, 16, k, bits, groupSize, ordersDiffer ? RandomIntWeights.ActOrder(random, k, groupSize) : null),
        ];
        Tensor loaded = Compare(weights, k, withBias: false, DType.BF16, DType.BF16);
        Assert.Null(loaded.Int4);
    }

    /// <summary>GPU and CPU outputs for rows across the GEMV's buckets and past them; returns the GPU's weight.</summary>
    private static Tensor Compare(IntWeights[] weights, int k, bool withBias, DType dtype, DType output)
    {
        const int capacity = 320;
        int n = weights.Sum(w => w.Rows);
        using var host = new HostTensors(k * 3 + n);
        WeightTensor x = host.Random("x", dtype, 2f, capacity, k);
        WeightTensor bias = host.Random("b", dtype, 0.5f, n);
        WeightTensor[] packed = [.. weights.Select((w, i) => new WeightTensor($"w{i}", DType.I32, [w.Rows, k], 0, 0) { Packed = w })];
        WeightTensor[] dequantized = [.. weights.Select((w, i) => host.FromValues($"d{i}", RandomIntWeights.Dequantize(w), w.Rows, k))];

        using var cpu = new CpuBackend(DType.F32);
        using var gpu = new CudaBackend(Gpu.Device, dtype);
        Tensor cx = cpu.LoadWeight(x), cw = cpu.LoadStacked("w", dequantized), cy = cpu.Allocate("y", DType.F32, capacity, n);
        Tensor gx = gpu.LoadWeight(x), gw = gpu.LoadStacked("w", packed), gy = gpu.Allocate("y", output, capacity, n);
        Tensor? cb = withBias ? cpu.LoadWeight(bias) : null, gb = withBias ? gpu.LoadWeight(bias) : null;
        double tolerance = dtype == DType.F32 ? 1e-5 : 1e-2;
        var failures = new List<string>();
        foreach (int rows in new[] { 1, 2, 3, 5, 8, 9, 37, 64, 65, 300 })
        {
            cpu.Linear(cx, rows, cw, cb, cy);
            float[] expected = HostTensors.Read(cpu, cy, rows);
            gpu.Linear(gx, rows, gw, gb, gy);   // the tuner's choice
            Check($"{rows} rows");
            if (gw.Int4 is null)
            {
                continue;
            }

            foreach (Int4Choice choice in CudaBackend.Int4Choices(rows, gw))
            {
                gpu.Int4Linear(gx, rows, gw, gb, gy, choice);
                Check($"{rows} rows, {choice}");
            }

            void Check(string what)
            {
                float[] got = HostTensors.Read(gpu, gy, rows);
                int nan = Array.FindIndex(got, float.IsNaN);
                double error = nan >= 0 ? double.NaN : HostTensors.RelativeError(got, expected);
                if (!(error < tolerance))
                {
                    failures.Add(nan >= 0 ? $"{what}: NaN at {nan}" : $"{what}: relative error {error}");
                }
            }
        }

        Assert.True(failures.Count == 0, string.Join('\n', failures));

        return gw;
    }
}
