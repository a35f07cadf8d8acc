using System.CommandLine;
using System.Net;
using System.Net.Sockets;
using Celer.Engine;
using Celer.Engine.Execution;
using Celer.Server;
using Celer.Server.Metrics;
using Celer.Server.Reasoning;
using Celer.Server.ToolCalling;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace Celer.Cli;

/// <summary><c>celer serve [MODEL]</c>: load the model and run the OpenAI-compatible server (vLLM's <c>vllm serve</c>).</summary>
internal static class ServeCommand
{
    public static Command Create()
    {
        var model = new Argument<string?>("model") { Description = "Model directory (default: the repository's models/celer-tiny-py).", Arity = ArgumentArity.ZeroOrOne };
        var host = new Option<string>("--host") { Description = "Interface to bind.", DefaultValueFactory = _ => "127.0.0.1" };
        var port = new Option<int>("--port") { Description = "Port to listen on.", DefaultValueFactory = _ => 8000 };
        var apiKey = new Option<string?>("--api-key") { Description = "Require 'Authorization: Bearer KEY' (default: env CELER_API_KEY)." };
        var chatTemplate = new Option<string?>("--chat-template") { Description = "Chat template: a file path or the template text." };
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
        var engine = new EngineOptions();

        var command = new Command("serve", "Start the OpenAI-compatible API server.");
        command.Arguments.Add(model);
        foreach (var option in new Option[] { host, port, apiKey, chatTemplate, trustRequestChatTemplate, generationConfig, enableLogRequests, disableLogRequests, disableLogStats, logLevel, shutdownTimeout, allowedOrigins, allowedMethods, allowedHeaders, allowCredentials, maxPendingRequests, reasoningParser, enableAutoToolChoice, excludeToolsWhenToolChoiceNone, toolCallParser })
            command.Options.Add(option);
        engine.AddTo(command);

        command.SetAction(async (result, cancellationToken) => await CliRunner.RunAsync(result, async () =>
        {
            var modelPath = ModelLocator.Resolve(result.GetValue(model));
            var engineArgs = engine.ToEngineArgs(result, modelPath);
            var servedName = result.GetValue(engine.ServedModelName);
            var options = new ServerOptions
            {
                Host = result.GetValue(host)!,
                Port = result.GetValue(port),
                ApiKey = result.GetValue(apiKey) ?? NullIfEmpty(Environment.GetEnvironmentVariable("CELER_API_KEY")),
                ServedModelNames = servedName is null ? [] : [servedName],
                ChatTemplate = ReadChatTemplate(result.GetValue(chatTemplate)),
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
                MaxLogprobs = engineArgs.MaxLogprobs,
                ReasoningParser = result.GetValue(reasoningParser),
                EnableAutoToolChoice = result.GetValue(enableAutoToolChoice),
                ExcludeToolsWhenToolChoiceNone = result.GetValue(excludeToolsWhenToolChoiceNone),
                ToolCallParser = result.GetValue(toolCallParser),
            };

            // Parser names are checked before the model loads; whether its tokenizer has their markers, once it has.
            options.CheckChatParsers();
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
}
