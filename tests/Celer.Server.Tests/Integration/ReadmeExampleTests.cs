using System.Text;
using System.Text.Json.Nodes;
using Celer.Server.Tests.Support;

namespace Celer.Server.Tests.Integration;

/// <summary>
/// The README's first run: <c>def fibonacci(n):</c> against the default model, served and through
/// <c>celer generate</c>. The text must be real text (strict UTF-8, no U+FFFD from a split character),
/// survive a tokenize/detokenize round trip, and be the same greedy text both ways.
/// </summary>
[Collection(ServerCollection.Name)]
public sealed class ReadmeExampleTests(ServerFixture server)
{
    private const string Prompt = "def fibonacci(n):";
    /// <summary>The README's curl asks for 48 tokens; its <c>celer generate</c> line for 24.</summary>
    private const int ReadmeCurlMaxTokens = 48;
    private const int ReadmeGenerateMaxTokens = 24;

    private static readonly UTF8Encoding StrictUtf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    private static async Task<string> ServedGreedyTextAsync(HttpClient client, int maxTokens)
    {
        using var response = await client.PostJsonAsync("/v1/completions", $$"""{"prompt": "{{Prompt}}", "max_tokens": {{maxTokens}}, "temperature": 0}""");
        response.EnsureSuccessStatusCode();
        // Decoding the raw bytes strictly: invalid UTF-8 anywhere in the body throws here.
        var body = StrictUtf8.GetString(await response.Content.ReadAsByteArrayAsync());
        return JsonNode.Parse(body)!["choices"]![0]!["text"]!.GetValue<string>();
    }

    [Fact]
    public async Task Served_completion_is_clean_text_that_round_trips_through_the_tokenizer()
    {
        using var client = server.CreateClient();
        var text = await ServedGreedyTextAsync(client, ReadmeCurlMaxTokens);

        Assert.False(string.IsNullOrWhiteSpace(text));
        Assert.DoesNotContain('\uFFFD', text);
        var tokens = (await HttpApiTests.PostOkAsync(client, "/tokenize", new JsonObject { ["prompt"] = text, ["add_special_tokens"] = false }.ToJsonString()))["tokens"]!;
        Assert.NotEmpty(tokens.AsArray());
        var detokenized = await HttpApiTests.PostOkAsync(client, "/detokenize", new JsonObject { ["tokens"] = tokens.DeepClone() }.ToJsonString());
        Assert.Equal(text, detokenized["prompt"]!.GetValue<string>());
    }

    [Fact]
    public async Task Celer_generate_prints_the_servers_greedy_text()
    {
        using var client = server.CreateClient();
        var served = await ServedGreedyTextAsync(client, ReadmeGenerateMaxTokens);

        // The README's command. --max-num-seqs only sizes the KV cache (the default, 256 sequences,
        // would allocate ~800 MB here); it cannot change a greedy single-request output.
        var (exitCode, output, error) = await CelerCli.RunAsync(
            "generate", "--model", ServerFixture.DefaultModel, "--prompt", Prompt, "--max-tokens", $"{ReadmeGenerateMaxTokens}", "--max-num-seqs", "4");

        Assert.True(exitCode == 0, $"celer generate exited with {exitCode}: {error}");
        Assert.Equal(served + Environment.NewLine, output);
    }
}
