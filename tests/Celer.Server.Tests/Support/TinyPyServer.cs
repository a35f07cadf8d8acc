using Celer.Backends.Cpu;
using Celer.Engine;
using Celer.Engine.Execution;
using Celer.Models.Architectures;
using Celer.Models.Config;
using Celer.Models.Weights;
using Celer.Server.Metrics;
using Celer.Server.Serving;
using Celer.Server.Tests.Integration;
using Celer.Tokenization;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.DependencyInjection;

namespace Celer.Server.Tests.Support;

/// <summary>
/// A server of its own for one test that stops, kills or throttles it: models/celer-tiny-py on the CPU
/// behind an <see cref="InterceptingExecutor"/>, on an ephemeral loopback port. The engine is built
/// from the public parts (config, weights, <see cref="ModelRunner"/>, <see cref="AsyncLlmEngine"/>)
/// because <see cref="ModelLoader"/> has no place to slip the executor in.
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
    public static async Task<TinyPyServer> StartAsync(int maxPendingRequests = 64, TimeSpan? shutdownTimeout = null)
    {
        string dir = ServerFixture.DefaultModel;
        var args = new EngineArgs { Model = dir, MaxModelLen = MaxModelLen, MaxNumSeqs = MaxNumSeqs, MaxNumBatchedTokens = 512, BlockSize = BlockSize, Seed = 0 };
        var config = ModelConfig.Load(dir);
        var tokenizer = Tokenizer.FromFile(Path.Combine(dir, "tokenizer.json"));
        var backend = new CpuBackend();
        var weights = SafetensorsWeightSource.Open(dir);
        var decoder = new DecoderModel(config, weights, backend, maxNumTokens: 512, maxLogitsRows: MaxNumSeqs);
        // Every sequence at full length, plus the null block.
        var numKvBlocks = MaxNumSeqs * (MaxModelLen / BlockSize) + 1;
        var executor = new InterceptingExecutor(new ModelRunner(decoder, backend, numKvBlocks, BlockSize, config.EosTokenIds, args.Seed, weights));
        var relay = new EngineStatsRelay();
        var engine = new AsyncLlmEngine(args, executor, tokenizer, new EngineModelInfo(config.VocabSize, MaxModelLen, config.EosTokenIds.Count > 0 ? config.EosTokenIds[0] : null, config.EosTokenIds), relay);
        var model = new LoadedModel
        {
            Engine = engine,
            Tokenizer = tokenizer,
            TokenizerConfig = TokenizerConfig.Load(dir),
            ModelName = ServerFixture.ModelName,
            ModelPath = dir,
            MaxModelLen = MaxModelLen,
            ModelConfig = config,
            GenerationConfig = GenerationConfig.Load(dir),
            DeviceName = backend.Name,
            NumKvBlocks = numKvBlocks,
            BlockSize = BlockSize,
            EnablePrefixCaching = args.EnablePrefixCaching,
        };
        var options = new ServerOptions
        {
            Port = 0,
            ServedModelNames = [ServerFixture.ModelName],
            MaxPendingRequests = maxPendingRequests,
            ShutdownTimeout = shutdownTimeout ?? TimeSpan.FromSeconds(10),
            DisableLogRequests = true,
            // The dead-engine test logs an error on purpose; keep the test output readable.
            LogLevel = Microsoft.Extensions.Logging.LogLevel.None,
        };
        var app = CelerServer.Build(options, model, relay);
        await app.StartAsync();
        return new TinyPyServer(app, model, executor);
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
