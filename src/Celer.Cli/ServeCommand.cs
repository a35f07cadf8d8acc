using System.CommandLine;
using System.Globalization;
using Celer.Engine.Distributed;
using System.Net;
using System.Net.Sockets;
using Celer.ChatTemplates;
using Celer.Engine;
using Celer.Engine.Execution;
using Celer.Server;
using Celer.Server.Media;
using Celer.Server.Metrics;
using Celer.Server.Reasoning;
using Celer.Server.ToolCalling;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace Celer.Cli;

/// <summary>
/// <c>celer serve [MODEL]</c>: load the model and run the OpenAI-compatible server (vLLM's <c>vllm serve</c>). Several
/// models (<c>--model</c> repeated, or <c>--models-file</c>) each get an engine of their own behind the one server.
/// </summary>
internal static class ServeCommand
{
    public static Command Create()
    {
        var model = new Argument<string?>("model") { Description = "Model directory (default: the repository's models/celer-tiny-py).", Arity = ArgumentArity.ZeroOrOne };
        var models = new Option<string[]>("--model") { Description = "Another model directory to serve, each on its own engine with the engine flags given here; repeat for several (with MODEL, if given, first). Requests choose one by its name in `model`." };
        var modelsFile = new Option<string?>("--models-file") { Description = "JSON file of the models to serve and each one's settings: {\"models\": [{\"model\": \"DIR\", \"served_model_name\": \"name\", \"max_model_len\": 4096, ...}]}; keys an entry leaves out take the command line's values." };
        var host = new Option<string>("--host") { Description = "Interface to bind.", DefaultValueFactory = _ => "127.0.0.1" };
        var port = new Option<int>("--port") { Description = "Port to listen on.", DefaultValueFactory = _ => 8000 };
        var apiKey = new Option<string?>("--api-key") { Description = "Require 'Authorization: Bearer KEY' (default: env CELER_API_KEY)." };
        var chatTemplate = new Option<string?>("--chat-template") { Description = "Chat template: a file path or the template text. For a reranker, the score template each /score and /rerank pair is rendered through (messages of roles query and document)." };
        var chatTemplateContentFormat = new Option<string>("--chat-template-content-format") { Description = "How message content is handed to the chat template: string (text parts joined, image placeholders before them), openai (the list of parts, images as {\"type\": \"image\"}), or auto (detected from the template's loops).", DefaultValueFactory = _ => "auto" }.AcceptOnlyFromAmong("auto", "string", "openai");
        var interleaveMmStrings = new Option<bool>("--interleave-mm-strings") { Description = "With the string content format, put each image's placeholder where its part is among the text parts (default: all before the text)." };
        var allowedMediaDomains = new Option<string[]>("--allowed-media-domains") { Description = "Hosts whose http(s) image URLs may be fetched, redirects included (none by default: image URLs are refused; data URLs always work).", AllowMultipleArgumentsPerToken = true };
        var allowedLocalMediaPath = new Option<string?>("--allowed-local-media-path") { Description = "Directory whose files file:// image URLs may name (refused by default)." };
        var limitMmPerPrompt = new Option<string?>("--limit-mm-per-prompt") { Description = $"Most images one request may carry, as JSON: '{{\"image\": 2}}' (default {MediaOptions.DefaultImageLimit})." };
        var trustRequestChatTemplate = new Option<bool>("--trust-request-chat-template") { Description = "Accept a chat_template sent with a request (refused by default: a template is code the server runs)." };
        var generationConfig = new Option<string>("--generation-config") { Description = "auto: sampling defaults from generation_config.json; vllm: none.", DefaultValueFactory = _ => "auto" }.AcceptOnlyFromAmong("auto", "vllm");
        var enableLogRequests = new Option<bool>("--enable-log-requests") { Description = "Log a line for each request received." };
        // vLLM still accepts its older flag; requests are not logged unless --enable-log-requests is given.
        var disableLogRequests = new Option<bool>("--disable-log-requests") { Description = "Deprecated: requests are not logged by default." };
        var disableLogStats = new Option<bool>("--disable-log-stats") { Description = "Do not log throughput, queue and KV-cache stats every 10 s." };
        var logLevel = new Option<LogLevel>("--log-level") { Description = "Least severe log level written.", DefaultValueFactory = _ => LogLevel.Information };
        var shutdownTimeout = new Option<double>("--shutdown-timeout") { Description = "Seconds in-flight requests may run after SIGTERM.", DefaultValueFactory = _ => 30 };
        var allowedOrigins = new Option<string[]>("--allowed-origins") { Description = "CORS origins.", DefaultValueFactory = _ => ["*"], AllowMultipleArgumentsPerToken = true };
        var allowedMethods = new Option<string[]>("--allowed-methods") { Description = "CORS methods.", DefaultValueFactory = _ => ["*"], AllowMultipleArgumentsPerToken = true };
        var allowedHeaders = new Option<string[]>("--allowed-headers") { Description = "CORS headers.", DefaultValueFactory = _ => ["*"], AllowMultipleArgumentsPerToken = true };
        var allowCredentials = new Option<bool>("--allow-credentials") { Description = "CORS: allow credentials (needs explicit origins)." };
        var reasoningParser = new Option<string?>("--reasoning-parser") { Description = $"Return the model's thinking as reasoning_content apart from the content: {string.Join(", ", ReasoningParserRegistry.Names)}." };
        var enableAutoToolChoice = new Option<bool>("--enable-auto-tool-choice") { Description = "Read tool calls out of tool_choice \"auto\" replies (tools without a tool_choice mean auto); needs --tool-call-parser." };
        var excludeToolsWhenToolChoiceNone = new Option<bool>("--exclude-tools-when-tool-choice-none") { Description = "Leave the tools out of the chat template's prompt when a request's tool_choice is \"none\" (by default they are rendered and the model's calls are not read)." };
        var toolCallParser = new Option<string?>("--tool-call-parser") { Description = $"The model's tool-call format: {string.Join(", ", ToolParserRegistry.Names)}." };
        var maxPendingRequests = new Option<int>("--max-pending-requests") { Description = "Sequences (prompts x n) queued or running beyond which new requests get 503; also the most one request may ask for.", DefaultValueFactory = _ => 1024 };
        var headless = new Option<bool>("--headless") { Description = "Serve no API: run this node's share of the tensor-parallel ranks (--nnodes, --node-rank 1 or more) for node 0's engine at --master-addr:--master-port." };
        var engine = new EngineOptions();

        var command = new Command("serve", "Start the OpenAI-compatible API server.");
        command.Arguments.Add(model);
        foreach (var option in new Option[] { models, modelsFile, host, port, apiKey, chatTemplate, chatTemplateContentFormat, interleaveMmStrings, allowedMediaDomains, allowedLocalMediaPath, limitMmPerPrompt, trustRequestChatTemplate, generationConfig, enableLogRequests, disableLogRequests, disableLogStats, logLevel, shutdownTimeout, allowedOrigins, allowedMethods, allowedHeaders, allowCredentials, maxPendingRequests, reasoningParser, enableAutoToolChoice, excludeToolsWhenToolChoiceNone, toolCallParser, headless })
            command.Options.Add(option);
        engine.AddTo(command);

        command.SetAction(async (result, cancellationToken) => await CliRunner.RunAsync(result, async () =>
        {
            if (result.GetValue(headless))
            {
                if (result.GetValue(models) is { Length: > 0 } || result.GetValue(modelsFile) is not null)
                    throw new CliException("--headless runs one model's tensor-parallel ranks: give MODEL alone.");
                var nodeArgs = engine.ToEngineArgs(result, ModelLocator.Resolve(result.GetValue(model)));
                return await Task.Run(() => HeadlessNode.Run(nodeArgs, line => Console.Error.WriteLine($"[celer] {line}"), cancellationToken), CancellationToken.None);
            }

            var servedName = result.GetValue(engine.ServedModelName);
            var options = new ServerOptions
            {
                Host = result.GetValue(host)!,
                Port = result.GetValue(port),
                ApiKey = result.GetValue(apiKey) ?? NullIfEmpty(Environment.GetEnvironmentVariable("CELER_API_KEY")),
                ServedModelNames = servedName is null ? [] : [servedName],
                ChatTemplate = ReadChatTemplate(result.GetValue(chatTemplate)),
                ChatTemplateContentFormat = result.GetValue(chatTemplateContentFormat) switch
                {
                    "string" => ChatTemplateContentFormat.String,
                    "openai" => ChatTemplateContentFormat.OpenAI,
                    _ => null,
                },
                InterleaveMmStrings = result.GetValue(interleaveMmStrings),
                Media = new MediaOptions
                {
                    AllowedMediaDomains = result.GetValue(allowedMediaDomains) ?? [],
                    AllowedLocalMediaPath = result.GetValue(allowedLocalMediaPath),
                    ImageLimitPerPrompt = result.GetValue(limitMmPerPrompt) is { } limit ? MediaOptions.ParseImageLimit(limit) : MediaOptions.DefaultImageLimit,
                    ImageFetchTimeout = ImageFetchTimeout(Environment.GetEnvironmentVariable("CELER_IMAGE_FETCH_TIMEOUT")),
                },
                TrustRequestChatTemplate = result.GetValue(trustRequestChatTemplate),
                GenerationConfig = result.GetValue(generationConfig)!,
                EnableLogRequests = result.GetValue(enableLogRequests) && !result.GetValue(disableLogRequests),
                DisableLogStats = result.GetValue(disableLogStats),
                LogLevel = result.GetValue(logLevel),
                ShutdownTimeout = TimeSpan.FromSeconds(result.GetValue(shutdownTimeout)),
                AllowedOrigins = result.GetValue(allowedOrigins)!,
                AllowedMethods = result.GetValue(allowedMethods)!,
                AllowedHeaders = result.GetValue(allowedHeaders)!,
                AllowCredentials = result.GetValue(allowCredentials),
                MaxPendingRequests = result.GetValue(maxPendingRequests),
                MaxLogprobs = result.GetValue(engine.MaxLogprobs),
                ReasoningParser = result.GetValue(reasoningParser),
                EnableAutoToolChoice = result.GetValue(enableAutoToolChoice),
                ExcludeToolsWhenToolChoiceNone = result.GetValue(excludeToolsWhenToolChoiceNone),
                ToolCallParser = result.GetValue(toolCallParser),
            };

            // Parser names are checked before the model loads; whether its tokenizer has their markers, once it has.
            options.CheckChatParsers();
            options.Media.Check();
            var modelPaths = ModelPaths(result.GetValue(model), result.GetValue(models) ?? [], result.GetValue(modelsFile));
            if (result.GetValue(modelsFile) is { } file)
            {
                if (servedName is not null)
                    throw new CliException("--served-model-name names one model; with --models-file, name each in the file (\"served_model_name\").");
                var entries = ModelsFile.Read(file, path => engine.ToEngineArgs(result, path), options);
                EnsurePortFree(options.Host, options.Port);
                return await ServeSeveralAsync(options, [.. entries.Select(e => (e.EngineArgs, e.Options))], cancellationToken);
            }

            var engineArgs = engine.ToEngineArgs(result, modelPaths[0]);
            if (modelPaths.Count > 1)
            {
                if (servedName is not null)
                    throw new CliException("--served-model-name names one model; to name each of several, use --models-file (\"served_model_name\" per model).");
                EnsurePortFree(options.Host, options.Port);
                return await ServeSeveralAsync(options, [.. modelPaths.Select(path => (engineArgs with { Model = path }, options))], cancellationToken);
            }

            var modelPath = modelPaths[0];
            EnsurePortFree(options.Host, options.Port);
            await Console.Error.WriteLineAsync($"[celer] loading {modelPath} on {engineArgs.Device}");
            // The engine reports step and request stats to whoever it was built with; the server's metrics attach here.
            var statsRelay = new EngineStatsRelay();
            var loaded = ModelLoader.Load(engineArgs, new LoadProgressReporter(), statsRelay, log: LoadProgressReporter.Log);
            await using (loaded)
            {
                var app = CelerServer.Build(options, loaded, statsRelay);
                await app.StartAsync(cancellationToken);
                Console.WriteLine($"Serving model '{servedName ?? loaded.ModelName}' (max_model_len {loaded.MaxModelLen}) at {CelerServer.GetBoundAddress(app)}");
                await app.WaitForShutdownAsync(CancellationToken.None);
            }
            return 0;
        }));
        return command;
    }

    /// <summary>
    /// The models to serve: MODEL then each --model, or the default model when none is given; none with --models-file,
    /// which names them itself (MODEL or --model with it is refused).
    /// </summary>
    private static IReadOnlyList<string> ModelPaths(string? positional, string[] repeated, string? modelsFile)
    {
        string[] given = [.. positional is null ? [] : new[] { positional }, .. repeated];
        if (modelsFile is not null)
        {
            return given.Length == 0
                ? []
                : throw new CliException("--models-file names the models to serve: give MODEL and --model without it, or list them in the file.");
        }

        return given.Length == 0 ? [ModelLocator.Resolve(null)] : given;
    }

    /// <summary>
    /// Loads every model (in order; a failure disposes the ones already loaded), each on its own engine with its own
    /// stats relay, and serves them all until shutdown. Two models under one name are refused before anything loads.
    /// </summary>
    private static async Task<int> ServeSeveralAsync(ServerOptions options, IReadOnlyList<(EngineArgs Args, ServerOptions Options)> models, CancellationToken cancellationToken)
    {
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (var (args, modelOptions) in models)
        {
            // ModelLoader's rule: the served name, else the directory's name.
            IEnumerable<string> names = modelOptions.ServedModelNames is { Count: > 0 } given
                ? given
                : [args.ServedModelName ?? Path.GetFileName(Path.TrimEndingDirectorySeparator(Path.GetFullPath(args.Model)))];
            foreach (var name in names)
            {
                if (!seen.Add(name))
                    throw new CliException($"Two models are served as '{name}'; give each its own name (\"served_model_name\" in --models-file).");
            }
        }

        var loaded = new List<ModelToServe>(models.Count);
        try
        {
            for (int i = 0; i < models.Count; i++)
            {
                var (args, modelOptions) = models[i];
                await Console.Error.WriteLineAsync($"[celer] loading {args.Model} on {args.Device}");
                var statsRelay = new EngineStatsRelay();
                var model = ModelLoader.Load(args, new LoadProgressReporter(), statsRelay, log: LoadProgressReporter.Log);
                loaded.Add(new ModelToServe(model, modelOptions, statsRelay));
                // Sleep-mode models on a GPU take turns: each sleeps once loaded, so the next sizes its KV cache on a free
                // card, and wakes on its first request (others that are idle sleep then if it needs their memory).
                if (model.Engine.SupportsSleep && args.Device.Equals("cuda", StringComparison.OrdinalIgnoreCase) && i + 1 < models.Count)
                {
                    await model.Engine.SleepAsync(1);
                    await Console.Error.WriteLineAsync($"[celer] {args.Model} sleeps until its first request (--enable-sleep-mode)");
                }
            }

            var app = CelerServer.Build(options, loaded);
            await app.StartAsync(cancellationToken);
            var served = string.Join(", ", loaded.Select(m => $"'{(m.Options.ServedModelNames.Count > 0 ? m.Options.ServedModelNames[0] : m.Model.ModelName)}' (max_model_len {m.Model.MaxModelLen})"));
            Console.WriteLine($"Serving models {served} at {CelerServer.GetBoundAddress(app)}");
            await app.WaitForShutdownAsync(CancellationToken.None);
            return 0;
        }
        finally
        {
            foreach (var model in loaded)
                await model.Model.DisposeAsync();
        }
    }

    /// <summary>vLLM's rule: a path to an existing file is read; anything else is the template itself.</summary>
    internal static string? ReadChatTemplate(string? value) =>
        value is null ? null : File.Exists(value) ? File.ReadAllText(value) : value;

    /// <summary>
    /// A busy port is found before the model loads (as vLLM checks it), with one line instead of Kestrel's stack trace
    /// after a load that may take minutes. The probe binds as Kestrel does (SO_REUSEADDR), so only a listener fails it.
    /// </summary>
    private static void EnsurePortFree(string host, int port)
    {
        if (port == 0)
        {
            return;
        }

        IPAddress address = host is "localhost" ? IPAddress.Loopback : IPAddress.TryParse(host, out IPAddress? parsed) ? parsed : IPAddress.Any;
        using var probe = new Socket(address.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        probe.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.ReuseAddress, true);
        try
        {
            probe.Bind(new IPEndPoint(address, port));
            probe.Listen();
        }
        catch (SocketException e) when (e.SocketErrorCode is SocketError.AddressAlreadyInUse or SocketError.AccessDenied)
        {
            throw new CliException(e.SocketErrorCode == SocketError.AccessDenied
                ? $"--port {port}: binding {host}:{port} is not permitted for this user; pick a port above 1023."
                : $"--port {port}: {host}:{port} is already in use (another server?); stop it or pick another port.");
        }
    }

    private static string? NullIfEmpty(string? value) => string.IsNullOrEmpty(value) ? null : value;

    /// <summary>Env <c>CELER_IMAGE_FETCH_TIMEOUT</c>, seconds (vLLM's <c>VLLM_IMAGE_FETCH_TIMEOUT</c>); unset: 5.</summary>
    internal static TimeSpan ImageFetchTimeout(string? seconds) =>
        string.IsNullOrEmpty(seconds) ? new MediaOptions().ImageFetchTimeout
        : double.TryParse(seconds, NumberStyles.Float, CultureInfo.InvariantCulture, out var value) && value > 0 && value <= TimeSpan.MaxValue.TotalSeconds
            ? TimeSpan.FromSeconds(value)
            : throw new CliException($"CELER_IMAGE_FETCH_TIMEOUT must be a number of seconds above 0, not '{seconds}'.");
}
