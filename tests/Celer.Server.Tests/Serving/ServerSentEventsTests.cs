using System.Text;
using System.Text.Json;
using Celer.Server.Protocol;
using Celer.Server.Serving;

namespace Celer.Server.Tests.Serving;

public class ServerSentEventsTests
{
    [Fact]
    public void A_chunk_is_one_data_line_and_a_blank_line()
    {
        var chunk = new ChatCompletionChunk("chatcmpl-1", 1700000000, "m",
            [new ChatStreamChoice(0, new ChatDelta("assistant", ""), null, null)]);
        var frame = Encoding.UTF8.GetString(ServerSentEvents.Frame(chunk, ServerJsonContext.Wire.ChatCompletionChunk));

        Assert.Equal(
            "data: {\"id\":\"chatcmpl-1\",\"created\":1700000000,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"logprobs\":null,\"finish_reason\":null}],\"object\":\"chat.completion.chunk\"}\n\n",
            frame);
    }

    [Fact]
    public void Quotes_angle_brackets_and_non_ascii_text_are_written_as_they_are()
    {
        var chunk = new CompletionStreamResponse("cmpl-1", 1, "m", [new CompletionChoice(0, "if n < 0: \"Zürich\" é", null, null, null)]);
        var frame = Encoding.UTF8.GetString(ServerSentEvents.Frame(chunk, ServerJsonContext.Wire.CompletionStreamResponse));
        // Characters outside the BMP (emoji) still go out as surrogate-pair escapes: System.Text.Json always escapes them.
        Assert.Contains("\"text\":\"if n < 0: \\\"Zürich\\\" é\"", frame, StringComparison.Ordinal);
    }

    [Fact]
    public void Newlines_in_content_are_escaped_so_an_event_never_splits()
    {
        var chunk = new CompletionStreamResponse("cmpl-1", 1, "m", [new CompletionChoice(0, "a\n\nb\r\n", null, "stop", null)]);
        var frame = Encoding.UTF8.GetString(ServerSentEvents.Frame(chunk, ServerJsonContext.Wire.CompletionStreamResponse));
        Assert.StartsWith("data: ", frame, StringComparison.Ordinal);
        Assert.EndsWith("\n\n", frame, StringComparison.Ordinal);
        Assert.DoesNotContain('\n', frame[..^2]);
        Assert.DoesNotContain('\r', frame);
        using var parsed = JsonDocument.Parse(frame["data: ".Length..^2]);
        Assert.Equal("a\n\nb\r\n", parsed.RootElement.GetProperty("choices")[0].GetProperty("text").GetString());
        Assert.Equal("text_completion", parsed.RootElement.GetProperty("object").GetString());
        Assert.False(parsed.RootElement.TryGetProperty("usage", out _));
    }

    [Fact]
    public void The_usage_chunk_has_no_choices_and_the_usage_totals()
    {
        var chunk = new ChatCompletionChunk("chatcmpl-1", 1, "m", [], new UsageInfo(5, 12, 7));
        var json = Encoding.UTF8.GetString(ServerSentEvents.Frame(chunk, ServerJsonContext.Wire.ChatCompletionChunk));
        Assert.Contains("\"choices\":[]", json);
        Assert.Contains("\"usage\":{\"prompt_tokens\":5,\"total_tokens\":12,\"completion_tokens\":7}", json);
    }
}
