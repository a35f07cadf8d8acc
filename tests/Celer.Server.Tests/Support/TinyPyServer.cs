using System.Net;
using System.Text.Json.Nodes;
using Celer.Engine;
using Celer.Engine.Execution;
using Celer.Server.Metrics;
using Celer.Server.Serving;
using Celer.Server.Tests.Integration;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.DependencyInjection;

namespace Celer.Server.Tests.Support;

/// <summary>
/// A server of its own for one test that stops, kills or throttles it: models/celer-tiny-py (or another small model) on the CPU
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
    public AdmissionControl Admission => App.Services.GetRequiredService<ServedModels>().All[0].Admission;

    /// <summary>Starts models/celer-tiny-py on the CPU behind a real server on a loopback port.</summary>
    /// <param name="speculativeConfig">--speculative-config (null: none).</param>
    /// <param name="convert">--convert: <c>embed</c> serves the model as an embedding model (null: auto, text generation).</param>
    /// <param name="model">Another model folder to serve the same way (null: models/celer-tiny-py).</param>
    /// <param name="maxModelLen">--max-model-len, capped by the model's own (null: the model's own).</param>
    /// <param name="hfOverrides">--hf-overrides (null: none).</param>
    /// <param name="servedModelName">--served-model-name (null: <see cref="ServerFixture.ModelName"/>).</param>
    /// <param name="port">The loopback port to listen on (0: an ephemeral one), so a stopped server can come back on its port.</param>
    /// <param name="kvCacheMemory">--kv-cache-memory in bytes (null: the CPU's default).</param>
    /// <param name="kvOffloadSize">--kv-offload-size in GiB (0: no host tier).</param>
    /// <param name="enableSleepMode">--enable-sleep-mode.</param>
    public static async Task<TinyPyServer> StartAsync(
        int maxPendingRequests = 64, TimeSpan? shutdownTimeout = null, string? speculativeConfig = null, string? convert = null, string? model = null,
        int? maxModelLen = MaxModelLen, string? hfOverrides = null, string? servedModelName = null, int port = 0, long? kvCacheMemory = null,
        double kvOffloadSize = 0, bool enableSleepMode = false, string? chatTemplate = null)
    {
        servedModelName ??= ServerFixture.ModelName;
        var relay = new EngineStatsRelay();
        InterceptingExecutor? executor = null;
        var loaded = ModelLoader.Load(
            new EngineArgs
            {
                Model = model ?? ServerFixture.DefaultModel, ServedModelName = servedModelName, MaxModelLen = maxModelLen,
                MaxNumSeqs = MaxNumSeqs, MaxNumBatchedTokens = 512, BlockSize = BlockSize, Seed = 0, SpeculativeConfig = speculativeConfig,
                Convert = convert ?? "auto", HfOverrides = hfOverrides, KvCacheMemoryBytes = kvCacheMemory, KvOffloadSize = kvOffloadSize,
                EnableSleepMode = enableSleepMode,
            },
            listener: relay,
            wrapExecutor: runner => executor = new InterceptingExecutor(runner));
        var options = new ServerOptions
        {
            Port = port,
            ServedModelNames = [servedModelName],
            MaxPendingRequests = maxPendingRequests,
            ChatTemplate = chatTemplate,
            ShutdownTimeout = shutdownTimeout ?? TimeSpan.FromSeconds(10),
            // The dead-engine test logs an error on purpose; keep the test output readable.
            LogLevel = Microsoft.Extensions.Logging.LogLevel.None,
        };
        var app = CelerServer.Build(options, loaded, relay);
        await app.StartAsync();
        return new TinyPyServer(app, loaded, executor!);
    }

    public HttpClient CreateClient() => new() { BaseAddress = BaseAddress, Timeout = TimeSpan.FromSeconds(30) };

    /// <summary>The engine requests finished so far: each pooling request finishes once.</summary>
    public long FinishedRequests() => Engine.Stats.RequestSuccess.Values.Sum();

    /// <summary>Runs the request and checks it put exactly <paramref name="engineRequests"/> requests through the engine.</summary>
    public async Task<JsonNode> PostCountingAsync(HttpClient client, string path, string json, int engineRequests)
    {
        var before = FinishedRequests();
        var response = await HttpApiTests.PostOkAsync(client, path, json);
        // The counter is published with the engine's stats, which may trail the outputs by a moment.
        await Poll.UntilAsync(() => FinishedRequests() - before >= engineRequests, TimeSpan.FromSeconds(10), $"{engineRequests} engine requests finish");
        Assert.Equal(engineRequests, FinishedRequests() - before);
        return response;
    }

    /// <summary>
    /// Posts a request the server must refuse with OpenAI's envelope before anything runs: the status, the param, the
    /// message (containing <paramref name="fragment"/>), <c>context_length_exceeded</c> for a too-long input, nothing left
    /// admitted or in the engine, no engine request finished. Returns the error object.
    /// </summary>
    public async Task<JsonNode> PostRefusedAsync(HttpClient client, string path, string json, HttpStatusCode status, string? param, string fragment)
    {
        var before = FinishedRequests();
        var error = await HttpApiTests.PostErrorAsync(client, path, json, status);
        Assert.Contains(fragment, error["message"]!.GetValue<string>(), StringComparison.Ordinal);
        Assert.Equal(param, error["param"]?.GetValue<string>());
        Assert.Equal(status == HttpStatusCode.NotFound ? "NotFoundError" : "BadRequestError", error["type"]!.GetValue<string>());
        if (fragment.Contains("maximum context length", StringComparison.Ordinal))
            Assert.Equal("context_length_exceeded", error["code"]!.GetValue<string>());
        Assert.Equal(0, Admission.InFlight);
        Assert.True(Engine.Stats is { NumRunning: 0, NumWaiting: 0 });
        Assert.Equal(before, FinishedRequests());
        return error;
    }

    public async ValueTask DisposeAsync()
    {
        // Never leave the loop parked on the gate: disposing the engine waits for the loop to exit.
        Executor.Open();
        await App.StopAsync();
        await App.DisposeAsync();
        await Model.DisposeAsync();
    }
}
