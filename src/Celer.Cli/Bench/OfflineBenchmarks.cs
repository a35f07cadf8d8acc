using System.CommandLine;
using System.Diagnostics;
using System.Text.Json.Nodes;
using Celer.Engine;
using Celer.Engine.Execution;

namespace Celer.Cli.Bench;

/// <summary>
/// <c>celer bench latency</c> and <c>celer bench throughput</c>: vLLM's offline benchmarks, run on
/// <see cref="LlmEngine"/> in this process with random-token prompts and <c>ignore_eos</c>, so
/// every request generates exactly its output length. Latency may instead run real prompts (<c>--prompt</c>), which is
/// what speculative decoding needs to be measured on: random tokens give drafts nothing to go on.
/// </summary>
internal static class OfflineBenchmarks
{
    /// <summary>The latency percentiles vLLM's benchmark_latency reports.</summary>
    private static readonly int[] Percentiles = [10, 25, 50, 75, 90, 99];

    public static Command Latency()
    {
        var common = new CommonOptions();
        var inputLen = new Option<int>("--input-len") { DefaultValueFactory = _ => 32 };
        var outputLen = new Option<int>("--output-len") { DefaultValueFactory = _ => 128 };
        var batchSize = new Option<int>("--batch-size") { DefaultValueFactory = _ => 8 };
        var warmup = new Option<int>("--num-iters-warmup") { DefaultValueFactory = _ => 2 };
        var iters = new Option<int>("--num-iters") { DefaultValueFactory = _ => 10 };
        var prompts = new Option<string[]>("--prompt")
        {
            Description = "A prompt text to run instead of random tokens (repeatable; --input-len is then unused). Iteration i's batch takes "
                + "prompts i·batch, i·batch + 1, … in turn, so iterations at batch 1 cover the prompts one after another.",
        };
        var command = new Command("latency", "Latency of one batch end to end (vLLM's bench latency).");
        command.Options.Add(inputLen);
        command.Options.Add(outputLen);
        command.Options.Add(batchSize);
        command.Options.Add(warmup);
        command.Options.Add(iters);
        command.Options.Add(prompts);
        common.AddTo(command);

        command.SetAction((result, _) => CliRunner.RunAsync(result, async () =>
        {
            var (args, engine, vocabSize, tokenizer) = common.Load(result);
            using var _ = engine;
            int size = result.GetValue(batchSize), outLen = result.GetValue(outputLen);
            string[] texts = result.GetValue(prompts) ?? [];
            if (texts.Length > 0 && tokenizer is null)
                throw new ArgumentException("--prompt needs the model's tokenizer, and this model directory has none.");
            int[][] encoded = [.. texts.Select(t => tokenizer!.Encode(t))];
            var random = encoded.Length > 0 ? null : RandomPrompts.Create(size, result.GetValue(inputLen), outLen, 0, vocabSize, args.Seed);
            List<GenerateRequest> Batch(string tag, int iteration) => [.. Enumerable.Range(0, size).Select(i => new GenerateRequest(
                $"latency-{i}-{tag}", random is null ? encoded[(iteration * size + i) % encoded.Length] : random[i].PromptIds, common.Params(result, outLen)))];

            for (var i = 0; i < result.GetValue(warmup); i++)
                engine.Generate(Batch($"warmup{i}", i));
            engine.GpuTimeline?.Reset();
            var latencies = new List<double>();
            for (var i = 0; i < result.GetValue(iters); i++)
            {
                var batch = Batch($"iter{i}", i);
                var timer = Stopwatch.StartNew();
                engine.Generate(batch);
                latencies.Add(timer.Elapsed.TotalSeconds);
            }

            var sorted = latencies.Order().ToList();
            var results = new JsonObject
            {
                ["avg_latency"] = LatencyStats.Mean(sorted),
                ["latencies"] = new JsonArray([.. latencies.Select(l => (JsonNode)l)]),
                ["percentiles"] = new JsonObject([.. Percentiles.Select(p => KeyValuePair.Create(p.ToString(), (JsonNode?)LatencyStats.Percentile(sorted, p)))]),
            };
            var output = result.InvocationConfiguration.Output;
            AddGpuTimeline(engine, results, output);
            await output.WriteLineAsync($"Avg latency: {LatencyStats.Mean(sorted):F4} s");
            foreach (var p in Percentiles)
                await output.WriteLineAsync($"{p}% percentile latency: {LatencyStats.Percentile(sorted, p):F4} s");
            var parameters = new JsonObject
            {
                ["input_len"] = result.GetValue(inputLen),
                ["output_len"] = result.GetValue(outputLen),
                ["batch_size"] = result.GetValue(batchSize),
                ["num_iters_warmup"] = result.GetValue(warmup),
                ["num_iters"] = result.GetValue(iters),
                ["prompts"] = texts.Length == 0 ? "random tokens" : new JsonArray([.. texts.Select(t => (JsonNode)t)]),
                ["temperature"] = common.Temperature(result),
            };
            common.WriteReport(result, "latency", args, engine, parameters, results);
            return 0;
        }));
        return command;
    }

    public static Command Throughput()
    {
        var common = new CommonOptions();
        var inputLen = new Option<int>("--input-len") { DefaultValueFactory = _ => 128 };
        var outputLen = new Option<int>("--output-len") { DefaultValueFactory = _ => 128 };
        var numPrompts = new Option<int>("--num-prompts") { DefaultValueFactory = _ => 100 };
        var rangeRatio = new Option<double>("--random-range-ratio") { DefaultValueFactory = _ => 0 };
        var command = new Command("throughput", "Offline throughput over a batch of prompts (vLLM's bench throughput); a pooling model (--convert embed, --runner pooling) embeds them.");
        command.Options.Add(inputLen);
        command.Options.Add(outputLen);
        command.Options.Add(numPrompts);
        command.Options.Add(rangeRatio);
        common.AddTo(command);

        command.SetAction((result, _) => CliRunner.RunAsync(result, async () =>
        {
            var (args, engine, vocabSize, _) = common.Load(result);
            using var _ = engine;
            var prompts = RandomPrompts.Create(result.GetValue(numPrompts), result.GetValue(inputLen), result.GetValue(outputLen),
                result.GetValue(rangeRatio), vocabSize, args.Seed);
            // A pooling model's requests end with their prompt: the benchmark is then embeddings per second.
            bool pooling = engine.Pooler is not null;
            var requests = prompts.Select((p, i) => pooling
                ? GenerateRequest.ForPooling($"throughput-{i}", p.PromptIds, new PoolingParams())
                : new GenerateRequest($"throughput-{i}", p.PromptIds, common.Params(result, p.OutputLen))).ToList();

            engine.GpuTimeline?.Reset();
            var timer = Stopwatch.StartNew();
            var outputs = engine.Generate(requests);
            var elapsed = timer.Elapsed.TotalSeconds;

            long promptTokens = prompts.Sum(p => (long)p.PromptIds.Length);
            long outputTokens = outputs.Sum(o => o.Outputs.Sum(c => (long)c.TokenIdsDelta.Count));
            var results = new JsonObject
            {
                ["elapsed_time"] = elapsed,
                ["num_requests"] = requests.Count,
                ["total_num_tokens"] = promptTokens + outputTokens,
                ["requests_per_second"] = requests.Count / elapsed,
                ["tokens_per_second"] = (promptTokens + outputTokens) / elapsed,
                ["output_tokens_per_second"] = outputTokens / elapsed,
            };
            AddGpuTimeline(engine, results, result.InvocationConfiguration.Output);
            await result.InvocationConfiguration.Output.WriteLineAsync($"Throughput: {requests.Count / elapsed:F2} requests/s, {(promptTokens + outputTokens) / elapsed:F2} total tokens/s, {outputTokens / elapsed:F2} output tokens/s");
            var parameters = new JsonObject
            {
                ["input_len"] = result.GetValue(inputLen),
                ["output_len"] = pooling ? 0 : result.GetValue(outputLen),
                ["pooling"] = pooling,
                ["num_prompts"] = result.GetValue(numPrompts),
                ["random_range_ratio"] = result.GetValue(rangeRatio),
            };
            common.WriteReport(result, "throughput", args, engine, parameters, results);
            return 0;
        }));
        return command;
    }

    /// <summary>On a GPU: how long it sat idle between steps, measured with CUDA events (vLLM v0.5.3 spent 62 % of its time outside the GPU).</summary>
    private static void AddGpuTimeline(LlmEngine engine, JsonObject results, TextWriter output)
    {
        if (engine.GpuTimeline is not { Steps: > 0 } timeline)
            return;
        results["gpu_steps"] = timeline.Steps;
        results["gpu_busy_ms"] = timeline.BusyMilliseconds;
        results["gpu_idle_ms"] = timeline.IdleMilliseconds;
        results["gpu_idle_share"] = timeline.IdleShare;
        output.WriteLine($"GPU idle between steps: {timeline.IdleShare:P1} ({timeline.IdleMilliseconds:F0} ms of {timeline.BusyMilliseconds + timeline.IdleMilliseconds:F0} ms over {timeline.Steps} steps)");
    }

    /// <summary>Fresh request ids per iteration: an id may not be reused while the engine still knows it.</summary>
    private static List<GenerateRequest> Renamed(List<GenerateRequest> requests, string tag) =>
        requests.Select(r => r with { RequestId = $"{r.RequestId}-{tag}" }).ToList();

    /// <summary>Model and output flags shared by the offline benchmarks.</summary>
    internal sealed class CommonOptions
    {
        private readonly Option<string?> _model = new("--model") { Description = "Model directory (default: the repository's models/celer-tiny-py)." };
        private readonly Option<string?> _outputJson = new("--output-json") { Description = "Write the results as JSON to this file (none are written without it)." };
        private readonly Option<string?> _structuredOutputs = new("--structured-outputs")
        {
            Description = "Constrain every request's output, as vLLM's structured_outputs object: '{\"json\": {schema}}', '{\"regex\": \"...\"}', '{\"choice\": [...]}', '{\"grammar\": \"...\"}'.",
        };
        private readonly Option<float> _temperature = new("--temperature")
        {
            Description = "The requests' sampling temperature (vLLM's benchmarks sample at 1; 0 is greedy).",
            DefaultValueFactory = _ => 1f,
        };
        private readonly EngineOptions _engine = new();

        public void AddTo(Command command)
        {
            command.Options.Add(_model);
            command.Options.Add(_temperature);
            command.Options.Add(_outputJson);
            command.Options.Add(_structuredOutputs);
            _engine.AddTo(command);
        }

        public float Temperature(ParseResult result) => result.GetValue(_temperature);

        /// <summary>The requests' sampling: at --temperature, to the output length, under the constraint when one is given.</summary>
        public SamplingParams Params(ParseResult result, int outputLen)
        {
            var sampling = new SamplingParams { Temperature = Temperature(result), TopP = 1f, IgnoreEos = true, MaxTokens = outputLen };
            if (result.GetValue(_structuredOutputs) is not { } json)
                return sampling;
            using var document = System.Text.Json.JsonDocument.Parse(json);
            // A constrained output must be able to end where its grammar does: the end of sequence is not ignored.
            return sampling with { IgnoreEos = false, StructuredOutputs = Celer.Server.Serving.StructuredOutputsRequest.FromObject(document.RootElement.Clone()) };
        }

        public (EngineArgs Args, LlmEngine Engine, int VocabSize, Celer.Tokenization.Tokenizer? Tokenizer) Load(ParseResult result)
        {
            var args = Args(result);
            var (engine, tokenizer, _) = ModelLoader.LoadOffline(args, new LoadProgressReporter(), LoadProgressReporter.Log);
            return (args, engine, engine.VocabSize, tokenizer);
        }

        /// <summary>The engine flags as given, with the model resolved.</summary>
        public EngineArgs Args(ParseResult result) => _engine.ToEngineArgs(result, ModelLocator.Resolve(result.GetValue(_model)));

        public static LlmEngine LoadEngine(EngineArgs args) => ModelLoader.LoadOffline(args, new LoadProgressReporter(), LoadProgressReporter.Log).Engine;

        public void WriteReport(ParseResult result, string kind, EngineArgs args, LlmEngine engine, JsonObject parameters, JsonObject results)
        {
            parameters["async_scheduling"] = engine.AsyncScheduling;
            parameters["max_num_seqs"] = args.MaxNumSeqs;
            parameters["max_num_batched_tokens"] = args.MaxNumBatchedTokens;
            parameters["block_size"] = args.BlockSize;
            parameters["enable_prefix_caching"] = args.EnablePrefixCaching;
            parameters["dtype"] = args.Dtype;
            parameters["kv_cache_dtype"] = args.KvCacheDtype;
            parameters["quantization"] = args.Quantization;
            parameters["seed"] = args.Seed;
            parameters["speculative_config"] = args.SpeculativeConfig;
            parameters["structured_outputs"] = result.GetValue(_structuredOutputs);
            if (engine.Stats.SpecDecoding is { NumDrafts: > 0 } spec)
            {
                // vLLM's mean acceptance length: tokens per verification step, the accepted drafts and the step's own token
                // (over every step the engine ran, warm-up included).
                double acceptanceLength = 1 + ((double)spec.NumAcceptedTokens / spec.NumDrafts);
                results["spec_decode"] = new JsonObject
                {
                    ["num_drafts"] = spec.NumDrafts,
                    ["num_draft_tokens"] = spec.NumDraftTokens,
                    ["num_accepted_tokens"] = spec.NumAcceptedTokens,
                    ["num_accepted_tokens_per_pos"] = new JsonArray([.. spec.NumAcceptedTokensPerPosition.Select(n => (JsonNode)n)]),
                    ["mean_acceptance_length"] = acceptanceLength,
                };
                result.InvocationConfiguration.Output.WriteLine(
                    $"Speculative decoding: {spec.NumAcceptedTokens} of {spec.NumDraftTokens} draft tokens accepted, mean acceptance length {acceptanceLength:F2}");
            }

            if (BenchmarkReport.Write(kind, args.Model, args.Device, parameters, results, result.GetValue(_outputJson)) is { } path)
                result.InvocationConfiguration.Output.WriteLine($"Results written to {path}");
        }
    }
}
