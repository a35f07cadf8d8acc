namespace Celer.Server.Tests.Support;

/// <summary>Reads a server-sent event stream one event at a time: each event's <c>data:</c> payload.</summary>
internal sealed class SseReader(Stream stream) : IDisposable
{
    public const string Done = "[DONE]";

    private readonly StreamReader _reader = new(stream);

    /// <summary>The next event's data, or null at the end of the stream.</summary>
    public async Task<string?> NextDataAsync(CancellationToken cancellationToken = default)
    {
        while (await _reader.ReadLineAsync(cancellationToken) is { } line)
        {
            if (line.StartsWith("data: ", StringComparison.Ordinal))
                return line["data: ".Length..];
            Assert.True(line.Length == 0, $"not an SSE line: {line}");
        }
        return null;
    }

    /// <summary>The next event as JSON (null at the end of the stream or at <c>[DONE]</c>).</summary>
    public async Task<System.Text.Json.Nodes.JsonNode?> NextAsync(CancellationToken cancellationToken = default) =>
        await NextDataAsync(cancellationToken) is { } data && data != Done ? System.Text.Json.Nodes.JsonNode.Parse(data) : null;

    /// <summary>Every event of a streamed response, <c>[DONE]</c> included.</summary>
    public static async Task<List<string>> ReadAllAsync(HttpResponseMessage response)
    {
        using var reader = new SseReader(await response.Content.ReadAsStreamAsync());
        return await reader.ReadToEndAsync();
    }

    public void Dispose() => _reader.Dispose();

    /// <summary>Every remaining event's data, <c>[DONE]</c> included.</summary>
    public async Task<List<string>> ReadToEndAsync(CancellationToken cancellationToken = default)
    {
        var events = new List<string>();
        while (await NextDataAsync(cancellationToken) is { } data)
            events.Add(data);
        return events;
    }
}
