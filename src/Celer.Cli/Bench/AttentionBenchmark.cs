using System.CommandLine;
using System.Diagnostics;
using System.Text.Json.Nodes;
using Celer.Backends.Cuda;
using Celer.Models.Backend;
using Celer.Models.Weights;

namespace Celer.Cli.Bench;

/// <summary>
/// <c>celer bench attention</c>: the CUDA paged-attention operator alone, on one layer's KV cache filled with random
/// keys and values: a prefill of several long prompts (model FLOPs per second of causal attention) and a decode batch
/// over long contexts (bytes of K and V read per second), to set against the card's GEMM and copy ceilings.
/// </summary>
internal static class AttentionBenchmark
{
    private const int BlockSize = 16;

    public static Command Create()
    {
        var heads = new Option<int>("--num-heads") { DefaultValueFactory = _ => 32 };
        var kvHeads = new Option<int>("--num-kv-heads") { DefaultValueFactory = _ => 8 };
        var headDim = new Option<int>("--head-dim") { DefaultValueFactory = _ => 128 };
        var dtype = new Option<string>("--dtype") { DefaultValueFactory = _ => "bfloat16", Description = "bfloat16, float16 or float32." };
        var prefill = new Option<string>("--prefill") { DefaultValueFactory = _ => "8x2048", Description = "Prompts × length of the prefill case." };
        var decode = new Option<string>("--decode") { DefaultValueFactory = _ => "64x4096", Description = "Sequences × context of the decode case." };
        var iters = new Option<int>("--num-iters") { DefaultValueFactory = _ => 20 };
        var outputJson = new Option<string?>("--output-json") { Description = "Write the results as JSON to this file (none are written without it)." };
        var command = new Command("attention", "The CUDA attention operator alone: prefill TFLOP/s and decode GB/s.");
        foreach (Option option in new Option[] { heads, kvHeads, headDim, dtype, prefill, decode, iters, outputJson })
        {
            command.Options.Add(option);
        }

        command.SetAction((result, _) => CliRunner.RunAsync(result, async () =>
        {
            DType type = result.GetValue(dtype)!.ToLowerInvariant() switch
            {
                "bfloat16" or "bf16" => DType.BF16,
                "float16" or "half" or "fp16" => DType.F16,
                "float32" or "fp32" => DType.F32,
                string other => throw new ArgumentException($"Unknown dtype '{other}'."),
            };
            var spec = new AttentionSpec(result.GetValue(heads), result.GetValue(kvHeads), result.GetValue(headDim), 1f / MathF.Sqrt(result.GetValue(headDim)), 0);
            (int prefillSeqs, int prefillLen) = Shape(result.GetValue(prefill)!);
            (int decodeSeqs, int decodeLen) = Shape(result.GetValue(decode)!);
            int n = result.GetValue(iters);
            var output = result.InvocationConfiguration.Output;

            using var backend = new CudaBackend(CudaDevice.Open(), type, ownsDevice: true);
            double prefillSeconds = Time(backend, spec, Enumerable.Repeat((0, prefillLen), prefillSeqs).ToArray(), n);
            double flops = 4.0 * spec.NumHeads * spec.HeadDim * prefillSeqs * (prefillLen * (prefillLen + 1.0) / 2);
            await output.WriteLineAsync($"prefill {prefillSeqs} x {prefillLen}: {prefillSeconds * 1e3:F3} ms, {flops / prefillSeconds / 1e12:F1} TFLOP/s");

            double decodeSeconds = Time(backend, spec, Enumerable.Repeat((decodeLen - 1, 1), decodeSeqs).ToArray(), n);
            double bytes = 2.0 * decodeSeqs * decodeLen * spec.NumKvHeads * spec.HeadDim * type.ByteSize();
            await output.WriteLineAsync($"decode {decodeSeqs} x {decodeLen}: {decodeSeconds * 1e6:F1} us, {bytes / decodeSeconds / 1e9:F0} GB/s of K and V");

            var parameters = new JsonObject
            {
                ["num_heads"] = spec.NumHeads,
                ["num_kv_heads"] = spec.NumKvHeads,
                ["head_dim"] = spec.HeadDim,
                ["dtype"] = type.ToString(),
                ["prefill"] = result.GetValue(prefill),
                ["decode"] = result.GetValue(decode),
                ["num_iters"] = n,
            };
            var results = new JsonObject
            {
                ["prefill_seconds"] = prefillSeconds,
                ["prefill_tflop_per_s"] = flops / prefillSeconds / 1e12,
                ["decode_seconds"] = decodeSeconds,
                ["decode_gb_per_s"] = bytes / decodeSeconds / 1e9,
            };
            if (BenchmarkReport.Write("attention", $"attention-h{spec.NumHeads}-kv{spec.NumKvHeads}-d{spec.HeadDim}", "cuda", parameters, results, result.GetValue(outputJson)) is { } path)
                await output.WriteLineAsync($"Results written to {path}");
            return 0;
        }));
        return command;
    }

    private static (int Count, int Length) Shape(string text)
    {
        string[] parts = text.Split('x');
        return parts.Length == 2 && int.TryParse(parts[0], out int count) && int.TryParse(parts[1], out int length) && count > 0 && length > 0
            ? (count, length)
            : throw new ArgumentException($"'{text}' is not COUNTxLENGTH.");
    }

    /// <summary>
    /// Median over <paramref name="iterations"/> of the attention step of <paramref name="sequences"/> (tokens in the
    /// cache, new tokens), after writing random keys and values for every position.
    /// </summary>
    private static double Time(CudaBackend backend, AttentionSpec spec, (int Context, int Query)[] sequences, int iterations)
    {
        int maxBlocks = sequences.Max(s => (s.Context + s.Query + BlockSize - 1) / BlockSize);
        backend.AllocateKvCache(1, 1 + sequences.Length * maxBlocks, BlockSize, spec);
        var rope = new RopeSpec(Enumerable.Range(0, spec.HeadDim / 2).Select(i => (float)Math.Pow(10000, -2.0 * i / spec.HeadDim)).ToArray(), spec.HeadDim, 1f, maxBlocks * BlockSize);
        int width = (spec.NumHeads + 2 * spec.NumKvHeads) * spec.HeadDim;

        // Fill the cache a chunk of rows at a time from one random qkv block (its rows repeat; none is zero).
        const int ChunkRows = 4096;
        Tensor qkv = LoadRandom(backend, "qkv", ChunkRows, width);
        Tensor scratch = backend.Allocate("q_scratch", backend.ActivationDType, ChunkRows, spec.NumHeads * spec.HeadDim);
        ForwardBatch all = ForwardBatch.ForSequences(sequences.Select(s => (0, s.Context + s.Query)).ToArray(), maxBlocks, BlockSize);
        for (int first = 0; first < all.NumTokens; first += ChunkRows)
        {
            int rows = Math.Min(ChunkRows, all.NumTokens - first);
            backend.BeginStep(all with
            {
                TokenIds = all.TokenIds[first..(first + rows)],
                Positions = all.Positions[first..(first + rows)],
                SlotMapping = all.SlotMapping[first..(first + rows)],
                QueryStartLoc = [0, rows],
                SeqLens = [rows],
                BlockTables = new int[maxBlocks],
                LogitsRows = [],
            });
            backend.PrepareAttention(0, qkv, rows, spec, rope, null, null, 1e-6f, scratch);
        }

        ForwardBatch step = ForwardBatch.ForSequences(sequences, maxBlocks, BlockSize);
        Tensor q = LoadRandom(backend, "q", step.NumTokens, spec.NumHeads * spec.HeadDim);
        backend.BeginStep(step);
        Tensor output = backend.Allocate("o", backend.ActivationDType, step.NumTokens, spec.NumHeads * spec.HeadDim);
        backend.Attention(0, q, output, spec);   // warm-up
        backend.Device.Synchronize();
        var times = new List<double>();
        for (int i = 0; i < iterations; i++)
        {
            var timer = Stopwatch.StartNew();
            backend.Attention(0, q, output, spec);
            backend.Device.Synchronize();
            times.Add(timer.Elapsed.TotalSeconds);
        }

        return LatencyStats.Percentile(times.Order().ToList(), 50);
    }

    private static unsafe Tensor LoadRandom(CudaBackend backend, string name, int rows, int columns)
    {
        var random = new Random(7);
        float[] values = new float[(long)rows * columns];
        for (long i = 0; i < values.Length; i++)
        {
            values[i] = (float)(random.NextDouble() * 2 - 1);
        }

        fixed (float* p = values)
        {
            return backend.LoadWeight(new WeightTensor(name, DType.F32, [rows, columns], (nint)p, values.LongLength * sizeof(float)));
        }
    }
}
