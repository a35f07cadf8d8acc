using Celer.TestSupport;
using System.Reflection;
using Celer.Engine;
using Celer.Engine.Execution;
using Celer.Server.Metrics;
using Microsoft.AspNetCore.Builder;

namespace Celer.Server.Tests.Integration;

/// <summary>
/// A real server on an ephemeral loopback port, serving the repository's default model
/// (<c>models/celer-tiny-py</c>, which ships a tokenizer and chat template) through the real engine
/// on the CPU. Tests skip when the model is not in the checkout.
/// </summary>
public sealed class ServerFixture : IAsyncLifetime
{
    public const string ApiKey = "test-key-7f3a";
    public const string ModelName = "celer-tiny";

    private LoadedModel? _model;
    private WebApplication? _app;

    public Uri BaseAddress { get; private set; } = null!;
    public int MaxModelLen => _model!.MaxModelLen;

    public int VocabSize => _model!.Engine.VocabSize;

    /// <summary>The model that ships with the repository; the server tests need it, so its absence fails them.</summary>
    public static string DefaultModel => File.Exists(Path.Combine(RepoPaths.DefaultModel, "tokenizer.json"))
        ? RepoPaths.DefaultModel
        : throw new InvalidOperationException($"The default model is missing from this checkout ({RepoPaths.DefaultModel}).");

    public async ValueTask InitializeAsync()
    {
        var modelPath = DefaultModel;
        var relay = new EngineStatsRelay();
        // Small limits keep the CPU model fast and make the context-length cases cheap to reach.
        _model = ModelLoader.Load(new EngineArgs { Model = modelPath, MaxModelLen = 256, MaxNumSeqs = 16, Seed = 0 }, listener: relay);
        var options = new ServerOptions
        {
            Port = 0,
            ApiKey = ApiKey,
            ServedModelNames = [ModelName],
            MaxPendingRequests = 64,
            // The sandbox cases send their own templates (BadInputTests #18).
            TrustRequestChatTemplate = true,
            MaxRequestBodyBytes = 256 * 1024,
            MaxRequestHeadersTotalBytes = 16 * 1024,
            LogLevel = Microsoft.Extensions.Logging.LogLevel.Warning,
        };
        _app = CelerServer.Build(options, _model, relay);
        await _app.StartAsync();
        BaseAddress = CelerServer.GetBoundAddress(_app);
    }

    public HttpClient CreateClient(bool authorized = true)
    {
        var client = new HttpClient { BaseAddress = BaseAddress, Timeout = TimeSpan.FromSeconds(60) };
        if (authorized)
            client.DefaultRequestHeaders.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", ApiKey);
        return client;
    }

    public async ValueTask DisposeAsync()
    {
        if (_app is not null)
        {
            await _app.StopAsync();
            await _app.DisposeAsync();
        }
        if (_model is not null)
            await _model.DisposeAsync();
    }
}

[CollectionDefinition(Name)]
public sealed class ServerCollection : ICollectionFixture<ServerFixture>
{
    public const string Name = "server";
}
