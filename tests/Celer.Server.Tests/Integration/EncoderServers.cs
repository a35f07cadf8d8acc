using System.Collections.Concurrent;
using System.Text.Json.Nodes;
using Celer.Server.Tests.Support;
using Celer.TestSupport;

namespace Celer.Server.Tests.Integration;

/// <summary>
/// Real servers over the encoder fixtures (tests/fixtures/encoders/NAME, written by
/// tools/reference/make_encoder_fixtures.py: tiny random BERT and XLM-R cross-encoders and classifiers with their
/// tokenizers and reference.json), each started on its first use and shared by the class's tests. A test of a fixture
/// that is not in the checkout is skipped, saying which; <c>CELER_ENCODER_FIXTURES</c> points at another folder of them
/// (the script's output, before it is copied in).
/// </summary>
public sealed class EncoderServers : IAsyncLifetime
{
    /// <summary>--max-model-len of the servers: the BERT fixtures' 512 positions (XLM-R's 514 past its offset of 2).</summary>
    public const int MaxModelLen = 512;

    private readonly ConcurrentDictionary<string, Lazy<Task<TinyPyServer>>> _servers = new(StringComparer.Ordinal);

    public static string Root => Environment.GetEnvironmentVariable("CELER_ENCODER_FIXTURES") is { Length: > 0 } root
        ? root
        : Path.Combine(RepoPaths.Fixtures, "encoders");

    /// <summary>The fixture's folder; skips the test when it is missing.</summary>
    public static string Require(string name)
    {
        var dir = Path.Combine(Root, name);
        Assert.SkipUnless(File.Exists(Path.Combine(dir, "config.json")) && File.Exists(Path.Combine(dir, "tokenizer.json")),
            $"The encoder fixture {name} is not in {Root} yet (tools/reference/make_encoder_fixtures.py writes it).");
        return dir;
    }

    /// <summary>The fixture's reference.json, or null when the folder has none.</summary>
    public static JsonNode? Reference(string name)
    {
        var path = Path.Combine(Require(name), "reference.json");
        return File.Exists(path) ? JsonNode.Parse(File.ReadAllText(path)) : null;
    }

    /// <summary>The fixture's labels, by class id (config.json's <c>id2label</c>).</summary>
    public static string[] Labels(string name)
    {
        var config = JsonNode.Parse(File.ReadAllText(Path.Combine(Require(name), "config.json")))!;
        var labels = config["id2label"]!.AsObject();
        return [.. Enumerable.Range(0, labels.Count).Select(i => labels[i.ToString(System.Globalization.CultureInfo.InvariantCulture)]!.GetValue<string>())];
    }

    /// <summary>The fixture served on the CPU with <see cref="MaxModelLen"/> (started once, on the first call).</summary>
    internal async Task<TinyPyServer> ServerAsync(string name)
    {
        var dir = Require(name);
        var server = await _servers.GetOrAdd(name, _ => new Lazy<Task<TinyPyServer>>(() => TinyPyServer.StartAsync(model: dir, maxModelLen: MaxModelLen))).Value;
        Assert.Equal(MaxModelLen, server.Model.MaxModelLen);
        return server;
    }

    public ValueTask InitializeAsync() => ValueTask.CompletedTask;

    public async ValueTask DisposeAsync()
    {
        foreach (var server in _servers.Values.Where(s => s.IsValueCreated))
        {
            // A server that failed to start failed its tests already; there is nothing to stop.
            if (server.Value.IsCompletedSuccessfully)
                await (await server.Value).DisposeAsync();
        }
    }
}
