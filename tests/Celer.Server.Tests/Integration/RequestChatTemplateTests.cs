using System.Net;
using System.Text.Json.Nodes;
using Celer.Server.Tests.Support;

namespace Celer.Server.Tests.Integration;

/// <summary>
/// As in vLLM, a server runs a <c>chat_template</c> sent with a request only when started with
/// <c>--trust-request-chat-template</c> (the shared fixture is; <see cref="TinyPyServer"/>, like the CLI's default, is not).
/// </summary>
public sealed class RequestChatTemplateTests
{
    [Fact]
    public async Task A_request_template_is_refused_unless_the_server_trusts_them()
    {
        await using var server = await TinyPyServer.StartAsync();
        using var client = server.CreateClient();
        using var refused = await client.PostJsonAsync("/v1/chat/completions",
            """{"messages": [{"role": "user", "content": "x"}], "max_tokens": 2, "chat_template": "{{ messages[0].content }}"}""");
        Assert.Equal(HttpStatusCode.BadRequest, refused.StatusCode);
        JsonNode error = JsonNode.Parse(await refused.Content.ReadAsStringAsync(TestContext.Current.CancellationToken))!["error"]!;
        Assert.Equal("chat_template", error["param"]!.GetValue<string>());
        Assert.Contains("--trust-request-chat-template is not set", error["message"]!.GetValue<string>(), StringComparison.Ordinal);

        // The model's own template still serves the same request without one.
        JsonNode ok = await HttpApiTests.PostOkAsync(client, "/v1/chat/completions", """{"messages": [{"role": "user", "content": "x"}], "max_tokens": 2}""");
        Assert.Equal(2, ok["usage"]!["completion_tokens"]!.GetValue<int>());
    }
}
