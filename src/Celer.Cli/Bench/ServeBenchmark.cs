using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Celer.Tokenization;

namespace Celer.Cli.Bench;

/// <summary>
/// <c>celer bench serve</c>: load test of a running server through streamed <c>/v1/completions</c>
/// (vLLM's <c>bench serve</c>): requests arrive as a Poisson process at <c>--request-rate</c> (or all
/// at once for <c>inf</c>), at most <c>--max-concurrency</c> in flight, and each stream is timed for
/// TTFT, TPOT and inter-token latency.
/// </summary>
internal static class ServeBenchmark
{
    private sealed record RequestResult(bool Success, double Ttft, double Latency, int OutputTokens, List<double> Itl, string? Error);

    public static Command Create()
    {
        var baseUrl = new Option<string>("--base-url") { DefaultValueFactory = _ => "http://127.0.0.1:8000" };
        var model = new Option<string?>("--model") { Description = "Model directory, for the tokenizer's vocabulary (default: the repository's models/celer-tiny-py)." };
        var servedModel = new Option<string?>("--served-model-name") { Description = "Model name to request (default: the server's first model)." };
        var apiKey = new Option<string?>("--api-key") { Description = "Bearer key (default: env CELER_API_KEY)." };
        var requestRate = new Option<string>("--request-rate") { Description = "Requests per second, or inf.", DefaultValueFactory = _ => "inf" };
        var maxConcurrency = new Option<int?>("--max-concurrency") { Description = "Most requests in flight at once." };
        var numPrompts = new Option<int>("--num-prompts") { DefaultValueFactory = _ => 100 };
        var inputLen = new Option<int>("--random-input-len") { DefaultValueFactory = _ => 128 };
        var outputLen = new Option<int>("--random-output-len") { DefaultValueFactory = _ => 128 };
        var rangeRatio = new Option<double>("--random-range-ratio") { DefaultValueFactory = _ => 0 };
        var seed = new Option<int>("--seed") { DefaultValueFactory = _ => 0 };
        var outputJson = new Option<string?>("--output-json") { Description = "Write the results as JSON to this file (none are written without it)." };
        var command = new Command("serve", "Benchmark a running server (vLLM's bench serve).");
        foreach (var option in new Option[] { baseUrl, model, servedModel, apiKey, requestRate, maxConcurrency, numPrompts, inputLen, outputLen, rangeRatio, seed, outputJson })
            command.Options.Add(option);

        command.SetAction((result, cancellationToken) => CliRunner.RunAsync(result, async () =>
        {
            var rateText = result.GetValue(requestRate)!;
            var rate = rateText.Equals("inf", StringComparison.OrdinalIgnoreCase) ? double.PositiveInfinity
                : double.TryParse(rateText, NumberStyles.Float, CultureInfo.InvariantCulture, out var r) && r > 0 ? r
                : throw new CliException($"--request-rate must be a positive number or inf, got '{rateText}'.");
            var modelDir = ModelLocator.Resolve(result.GetValue(model));
            var tokenizer = Tokenizer.FromFile(Path.Combine(modelDir, "tokenizer.json"));

            using var http = new HttpClient { BaseAddress = new Uri(result.GetValue(baseUrl)!.TrimEnd('/') + "/"), Timeout = Timeout.InfiniteTimeSpan };
            var key = result.GetValue(apiKey) ?? Environment.GetEnvironmentVariable("CELER_API_KEY");
            if (!string.IsNullOrEmpty(key))
                http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", key);
            var modelName = result.GetValue(servedModel) ?? await FirstModelAsync(http, cancellationToken);

            var prompts = RandomPrompts.Create(result.GetValue(numPrompts), result.GetValue(inputLen), result.GetValue(outputLen),
                result.GetValue(rangeRatio), tokenizer.VocabSize, result.GetValue(seed));
            var concurrency = result.GetValue(maxConcurrency);
            using var limiter = concurrency is { } c ? new SemaphoreSlim(c) : null;
            var arrivals = new Random(result.GetValue(seed));

            var total = Stopwatch.StartNew();
            var tasks = new List<Task<RequestResult>>(prompts.Count);
            foreach (var (promptIds, outLen) in prompts)
            {
                tasks.Add(RunOneAsync(http, modelName, promptIds, outLen, limiter, cancellationToken));
                if (!double.IsPositiveInfinity(rate))
                    await Task.Delay(TimeSpan.FromSeconds(-Math.Log(1 - arrivals.NextDouble()) / rate), cancellationToken);
            }
            var outcomes = await Task.WhenAll(tasks);
            var duration = total.Elapsed.TotalSeconds;

            var ok = outcomes.Where(o => o.Success).ToList();
            var outputTokens = ok.Sum(o => (long)o.OutputTokens);
            var inputTokens = prompts.Where((_, i) => outcomes[i].Success).Sum(p => (long)p.PromptIds.Length);
            var results = new JsonObject
            {
                ["duration"] = duration,
                ["completed"] = ok.Count,
                ["failed"] = outcomes.Length - ok.Count,
                ["total_input_tokens"] = inputTokens,
                ["total_output_tokens"] = outputTokens,
                ["request_throughput"] = ok.Count / duration,
                ["output_throughput"] = outputTokens / duration,
                ["total_token_throughput"] = (inputTokens + outputTokens) / duration,
            };
            LatencyStats.AddSummary(results, "ttft", ok.Select(o => o.Ttft));
            LatencyStats.AddSummary(results, "tpot", ok.Where(o => o.OutputTokens > 1).Select(o => (o.Latency - o.Ttft) / (o.OutputTokens - 1)));
            LatencyStats.AddSummary(results, "itl", ok.SelectMany(o => o.Itl));
            LatencyStats.AddSummary(results, "e2el", ok.Select(o => o.Latency));
            if (outcomes.FirstOrDefault(o => !o.Success)?.Error is { } firstError)
                results["first_error"] = firstError;

            var output = result.InvocationConfiguration.Output;
            foreach (var (name, value) in results)
                await output.WriteLineAsync($"{name,-28} {value}");
            var parameters = new JsonObject
            {
                ["base_url"] = result.GetValue(baseUrl),
                ["served_model_name"] = modelName,
                ["request_rate"] = rateText,
                ["max_concurrency"] = concurrency,
                ["num_prompts"] = prompts.Count,
                ["random_input_len"] = result.GetValue(inputLen),
                ["random_output_len"] = result.GetValue(outputLen),
                ["random_range_ratio"] = result.GetValue(rangeRatio),
                ["seed"] = result.GetValue(seed),
            };
            if (BenchmarkReport.Write("serve", modelName, "server", parameters, results, result.GetValue(outputJson)) is { } path)
                await output.WriteLineAsync($"Results written to {path}");
            return 0;
        }));
        return command;
    }

    private static async Task<string> FirstModelAsync(HttpClient http, CancellationToken cancellationToken)
    {
        var models = JsonNode.Parse(await http.GetStringAsync("v1/models", cancellationToken));
        return models?["data"]?[0]?["id"]?.GetValue<string>() ?? throw new CliException("The server lists no model at /v1/models.");
    }

    private static async Task<RequestResult> RunOneAsync(HttpClient http, string model, int[] promptIds, int outputLen, SemaphoreSlim? limiter, CancellationToken cancellationToken)
    {
        if (limiter is not null)
            await limiter.WaitAsync(cancellationToken);
        try
        {
            var body = new JsonObject
            {
                ["model"] = model,
                ["prompt"] = new JsonArray([.. promptIds.Select(id => (JsonNode)id)]),
                ["max_tokens"] = outputLen,
                ["ignore_eos"] = true,
                ["temperature"] = 0,
                ["stream"] = true,
                ["stream_options"] = new JsonObject { ["include_usage"] = true },
            };
            using var request = new HttpRequestMessage(HttpMethod.Post, "v1/completions")
            {
                Content = new StringContent(body.ToJsonString(), Encoding.UTF8, "application/json"),
            };
            var timer = Stopwatch.StartNew();
            using var response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, cancellationToken);
            if (!response.IsSuccessStatusCode)
                return new RequestResult(false, 0, 0, 0, [], $"HTTP {(int)response.StatusCode}: {await response.Content.ReadAsStringAsync(cancellationToken)}");

            using var reader = new StreamReader(await response.Content.ReadAsStreamAsync(cancellationToken));
            double ttft = 0, last = 0;
            var itl = new List<double>();
            var outputTokens = 0;
            while (await reader.ReadLineAsync(cancellationToken) is { } line)
            {
                if (!line.StartsWith("data: ", StringComparison.Ordinal))
                    continue;
                var data = line["data: ".Length..];
                if (data == "[DONE]")
                    break;
                var now = timer.Elapsed.TotalSeconds;
                var chunk = JsonNode.Parse(data);
                if (chunk?["error"] is { } error)
                    return new RequestResult(false, 0, 0, 0, [], error.ToJsonString());
                if (chunk?["usage"]?["completion_tokens"] is { } tokens)
                    outputTokens = tokens.GetValue<int>();
                // The closing usage chunk has an empty choices list.
                var text = chunk?["choices"] is JsonArray { Count: > 0 } choices ? choices[0]?["text"]?.GetValue<string>() : null;
                if (string.IsNullOrEmpty(text))
                    continue;
                if (ttft == 0)
                    ttft = now;
                else
                    itl.Add(now - last);
                last = now;
            }
            return new RequestResult(true, ttft, timer.Elapsed.TotalSeconds, outputTokens, itl, null);
        }
        catch (HttpRequestException e)
        {
            return new RequestResult(false, 0, 0, 0, [], e.Message);
        }
        finally
        {
            limiter?.Release();
        }
    }
}
