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

    /// <summary>Why the tests cannot run here, or null when the server is up.</summary>
    public string? SkipReason { get; private set; }

    public static string? FindDefaultModel()
    {
        var repositoryRoot = typeof(ServerFixture).Assembly.GetCustomAttributes<AssemblyMetadataAttribute>()
            .FirstOrDefault(a => a.Key == "RepositoryRoot")?.Value;
        foreach (var start in new[] { repositoryRoot, AppContext.BaseDirectory, Directory.GetCurrentDirectory() })
        {
            for (var dir = start is null ? null : new DirectoryInfo(start); dir is not null; dir = dir.Parent)
            {
                var candidate = Path.Combine(dir.FullName, "models", "celer-tiny-py");
                if (File.Exists(Path.Combine(candidate, "tokenizer.json")))
                    return candidate;
            }
        }
        return null;
    }

    public async Task InitializeAsync()
    {
        var modelPath = FindDefaultModel();
        if (modelPath is null)
        {
            SkipReason = "models/celer-tiny-py is not in this checkout.";
            return;
        }
        var relay = new EngineStatsRelay();
        // Small limits keep the CPU model fast and make the context-length cases cheap to reach.
        _model = ModelLoader.Load(new EngineArgs { Model = modelPath, MaxModelLen = 256, MaxNumSeqs = 16, Seed = 0 }, listener: relay);
        var options = new ServerOptions
        {
            Port = 0,
            ApiKey = ApiKey,
            ServedModelNames = [ModelName],
            MaxPendingRequests = 64,
            MaxRequestBodyBytes = 256 * 1024,
            MaxRequestHeadersTotalBytes = 16 * 1024,
            DisableLogRequests = true,
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

    public async Task DisposeAsync()
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
