using System.Text.Json.Nodes;
using Celer.Server.Tests.Integration;
using Celer.Server.Tests.Support;

namespace Celer.Server.Tests.Cli;

/// <summary>
/// <c>celer serve</c> with several models: <c>--model</c> repeated and <c>--models-file</c> as an operator runs them, and
/// every malformed models file or conflicting flag refused with one line and exit code 1 before anything loads.
/// </summary>
public sealed class ServeMultiModelTests : IDisposable
{
    private readonly string _directory = Path.Combine(Path.GetTempPath(), "celer-serve-multi-" + Guid.NewGuid().ToString("N"));

    public ServeMultiModelTests() => Directory.CreateDirectory(_directory);

    public void Dispose() => Directory.Delete(_directory, recursive: true);

    private string DraftDirectory()
    {
        var draft = Path.Combine(_directory, "celer-tiny-py-draft");
        MultiModelFixture.WriteDraftDirectory(draft);
        return draft;
    }

    private string WriteModelsFile(string json)
    {
        var path = Path.Combine(_directory, "models.json");
        File.WriteAllText(path, json);
        return path;
    }

    [Fact]
    public async Task Repeated_model_flags_serve_each_directory_under_its_name_with_the_shared_engine_flags()
    {
        await using var serve = await ServeProcess.StartAsync(
            "--model", ServerFixture.DefaultModel, "--model", DraftDirectory(), "--port", "0", "--max-model-len", "64", "--kv-cache-memory", "64MiB", "--disable-log-stats");
        using var client = serve.CreateClient();

        var cards = JsonNode.Parse(await client.GetStringAsync("/v1/models", TestContext.Current.CancellationToken))!["data"]!.AsArray();
        Assert.Equal([("celer-tiny-py", 64), ("celer-tiny-py-draft", 64)], cards.Select(c => (c!["id"]!.GetValue<string>(), c["max_model_len"]!.GetValue<int>())).ToArray());
        foreach (var model in new[] { "celer-tiny-py", "celer-tiny-py-draft" })
        {
            var answer = await HttpApiTests.PostOkAsync(client, "/v1/completions", $$"""{"model": "{{model}}", "prompt": "def f(x):", "max_tokens": 4}""");
            Assert.Equal(model, answer["model"]!.GetValue<string>());
        }
    }

    [Fact]
    public async Task A_models_file_gives_each_model_its_names_and_engine_settings()
    {
        var file = WriteModelsFile($$"""
            {
              // Comments and trailing commas are accepted, as in a hand-written config.
              "models": [
                {"model": {{JsonValue.Create(ServerFixture.DefaultModel).ToJsonString()}}, "served_model_name": "tiny", "max_model_len": 128, "max_num_seqs": 4, "kv_cache_memory": "64MiB", "dtype": "auto", "device": "cpu"},
                {"model": {{JsonValue.Create(DraftDirectory()).ToJsonString()}}, "served_model_name": ["draft", "small"], "max_model_len": 96, "kv_cache_memory": 33554432, "generation_config": "vllm"},
              ],
            }
            """);
        await using var serve = await ServeProcess.StartAsync("--models-file", file, "--port", "0", "--disable-log-stats");
        using var client = serve.CreateClient();

        var cards = JsonNode.Parse(await client.GetStringAsync("/v1/models", TestContext.Current.CancellationToken))!["data"]!.AsArray();
        Assert.Equal([("tiny", 128), ("draft", 96), ("small", 96)], cards.Select(c => (c!["id"]!.GetValue<string>(), c["max_model_len"]!.GetValue<int>())).ToArray());
        var tooLong = await HttpApiTests.PostErrorAsync(client, "/v1/completions", """{"model": "small", "prompt": "x", "max_tokens": 100}""", System.Net.HttpStatusCode.BadRequest);
        Assert.Contains("maximum context length is 96 tokens", tooLong["message"]!.GetValue<string>(), StringComparison.Ordinal);
        var answer = await HttpApiTests.PostOkAsync(client, "/v1/completions", """{"model": "tiny", "prompt": "x", "max_tokens": 100}""");
        Assert.Equal("tiny", answer["model"]!.GetValue<string>());
    }

    public static TheoryData<string, string> BadFiles => new()
    {
        { "not json", "not valid JSON" },
        { """[{"model": "m"}]""", "expected an object with a \"models\" array" },
        { """{"models": []}""", "\"models\" is empty; give at least one model." },
        { """{"models": [], "port": 1}""", "unknown key \"port\" (the file has one key, \"models\")." },
        { """{"models": [42]}""", "models[0]: expected an object with at least \"model\"." },
        { """{"models": [{"served_model_name": "x"}]}""", "models[0]: \"model\" (the model directory) is required." },
        { """{"models": [{"model": "m", "max_model_len": "long"}]}""", "models[0].max_model_len: expected an integer, got \"long\"." },
        { """{"models": [{"model": "m", "max_model_len": 0}]}""", "models[0] (m): --max-model-len must be positive" },
        { """{"models": [{"model": "m", "device": "tpu"}]}""", "models[0].device: \"tpu\" is not one of cpu, cuda." },
        { """{"models": [{"model": "m", "kv_cache_memory": "lots"}]}""", "models[0].kv_cache_memory: expected a byte size" },
        { """{"models": [{"model": "m", "served_model_name": []}]}""", "models[0].served_model_name: expected a name or a non-empty list of names, got []." },
        { """{"models": [{"model": "m", "enable_prefix_caching": "yes"}]}""", "models[0].enable_prefix_caching: expected true or false, got \"yes\"." },
        { """{"models": [{"model": "m", "temperature": 0}]}""", "models[0]: unknown key \"temperature\"; known keys: model, served_model_name," },
        { """{"models": [{"model": "m", "reasoning_parser": "nope"}]}""", "models[0] (m): " },
        { """{"models": [{"model": "a/m"}, {"model": "b/m"}]}""", "Two models are served as 'm'; give each its own name" },
        { """{"models": [{"model": "a", "served_model_name": ["x", "y"]}, {"model": "b", "served_model_name": "y"}]}""", "Two models are served as 'y'" },
    };

    [Theory]
    [MemberData(nameof(BadFiles))]
    public async Task A_bad_models_file_is_refused_with_one_line_naming_the_entry(string json, string fragment)
    {
        var file = WriteModelsFile(json);
        var (exitCode, output, error) = await CelerCli.RunAsync("serve", "--models-file", file, "--port", "0");

        Assert.Equal(1, exitCode);
        Assert.Empty(output);
        Assert.StartsWith("error: ", error, StringComparison.Ordinal);
        Assert.Contains(fragment, error, StringComparison.Ordinal);
        Assert.Single(error.TrimEnd().Split('\n'));
    }

    [Fact]
    public async Task A_missing_models_file_and_conflicting_flags_are_refused()
    {
        var missing = Path.Combine(_directory, "absent.json");
        Assert.Equal((1, "", $"error: --models-file {missing}: no such file.{Environment.NewLine}"), await CelerCli.RunAsync("serve", "--models-file", missing, "--port", "0"));

        var file = WriteModelsFile("""{"models": [{"model": "m"}]}""");
        var (exitCode, _, error) = await CelerCli.RunAsync("serve", ServerFixture.DefaultModel, "--models-file", file, "--port", "0");
        Assert.Equal(1, exitCode);
        Assert.Contains("--models-file names the models to serve", error, StringComparison.Ordinal);

        (exitCode, _, error) = await CelerCli.RunAsync("serve", "--models-file", file, "--served-model-name", "x", "--port", "0");
        Assert.Equal(1, exitCode);
        Assert.Contains("with --models-file, name each in the file", error, StringComparison.Ordinal);

        (exitCode, _, error) = await CelerCli.RunAsync("serve", "--model", "a", "--model", "b", "--served-model-name", "x", "--port", "0");
        Assert.Equal(1, exitCode);
        Assert.Contains("--served-model-name names one model", error, StringComparison.Ordinal);

        (exitCode, _, error) = await CelerCli.RunAsync("serve", "--model", "a/m", "--model", "b/m", "--port", "0");
        Assert.Equal(1, exitCode);
        Assert.Contains("Two models are served as 'm'", error, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_model_that_fails_to_load_is_one_line_after_the_ones_loaded_before_it_are_released()
    {
        var file = WriteModelsFile($$"""{"models": [{"model": {{JsonValue.Create(ServerFixture.DefaultModel).ToJsonString()}}, "max_model_len": 64, "kv_cache_memory": "16MiB"}, {"model": {{JsonValue.Create(Path.Combine(_directory, "no-such-model")).ToJsonString()}}}]}""");
        var (exitCode, output, error) = await CelerCli.RunAsync("serve", "--models-file", file, "--port", "0");

        Assert.Equal(1, exitCode);
        Assert.Empty(output);
        Assert.StartsWith("error: ", error, StringComparison.Ordinal);
        Assert.Contains("no-such-model", error, StringComparison.Ordinal);
    }
}
