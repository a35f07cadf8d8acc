using System.ClientModel;
using OpenAI;
using OpenAI.Chat;
using OpenAI.Models;
using Celer.Server.Tests.Media;

namespace Celer.Server.Tests.Integration;

/// <summary>The official OpenAI .NET client against the real server: what users actually run.</summary>
[Collection(ServerCollection.Name)]
public sealed class OpenAIClientTests(ServerFixture server)
{
    private ChatClient Chat(string model = ServerFixture.ModelName, string key = ServerFixture.ApiKey) =>
        new OpenAIClient(new ApiKeyCredential(key), new OpenAIClientOptions { Endpoint = new Uri(server.BaseAddress, "/v1") }).GetChatClient(model);

    private static readonly ChatMessage[] Conversation = [new SystemChatMessage("You are terse."), new UserChatMessage("Count: one, two,")];

    [Fact]
    public async Task Chat_completion_returns_text_usage_and_a_finish_reason()
    {
        var completion = (await Chat().CompleteChatAsync(Conversation, new ChatCompletionOptions { MaxOutputTokenCount = 8, Temperature = 0 }, TestContext.Current.CancellationToken)).Value;

        Assert.Equal(ChatMessageRole.Assistant, completion.Role);
        Assert.StartsWith("chatcmpl-", completion.Id, StringComparison.Ordinal);
        Assert.Equal(ServerFixture.ModelName, completion.Model);
        Assert.InRange(completion.Usage.OutputTokenCount, 1, 8);
        Assert.True(completion.Usage.InputTokenCount > 0);
        Assert.Equal(completion.Usage.InputTokenCount + completion.Usage.OutputTokenCount, completion.Usage.TotalTokenCount);
        Assert.Contains(completion.FinishReason, new[] { ChatFinishReason.Stop, ChatFinishReason.Length });
    }

    [Fact]
    public async Task Streaming_concatenates_to_the_non_streamed_greedy_text()
    {
        var options = new ChatCompletionOptions { MaxOutputTokenCount = 12, Temperature = 0 };
        var whole = (await Chat().CompleteChatAsync(Conversation, options, TestContext.Current.CancellationToken)).Value.Content[0].Text;

        var streamed = new System.Text.StringBuilder();
        ChatFinishReason? finish = null;
        await foreach (var update in Chat().CompleteChatStreamingAsync(Conversation, options, TestContext.Current.CancellationToken))
        {
            foreach (var part in update.ContentUpdate)
                streamed.Append(part.Text);
            finish ??= update.FinishReason;
        }
        Assert.Equal(whole, streamed.ToString());
        Assert.NotNull(finish);
    }

    [Fact]
    public async Task Same_seed_gives_the_same_sample()
    {
        // The client marks Seed experimental (OPENAI001); the API field itself is stable.
#pragma warning disable OPENAI001
        var options = new ChatCompletionOptions { MaxOutputTokenCount = 10, Temperature = 1.0f, Seed = 1234 };
#pragma warning restore OPENAI001
        var first = (await Chat().CompleteChatAsync(Conversation, options, TestContext.Current.CancellationToken)).Value.Content[0].Text;
        var second = (await Chat().CompleteChatAsync(Conversation, options, TestContext.Current.CancellationToken)).Value.Content[0].Text;
        Assert.Equal(first, second);
    }

    [Fact]
    public async Task Logprobs_come_back_per_token_with_top_alternatives_in_rank_order()
    {
        var options = new ChatCompletionOptions { MaxOutputTokenCount = 4, Temperature = 0, IncludeLogProbabilities = true, TopLogProbabilityCount = 3 };
        var completion = (await Chat().CompleteChatAsync(Conversation, options, TestContext.Current.CancellationToken)).Value;

        Assert.Equal(completion.Usage.OutputTokenCount, completion.ContentTokenLogProbabilities.Count);
        foreach (var token in completion.ContentTokenLogProbabilities)
        {
            Assert.Equal(3, token.TopLogProbabilities.Count);
            Assert.True(token.LogProbability <= 0);
            // Greedy: the chosen token is the most likely one.
            Assert.Equal(token.TopLogProbabilities[0].LogProbability, token.LogProbability, 1e-4f);
            for (var k = 1; k < 3; k++)
                Assert.True(token.TopLogProbabilities[k - 1].LogProbability >= token.TopLogProbabilities[k].LogProbability);
        }
    }

    [Fact]
    public async Task Stop_strings_never_appear_in_the_output()
    {
        var free = (await Chat().CompleteChatAsync(Conversation, new ChatCompletionOptions { MaxOutputTokenCount = 16, Temperature = 0 }, TestContext.Current.CancellationToken)).Value.Content[0].Text;
        Assert.SkipWhen(free.Length < 4, "the greedy reply is too short to pick a stop string from");
        var stop = free.Substring(2, 2);
        var options = new ChatCompletionOptions { MaxOutputTokenCount = 16, Temperature = 0 };
        options.StopSequences.Add(stop);
        var stopped = (await Chat().CompleteChatAsync(Conversation, options, TestContext.Current.CancellationToken)).Value;
        Assert.Equal(ChatFinishReason.Stop, stopped.FinishReason);
        Assert.Equal(free[..free.IndexOf(stop, StringComparison.Ordinal)], stopped.Content[0].Text);
    }

    [Fact]
    public async Task Models_can_be_listed_and_retrieved_by_id()
    {
        var client = new OpenAIClient(new ApiKeyCredential(ServerFixture.ApiKey), new OpenAIClientOptions { Endpoint = new Uri(server.BaseAddress, "/v1") }).GetOpenAIModelClient();

        var listed = (await client.GetModelsAsync(TestContext.Current.CancellationToken)).Value;
        Assert.Contains(listed, m => m.Id == ServerFixture.ModelName);
        var retrieved = (await client.GetModelAsync(ServerFixture.ModelName, TestContext.Current.CancellationToken)).Value;
        Assert.Equal(ServerFixture.ModelName, retrieved.Id);
        Assert.Equal("celer", retrieved.OwnedBy);
        var missing = await Assert.ThrowsAsync<ClientResultException>(() => client.GetModelAsync("no-such-model", TestContext.Current.CancellationToken));
        Assert.Equal(404, missing.Status);
        Assert.Contains("model_not_found", missing.GetRawResponse()!.Content.ToString(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Errors_surface_as_ClientResultException_with_the_status()
    {
        var unknown = await Assert.ThrowsAsync<ClientResultException>(() => Chat(model: "no-such-model").CompleteChatAsync(Conversation));
        Assert.Equal(404, unknown.Status);
        var badKey = await Assert.ThrowsAsync<ClientResultException>(() => Chat(key: "wrong").CompleteChatAsync(Conversation));
        Assert.Equal(401, badKey.Status);
        var badTemperature = await Assert.ThrowsAsync<ClientResultException>(() => Chat().CompleteChatAsync(Conversation, new ChatCompletionOptions { Temperature = 3f }, TestContext.Current.CancellationToken));
        Assert.Equal(400, badTemperature.Status);
    }

    [Fact]
    public async Task An_image_to_a_text_only_model_is_a_400_naming_the_part()
    {
        var png = TestImages.Png(2, 2, TestImages.RandomRgba(2, 2, seed: 1));
        ChatMessage[] messages = [new UserChatMessage(ChatMessageContentPart.CreateTextPart("What is this?"), ChatMessageContentPart.CreateImagePart(BinaryData.FromBytes(png), "image/png"))];
        var refused = await Assert.ThrowsAsync<ClientResultException>(() => Chat().CompleteChatAsync(messages, new ChatCompletionOptions { MaxOutputTokenCount = 4 }, TestContext.Current.CancellationToken));

        Assert.Equal(400, refused.Status);
        using var error = System.Text.Json.JsonDocument.Parse(refused.GetRawResponse()!.Content.ToString());
        var body = error.RootElement.GetProperty("error");
        Assert.Equal("Content part type 'image_url' is not supported: this model takes text only (messages[0].content[1]).", body.GetProperty("message").GetString());
        Assert.Equal("messages[0].content[1]", body.GetProperty("param").GetString());
    }
}
