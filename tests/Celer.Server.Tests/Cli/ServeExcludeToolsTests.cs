using System.Diagnostics;
using Celer.Server.Tests.Integration;

namespace Celer.Server.Tests.Cli;

/// <summary>
/// <c>celer serve --exclude-tools-when-tool-choice-none</c> reaches the server: in its own process, a chat request with
/// <c>tool_choice: "none"</c> is billed the prompt tokens of its messages without the tools, one with <c>"auto"</c>
/// those with them (as <c>/tokenize</c> counts them).
/// </summary>
public sealed class ServeExcludeToolsTests
{
    private const string Tools = """[{"type": "function", "function": {"name": "get_weather", "description": "Weather of a city", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]""";
    private const string Messages = """[{"role": "user", "content": "Weather in Paris?"}]""";

    [Fact]
    public async Task The_flag_leaves_the_tools_out_of_a_none_request()
    {
        var start = new ProcessStartInfo("dotnet")
        {
            ArgumentList =
            {
                Path.Combine(AppContext.BaseDirectory, "celer.dll"), "serve", ServerFixture.DefaultModel, "--port", "0",
                "--max-model-len", "1024", "--max-num-seqs", "4", "--disable-log-stats",
                "--enable-auto-tool-choice", "--tool-call-parser", "hermes", "--exclude-tools-when-tool-choice-none",
            },
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        using var server = Process.Start(start)!;
        var log = new System.Collections.Concurrent.ConcurrentQueue<string>();
        server.ErrorDataReceived += (_, e) => { if (e.Data is not null) log.Enqueue(e.Data); };
        server.BeginErrorReadLine();
        try
        {
            // "Serving model 'celer-tiny-py' (max_model_len …) at http://127.0.0.1:PORT/"
            string? line;
            while ((line = await server.StandardOutput.ReadLineAsync(TestContext.Current.CancellationToken).AsTask().WaitAsync(TimeSpan.FromSeconds(120), TestContext.Current.CancellationToken)) is not null
                && !line.StartsWith("Serving model", StringComparison.Ordinal))
            {
                log.Enqueue(line);
            }
            Assert.True(line is not null, $"the server never came up: {string.Join('\n', log)}");
            using var client = new HttpClient { BaseAddress = new Uri(line[(line.LastIndexOf(" at ", StringComparison.Ordinal) + 4)..]), Timeout = TimeSpan.FromSeconds(60) };

            var withTools = (await HttpApiTests.PostOkAsync(client, "/tokenize", $$"""{"messages": {{Messages}}, "tools": {{Tools}}}"""))["count"]!.GetValue<int>();
            var withoutTools = (await HttpApiTests.PostOkAsync(client, "/tokenize", $$"""{"messages": {{Messages}}}"""))["count"]!.GetValue<int>();
            Assert.True(withTools > withoutTools + 50);

            var none = await HttpApiTests.PostOkAsync(client, "/v1/chat/completions", $$"""{"messages": {{Messages}}, "tools": {{Tools}}, "tool_choice": "none", "max_tokens": 1}""");
            Assert.Equal(withoutTools, none["usage"]!["prompt_tokens"]!.GetValue<int>());
            var auto = await HttpApiTests.PostOkAsync(client, "/v1/chat/completions", $$"""{"messages": {{Messages}}, "tools": {{Tools}}, "tool_choice": "auto", "max_tokens": 1}""");
            Assert.Equal(withTools, auto["usage"]!["prompt_tokens"]!.GetValue<int>());
        }
        finally
        {
            if (!server.HasExited)
                server.Kill(entireProcessTree: true);
            await server.WaitForExitAsync(CancellationToken.None);
        }
    }
}
