using System.ClientModel;
using System.Net;
using System.Text.Json.Nodes;
using Celer.Server.Tests.Support;
using OpenAI;
using OpenAI.Chat;

namespace Celer.Server.Tests.Integration;

/// <summary>
/// vLLM's sleep mode endpoints on a real server (models/celer-tiny-py on the CPU, <c>--enable-sleep-mode</c>): <c>/sleep</c>,
/// <c>/wake_up</c> with and without tags, <c>/is_sleeping</c>, the model list's state, a request that wakes the model
/// with the answer it gave before the sleep, and the refusals.
/// </summary>
public sealed class SleepModeServerTests
{
    private static async Task<bool> IsSleepingAsync(HttpClient http)
    {
        using var response = await http.GetAsync(new Uri("/is_sleeping", UriKind.Relative), TestContext.Current.CancellationToken);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        return JsonNode.Parse(await response.Content.ReadAsStringAsync(TestContext.Current.CancellationToken))!["is_sleeping"]!.GetValue<bool>();
    }

    private static async Task<HttpResponseMessage> PostAsync(HttpClient http, string pathAndQuery) =>
        await http.PostAsync(new Uri(pathAndQuery, UriKind.Relative), null, TestContext.Current.CancellationToken);

    private static async Task<JsonNode> ErrorAsync(HttpResponseMessage response)
    {
        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        return JsonNode.Parse(await response.Content.ReadAsStringAsync(TestContext.Current.CancellationToken))!["error"]!;
    }

    [Fact]
    public async Task A_sleeping_model_shows_it_and_the_next_request_wakes_it_with_the_same_answer()
    {
        await using var server = await TinyPyServer.StartAsync(enableSleepMode: true);
        using var http = new HttpClient { BaseAddress = server.BaseAddress };
        ChatClient chat = new OpenAIClient(new ApiKeyCredential("unused"), new OpenAIClientOptions { Endpoint = new Uri(server.BaseAddress, "/v1") })
            .GetChatClient(ServerFixture.ModelName);
        var options = new ChatCompletionOptions { MaxOutputTokenCount = 16, Temperature = 0 };
        ChatMessage[] conversation = [new UserChatMessage("Write a function that adds two numbers.")];
        string before = (await chat.CompleteChatAsync(conversation, options, TestContext.Current.CancellationToken)).Value.Content[0].Text;
        Assert.False(await IsSleepingAsync(http));

        foreach (string level in new[] { "1", "2" })
        {
            using (var slept = await PostAsync(http, "/sleep?level=" + level))
                Assert.Equal(HttpStatusCode.OK, slept.StatusCode);
            Assert.True(await IsSleepingAsync(http));
            var card = JsonNode.Parse(await http.GetStringAsync(new Uri("/v1/models", UriKind.Relative), TestContext.Current.CancellationToken))!["data"]![0]!;
            Assert.True(card["is_sleeping"]!.GetValue<bool>());

            string woken = (await chat.CompleteChatAsync(conversation, options, TestContext.Current.CancellationToken)).Value.Content[0].Text;
            Assert.Equal(before, woken);
            Assert.False(await IsSleepingAsync(http));
        }

        // vLLM's tags wake one part at a time; the model serves once both are awake.
        (await PostAsync(http, "/sleep")).Dispose();
        using (var weights = await PostAsync(http, "/wake_up?tags=weights"))
            Assert.Equal(HttpStatusCode.OK, weights.StatusCode);
        Assert.True(await IsSleepingAsync(http));
        using (var kv = await PostAsync(http, "/wake_up?tags=kv_cache"))
            Assert.Equal(HttpStatusCode.OK, kv.StatusCode);
        Assert.False(await IsSleepingAsync(http));
        Assert.Equal(before, (await chat.CompleteChatAsync(conversation, options, TestContext.Current.CancellationToken)).Value.Content[0].Text);
    }

    [Fact]
    public async Task Bad_levels_tags_and_models_get_400s_and_a_model_without_sleep_mode_says_how_to_get_it()
    {
        await using var server = await TinyPyServer.StartAsync(enableSleepMode: true);
        using var http = new HttpClient { BaseAddress = server.BaseAddress };
        foreach (string level in new[] { "0", "3", "one", "-1", "" })
            Assert.Equal("level", (await ErrorAsync(await PostAsync(http, "/sleep?level=" + level)))["param"]!.GetValue<string>());
        Assert.Contains("kv_cache", (await ErrorAsync(await PostAsync(http, "/wake_up?tags=gpu")))["message"]!.GetValue<string>(), StringComparison.Ordinal);
        using (var unknown = await PostAsync(http, "/sleep?model=no-such-model"))
            Assert.Equal(HttpStatusCode.NotFound, unknown.StatusCode);
        Assert.False(await IsSleepingAsync(http));

        await using var plain = await TinyPyServer.StartAsync();
        using var plainHttp = new HttpClient { BaseAddress = plain.BaseAddress };
        foreach (string path in new[] { "/sleep", "/wake_up" })
            Assert.Contains("--enable-sleep-mode", (await ErrorAsync(await PostAsync(plainHttp, path)))["message"]!.GetValue<string>(), StringComparison.Ordinal);
        var card = JsonNode.Parse(await plainHttp.GetStringAsync(new Uri("/v1/models", UriKind.Relative), TestContext.Current.CancellationToken))!["data"]![0]!.AsObject();
        Assert.False(card.ContainsKey("is_sleeping"));
    }
}
