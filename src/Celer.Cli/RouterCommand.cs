using System.CommandLine;
using Celer.Router;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace Celer.Cli;

/// <summary><c>celer router --backend URL[,model] ...</c>: an OpenAI-compatible front over several servers (vLLM production-stack's router).</summary>
internal static class RouterCommand
{
    public static Command Create()
    {
        var backends = new Option<string[]>("--backend")
        {
            Description = "A backend server: URL, or URL,model when its model name should not be read from its /v1/models. Repeat for each.",
            Required = true,
            AllowMultipleArgumentsPerToken = false,
        };
        var routingLogic = new Option<string>("--routing-logic") { Description = "roundrobin: each model's backends in turn; session: consistent hashing on --session-key.", DefaultValueFactory = _ => "roundrobin" }
            .AcceptOnlyFromAmong("roundrobin", "session");
        var sessionKey = new Option<string>("--session-key") { Description = "Header whose value keeps a session on one backend (session routing).", DefaultValueFactory = _ => "x-user-id" };
        var host = new Option<string>("--host") { Description = "Interface to bind.", DefaultValueFactory = _ => "127.0.0.1" };
        var port = new Option<int>("--port") { Description = "Port to listen on.", DefaultValueFactory = _ => 8001 };
        var healthCheckInterval = new Option<double>("--health-check-interval") { Description = "Seconds between health checks of each backend.", DefaultValueFactory = _ => 10 };
        var logLevel = new Option<LogLevel>("--log-level") { Description = "Least severe log level written.", DefaultValueFactory = _ => LogLevel.Information };

        var command = new Command("router", "Route OpenAI API requests over several Celer or vLLM servers.");
        foreach (var option in new Option[] { backends, routingLogic, sessionKey, host, port, healthCheckInterval, logLevel })
            command.Options.Add(option);

        command.SetAction(async (result, cancellationToken) => await CliRunner.RunAsync(result, async () =>
        {
            var interval = result.GetValue(healthCheckInterval);
            if (!(interval > 0))
                throw new CliException($"--health-check-interval {interval}: must be a positive number of seconds.");
            var options = new RouterOptions
            {
                Backends = [.. result.GetValue(backends)!.Select(BackendSpec.Parse)],
                RoutingLogic = result.GetValue(routingLogic) == "session" ? RoutingLogic.Session : RoutingLogic.RoundRobin,
                SessionKey = result.GetValue(sessionKey)!,
                Host = result.GetValue(host)!,
                Port = result.GetValue(port),
                HealthCheckInterval = TimeSpan.FromSeconds(interval),
                LogLevel = result.GetValue(logLevel),
            };
            var app = CelerRouter.Build(options);
            await app.StartAsync(cancellationToken);
            Console.WriteLine($"Routing ({result.GetValue(routingLogic)}) over {options.Backends.Count} backends at {CelerRouter.GetBoundAddress(app)}");
            await app.WaitForShutdownAsync(CancellationToken.None);
            return 0;
        }));
        return command;
    }
}
