using System.CommandLine;
using System.Text.Json.Nodes;
using Celer.Backends.Cuda;
using Celer.Models.Backend;
using Celer.Models.Config;
using Celer.Models.Quantization;
using Celer.Models.Weights;

namespace Celer.Cli.Bench;

/// <summary>
/// <c>celer bench gemm</c>: the CUDA GEMMs of one decoder layer and the lm_head of a model's config alone, at several
/// row counts, with every kernel the GEMM tuner chooses from (cuBLASLt's heuristic candidates, <c>cublasGemmEx</c>, the
/// skinny kernels), each timed over back-to-back launches as the tuner does. Reports
/// the weight bytes read per second (decode steps are bound by them) and TFLOP/s, to set against the card's copy and
/// GEMM ceilings. With <c>--fp8</c> the projections (not the lm_head) are FP8 W8A8 layers of random E4M3 codes with
/// per-channel or 128 × 128 block scales, timed with their input quantization (dynamic per token or per group of 128)
/// as the tuner times them; their weight bytes are a byte per element. With <c>--int4</c> they are W4A16 layers of
/// random 4-bit codes with a scale and zero point per group of 128 (GPTQ's common form), timed with every kernel the
/// W4A16 tuner chooses from; their bytes are the codes' half byte per element and the 4-byte scale words.
/// </summary>
internal static class GemmBenchmark
{
    public static Command Create()
    {
        var model = new Option<string>("--model") { Required = true, Description = "A model folder; only its config.json is read." };
        var dtype = new Option<string>("--dtype") { DefaultValueFactory = _ => "bfloat16", Description = "bfloat16 or float16." };
        var rowsOption = new Option<string>("--rows") { DefaultValueFactory = _ => "1,8,16,32,64,128,256,4096", Description = "Row counts, comma-separated." };
        var iters = new Option<int>("--num-iters") { DefaultValueFactory = _ => 20, Description = "Back-to-back launches timed per kernel." };
        var outputJson = new Option<string?>("--output-json") { Description = "Write the results as JSON to this file (none are written without it)." };
        var fp8 = new Option<string?>("--fp8") { Description = "FP8 W8A8 projections: per-channel (per-token inputs) or block (128 x 128 blocks, per-group inputs)." };
        var int4 = new Option<bool>("--int4") { Description = "W4A16 projections: 4-bit codes with a scale and zero point per group of 128." };
        var command = new Command("gemm", "The CUDA GEMMs of a model's layer alone, every candidate kernel at each row count.");
        foreach (Option option in new Option[] { model, dtype, rowsOption, iters, outputJson, fp8, int4 })
        {
            command.Options.Add(option);
        }

        command.SetAction((result, _) => CliRunner.RunAsync(result, async () =>
        {
            DType type = result.GetValue(dtype)!.ToLowerInvariant() switch
            {
                "bfloat16" or "bf16" => DType.BF16,
                "float16" or "half" or "fp16" => DType.F16,
                string other => throw new ArgumentException($"--dtype: '{other}' is not bfloat16 or float16."),
            };
            int[] rowCounts = [.. result.GetValue(rowsOption)!.Split(',').Select(r => int.TryParse(r, out int v) && v > 0 ? v : throw new ArgumentException($"--rows: '{r}' is not a positive count."))];
            int repeats = result.GetValue(iters);
            Fp8WeightScales? fp8Scales = result.GetValue(fp8)?.ToLowerInvariant() switch
            {
                null => null,
                "per-channel" => Fp8WeightScales.PerChannel,
                "block" => Fp8WeightScales.PerBlock,
                string other => throw new ArgumentException($"--fp8: '{other}' is not per-channel or block."),
            };
            ActivationQuantization? activations = fp8Scales switch
            {
                null => null,
                Fp8WeightScales.PerBlock => new ActivationQuantization(ActivationScaling.DynamicPerTokenGroup, GroupSize: CudaBackend.Fp8ScaleBlock),
                _ => new ActivationQuantization(ActivationScaling.DynamicPerToken),
            };
            bool w4a16 = result.GetValue(int4);
            if (w4a16 && fp8Scales is not null)
            {
                throw new ArgumentException("--int4 and --fp8 are two kinds of projection: give one.");
            }

            ModelConfig config = ModelConfig.Load(result.GetValue(model)!);
            var output = result.InvocationConfiguration.Output;

            int q = config.NumAttentionHeads * config.HeadDim, kv = config.NumKeyValueHeads * config.HeadDim;
            (string Name, int N, int K, bool Logits)[] shapes =
            [
                ("qkv_proj", q + 2 * kv, config.HiddenSize, false),
                ("o_proj", config.HiddenSize, q, false),
                ("gate_up_proj", 2 * config.IntermediateSize, config.HiddenSize, false),
                ("down_proj", config.HiddenSize, config.IntermediateSize, false),
                ("lm_head", config.VocabSize, config.HiddenSize, true),
            ];

            using var backend = new CudaBackend(CudaDevice.Open(), type, ownsDevice: true);
            using var source = new DummyWeightSource(type, seed: 3, materialize: false);
            using var codes = new RandomFp8Weights(seed: 3);
            var measured = new JsonArray();
            int maxRows = rowCounts.Max();
            foreach ((string name, int n, int k, bool logits) in shapes)
            {
                bool quantized = fp8Scales is not null && !logits, packed = w4a16 && !logits;
                Tensor weight = backend.LoadWeight(
                    packed ? RandomInt4(name, n, k) : quantized ? codes.Get(name, n, k, fp8Scales!.Value) : source.Get(name, n, k));
                Tensor x = backend.LoadWeight(source.Get($"{name}.x", maxRows, k));
                Tensor y = backend.Allocate($"{name}.y", logits ? DType.F32 : type, maxRows, n);
                double bytes = packed ? (n * (k / 2.0)) + (n * (k / Int4GroupSize) * 4.0) : (double)n * k * (quantized ? 1 : type.ByteSize());
                foreach (int rows in rowCounts)
                {
                    var kernels = packed ? backend.TimeInt4Kernels(x, rows, weight, null, y, repeats)
                        : backend.TimeGemmKernels(x, rows, weight, null, y, repeats, quantized ? activations : null);
                    (string bestKernel, double best) = kernels.MinBy(c => c.Seconds);
                    double cublas = kernels.Where(c => c.Kernel.Contains("cublas", StringComparison.OrdinalIgnoreCase)).Min(c => c.Seconds);
                    await output.WriteLineAsync(
                        $"{name} {n}x{k} rows {rows}: best {bestKernel} {best * 1e6:F1} us = {bytes / best / 1e12:F2} TB/s of weights, " +
                        $"{2.0 * rows * n * k / best / 1e12:F1} TFLOP/s; best cuBLAS {cublas * 1e6:F1} us");
                    var times = new JsonObject();
                    foreach ((string kernel, double seconds) in kernels)
                    {
                        times[kernel] = seconds;
                    }

                    measured.Add(new JsonObject
                    {
                        ["weight"] = name,
                        ["fp8"] = quantized ? fp8Scales.ToString() : null,
                        ["int4"] = packed,
                        ["n"] = n,
                        ["k"] = k,
                        ["rows"] = rows,
                        ["best_kernel"] = bestKernel,
                        ["best_seconds"] = best,
                        ["best_cublas_seconds"] = cublas,
                        ["weight_tb_per_s"] = bytes / best / 1e12,
                        ["tflop_per_s"] = 2.0 * rows * n * k / best / 1e12,
                        ["seconds_by_kernel"] = times,
                    });
                }
            }

            var parameters = new JsonObject
            {
                ["model"] = result.GetValue(model),
                ["dtype"] = type.ToString(),
                ["rows"] = new JsonArray([.. rowCounts.Select(r => (JsonNode)r)]),
                ["num_iters"] = repeats,
                ["fp8"] = result.GetValue(fp8),
                ["int4"] = w4a16,
            };
            if (BenchmarkReport.Write("gemm", Path.GetFileName(Path.GetFullPath(result.GetValue(model)!)), "cuda", parameters,
                    new JsonObject { ["gemms"] = measured }, result.GetValue(outputJson)) is { } path)
            {
                await output.WriteLineAsync($"Results written to {path}");
            }

            return 0;
        }));
        return command;
    }

    private const int Int4GroupSize = 128;

    /// <summary>
    /// A W4A16 weight of random codes, zero points and scales (groups of <see cref="Int4GroupSize"/>): kernel speed does
    /// not depend on the values, but outputs of order one keep the arithmetic honest.
    /// </summary>
    private static WeightTensor RandomInt4(string name, int rows, int columns)
    {
        var random = new Random(3);
        int groups = columns / Int4GroupSize;
        var codes = new byte[(long)rows * columns];
        random.NextBytes(codes);
        for (long i = 0; i < codes.LongLength; i++)
        {
            codes[i] &= 15;
        }

        var weights = new IntWeights
        {
            Rows = rows,
            Columns = columns,
            Bits = 4,
            Codes = codes,
            Groups = groups,
            Zeros = [.. Enumerable.Range(0, rows * groups).Select(_ => random.Next(16))],
            Scales = [.. Enumerable.Range(0, rows * groups).Select(_ => (1 + random.Next(256)) / 65536f)],
            GroupSize = Int4GroupSize,
        };
        return new WeightTensor(name, DType.I32, [rows, columns], 0, 0) { Packed = weights };
    }
}
