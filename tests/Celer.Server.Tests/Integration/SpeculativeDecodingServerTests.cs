using System.ClientModel;
using System.Globalization;
using System.Text.Json;
using Celer.TestSupport;
using Celer.Server.Tests.Support;
using OpenAI;
using OpenAI.Chat;

namespace Celer.Server.Tests.Integration;

/// <summary>
/// Speculative decoding (n-gram, draft model, EAGLE-3 head) behind the real server, through the official OpenAI .NET client: a greedy chat completion
/// is the one the same server gives without drafts, and /metrics counts the drafts as vLLM names them.
/// </summary>
public sealed class SpeculativeDecodingServerTests
{
    private static readonly ChatMessage[] Conversation =
        [new UserChatMessage("def add(a, b):\n    return a + b\n\ndef add_three(a, b, c):\n    return a + b + c\n\ndef add")];

    private static async Task<string> CompleteAsync(TinyPyServer server)
    {
        ChatClient chat = new OpenAIClient(new ApiKeyCredential("unused"), new OpenAIClientOptions { Endpoint = new Uri(server.BaseAddress, "/v1") })
            .GetChatClient(ServerFixture.ModelName);
        ChatCompletion completion = (await chat.CompleteChatAsync(
            Conversation, new ChatCompletionOptions { MaxOutputTokenCount = 64, Temperature = 0 }, TestContext.Current.CancellationToken)).Value;
        return completion.Content[0].Text;
    }

    public static TheoryData<string> Configs() => new(
        """{"method": "ngram", "num_speculative_tokens": 4, "prompt_lookup_min": 1, "prompt_lookup_max": 3}""",
        // The default model as its own draft: real weights on both sides.
        $$"""{"method": "draft_model", "model": {{JsonSerializer.Serialize(RepoPaths.DefaultModel)}}, "num_speculative_tokens": 3}""",
        // The default model's shipped EAGLE-3 head, the method inferred from its name as vLLM infers it.
        $$"""{"model": {{JsonSerializer.Serialize(Path.Combine(RepoPaths.Root, "models", "celer-tiny-py-eagle3"))}}, "num_speculative_tokens": 3}""");

    [Theory]
    [MemberData(nameof(Configs))]
    public async Task Greedy_completions_with_drafts_equal_those_without_and_the_drafts_are_counted(string speculativeConfig)
    {
        string plain, speculative, metrics;
        await using (TinyPyServer server = await TinyPyServer.StartAsync())
        {
            plain = await CompleteAsync(server);
        }

        await using (TinyPyServer server = await TinyPyServer.StartAsync(speculativeConfig: speculativeConfig))
        {
            speculative = await CompleteAsync(server);
            using HttpClient http = server.CreateClient();
            metrics = await http.GetStringAsync(new Uri("/metrics", UriKind.Relative), TestContext.Current.CancellationToken);
        }

        Assert.Equal(plain, speculative);
        double drafts = Counter(metrics, "vllm:spec_decode_num_draft_tokens_total");
        double accepted = Counter(metrics, "vllm:spec_decode_num_accepted_tokens_total");
        Assert.True(drafts > 0, "no draft tokens counted");
        Assert.InRange(accepted, 0, drafts);
        Assert.True(Counter(metrics, "vllm:spec_decode_num_drafts_total") > 0);
    }

    /// <summary>The value of an unlabeled-by-position counter series of this server's model.</summary>
    private static double Counter(string metrics, string name)
    {
        string line = metrics.Split('\n').Single(l => l.StartsWith(name + "{", StringComparison.Ordinal));
        return double.Parse(line[(line.LastIndexOf(' ') + 1)..], CultureInfo.InvariantCulture);
    }
}
