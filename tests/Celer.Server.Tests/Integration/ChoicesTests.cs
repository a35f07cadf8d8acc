using System.ClientModel;
using System.ClientModel.Primitives;
using System.Text.Json.Nodes;
using OpenAI;
using OpenAI.Chat;

namespace Celer.Server.Tests.Integration;

/// <summary>
/// <c>n</c> and <c>best_of</c> through the official OpenAI client. Its typed <see cref="ChatCompletion"/>
/// keeps only the first choice, so these calls go through the same client's protocol method (raw
/// JSON body and response; the client's transport, authentication and error handling all the same).
/// </summary>
[Collection(ServerCollection.Name)]
public sealed class ChoicesTests(ServerFixture server)
{
    private ChatClient Chat() =>
        new OpenAIClient(new ApiKeyCredential(ServerFixture.ApiKey), new OpenAIClientOptions { Endpoint = new Uri(server.BaseAddress, "/v1") }).GetChatClient(ServerFixture.ModelName);

    private async Task<JsonNode> CompleteChatAsync(JsonObject body)
    {
        body["model"] = ServerFixture.ModelName;
        body["messages"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = "Write a function that adds two numbers." });
        using var content = BinaryContent.Create(BinaryData.FromString(body.ToJsonString()));
        ClientResult result = await Chat().CompleteChatAsync(content);
        return JsonNode.Parse(result.GetRawResponse().Content.ToString())!;
    }

    [Fact]
    public async Task N_samples_give_n_distinct_choices_indexed_in_order_and_repeat_under_the_seed()
    {
        const int N = 4;
        var body = new JsonObject { ["n"] = N, ["temperature"] = 1.0, ["seed"] = 2024, ["max_tokens"] = 12 };

        var first = await CompleteChatAsync((JsonObject)body.DeepClone());
        var choices = first["choices"]!.AsArray();
        Assert.Equal(Enumerable.Range(0, N), choices.Select(c => c!["index"]!.GetValue<int>()));
        var texts = choices.Select(c => c!["message"]!["content"]!.GetValue<string>()).ToList();
        Assert.Equal(N, texts.Distinct().Count());
        Assert.All(choices, c => Assert.NotNull(c!["finish_reason"]));
        // Usage counts every choice's tokens.
        Assert.True(first["usage"]!["completion_tokens"]!.GetValue<int>() >= N);

        var again = await CompleteChatAsync((JsonObject)body.DeepClone());
        Assert.Equal(texts, again["choices"]!.AsArray().Select(c => c!["message"]!["content"]!.GetValue<string>()));
    }

    [Theory]
    [InlineData(3, 2)]
    [InlineData(2, 1)]
    public async Task Best_of_below_n_is_a_400_naming_best_of(int n, int bestOf)
    {
        var error = await Assert.ThrowsAsync<ClientResultException>(() => CompleteChatAsync(new JsonObject { ["n"] = n, ["best_of"] = bestOf, ["temperature"] = 1.0 }));
        Assert.Equal(400, error.Status);
        var envelope = JsonNode.Parse(error.GetRawResponse()!.Content.ToString())!["error"]!;
        Assert.Equal("best_of", envelope["param"]!.GetValue<string>());
    }
}
