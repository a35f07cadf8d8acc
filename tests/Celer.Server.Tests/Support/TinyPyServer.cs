using Celer.Engine;
using Celer.Engine.Execution;
using Celer.Server.Metrics;
using Celer.Server.Serving;
using Celer.Server.Tests.Integration;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.DependencyInjection;

namespace Celer.Server.Tests.Support;

/// <summary>
/// A server of its own for one test that stops, kills or throttles it: models/celer-tiny-py on the CPU
/// behind an <see cref="InterceptingExecutor"/> that <see cref="ModelLoader"/> wraps around the model
/// runner, on an ephemeral loopback port.
/// </summary>
internal sealed class TinyPyServer : IAsyncDisposable
{
    public const int MaxModelLen = 256;
    public const int MaxNumSeqs = 8;
    private const int BlockSize = 16;

    private TinyPyServer(WebApplication app, LoadedModel model, InterceptingExecutor executor)
    {
        App = app;
        Model = model;
        Executor = executor;
        BaseAddress = CelerServer.GetBoundAddress(app);
    }

    public WebApplication App { get; }
    public LoadedModel Model { get; }
    public AsyncLlmEngine Engine => Model.Engine;
    public InterceptingExecutor Executor { get; }
    public Uri BaseAddress { get; }

    /// <summary>The server's gate: how many requests it has admitted and not yet answered in full.</summary>
    public AdmissionControl Admission => App.Services.GetRequiredService<AdmissionControl>();

    /// <summary>Starts models/celer-tiny-py on the CPU behind a real server on a loopback port.</summary>
    /// <param name="speculativeConfig">--speculative-config (null: none).</param>
    /// <param name="convert">--convert: <c>embed</c> serves the model as an embedding model (null: auto, text generation).</param>
    public static async Task<TinyPyServer> StartAsync(int maxPendingRequests = 64, TimeSpan? shutdownTimeout = null, string? speculativeConfig = null, string? convert = null)
    {
        var relay = new EngineStatsRelay();
        InterceptingExecutor? executor = null;
        var model = ModelLoader.Load(
            new EngineArgs
            {
                Model = ServerFixture.DefaultModel, ServedModelName = ServerFixture.ModelName, MaxModelLen = MaxModelLen,
                MaxNumSeqs = MaxNumSeqs, MaxNumBatchedTokens = 512, BlockSize = BlockSize, Seed = 0, SpeculativeConfig = speculativeConfig,
                Convert = convert ?? "auto",
            },
            listener: relay,
            wrapExecutor: runner => executor = new InterceptingExecutor(runner));
        var options = new ServerOptions
        {
            Port = 0,
            ServedModelNames = [ServerFixture.ModelName],
            MaxPendingRequests = maxPendingRequests,
            ShutdownTimeout = shutdownTimeout ?? TimeSpan.FromSeconds(10),
            // The dead-engine test logs an error on purpose; keep the test output readable.
            LogLevel = Microsoft.Extensions.Logging.LogLevel.None,
        };
        var app = CelerServer.Build(options, model, relay);
        await app.StartAsync();
        return new TinyPyServer(app, model, executor!);
    }

    public HttpClient CreateClient() => new() { BaseAddress = BaseAddress, Timeout = TimeSpan.FromSeconds(30) };

    public async ValueTask DisposeAsync()
    {
        // Never leave the loop parked on the gate: disposing the engine waits for the loop to exit.
        Executor.Open();
        await App.StopAsync();
        await App.DisposeAsync();
        await Model.DisposeAsync();
    }
}
