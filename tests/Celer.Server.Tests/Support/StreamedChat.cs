using System.Text;
using System.Text.Json.Nodes;

namespace Celer.Server.Tests.Support;

/// <summary>
/// A streamed chat completion's deltas put together: the reasoning (its <c>reasoning_content</c> and <c>reasoning</c>
/// names checked equal in every delta), the content, each tool-call delta, the finish reason, and the order in which
/// the three kinds of delta arrived.
/// </summary>
internal sealed record StreamedChat(string Reasoning, string Content, IReadOnlyList<JsonNode> ToolCalls, string? FinishReason, IReadOnlyList<string> Order)
{
    public static async Task<StreamedChat> ReadAsync(HttpResponseMessage response)
    {
        var reasoning = new StringBuilder();
        var content = new StringBuilder();
        var calls = new List<JsonNode>();
        string? finish = null;
        var order = new List<string>();
        foreach (var data in await SseReader.ReadAllAsync(response))
        {
            if (data == SseReader.Done)
                continue;
            var choice = JsonNode.Parse(data)!["choices"]![0]!;
            var delta = choice["delta"]!;
            if (delta["reasoning_content"] is { } r)
            {
                Assert.Equal(r.GetValue<string>(), delta["reasoning"]!.GetValue<string>());
                reasoning.Append(r.GetValue<string>());
                order.Add("reasoning");
            }
            if (delta["content"]?.GetValue<string>() is { Length: > 0 } c)
            {
                content.Append(c);
                order.Add("content");
            }
            foreach (var call in delta["tool_calls"]?.AsArray() ?? [])
            {
                calls.Add(call!);
                order.Add("tool_call");
            }
            finish ??= choice["finish_reason"]?.GetValue<string>();
        }

        return new StreamedChat(reasoning.ToString(), content.ToString(), calls, finish, order);
    }

    /// <summary>Reasoning, then content, then one call to get_weather whose arguments come whole in its first delta.</summary>
    public void AssertReasoningThenContentThenOneCall(string reasoning, string content, string arguments)
    {
        Assert.Equal(reasoning, Reasoning);
        Assert.Equal(content, Content);
        var first = Assert.Single(ToolCalls);
        Assert.Equal(0, first["index"]!.GetValue<int>());
        Assert.StartsWith("chatcmpl-tool-", first["id"]!.GetValue<string>(), StringComparison.Ordinal);
        Assert.Equal("get_weather", first["function"]!["name"]!.GetValue<string>());
        Assert.Equal(arguments, first["function"]!["arguments"]!.GetValue<string>());
        Assert.Equal("tool_calls", FinishReason);
        Assert.Equal(["reasoning", "content", "tool_call"], Order.Distinct().ToList());
    }
}
