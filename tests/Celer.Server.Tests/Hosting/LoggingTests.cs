using Celer.Engine;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Celer.Server.Hosting;

namespace Celer.Server.Tests.Hosting;

/// <summary>What the server logs by default: no per-request ASP.NET lines, and vLLM's periodic stats line.</summary>
public sealed class LoggingTests
{
    private static ILoggerFactory Factory(LogLevel level)
    {
        var services = new ServiceCollection();
        services.AddLogging(logging =>
        {
            logging.AddProvider(new EverythingProvider());
            CelerServer.ConfigureLogging(logging, new ServerOptions { LogLevel = level });
        });
        return services.BuildServiceProvider().GetRequiredService<ILoggerFactory>();
    }

    /// <summary>A sink that would take every line: what reaches it is decided by the server's filter rules alone.</summary>
    private sealed class EverythingProvider : ILoggerProvider
    {
        public ILogger CreateLogger(string categoryName) => new Sink();

        public void Dispose()
        {
        }

        private sealed class Sink : ILogger
        {
            public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

            public bool IsEnabled(LogLevel logLevel) => true;

            public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
            {
            }
        }
    }

    // The categories ASP.NET writes its "Request starting" / "Executing endpoint" / "Request finished" lines under.
    private static readonly string[] AspNetCategories =
        ["Microsoft.AspNetCore.Hosting.Diagnostics", "Microsoft.AspNetCore.Routing.EndpointMiddleware", "Microsoft.AspNetCore.Http.Result.JsonResult"];

    [Fact]
    public void AspNet_request_lines_are_off_at_information_and_celer_lines_are_on()
    {
        ILoggerFactory factory = Factory(LogLevel.Information);
        foreach (string category in AspNetCategories)
        {
            Assert.False(factory.CreateLogger(category).IsEnabled(LogLevel.Information), category);
            Assert.True(factory.CreateLogger(category).IsEnabled(LogLevel.Warning), category);
        }

        Assert.True(factory.CreateLogger(typeof(StatsLogger).FullName!).IsEnabled(LogLevel.Information));
    }

    [Fact]
    public void Asking_for_debug_shows_aspnet_lines_too()
    {
        ILoggerFactory factory = Factory(LogLevel.Debug);
        Assert.All(AspNetCategories, category => Assert.True(factory.CreateLogger(category).IsEnabled(LogLevel.Debug), category));
    }

    [Fact]
    public void The_stats_line_reports_the_interval_and_stays_silent_when_idle()
    {
        var idle = new EngineStats(0, 0, 0f, 100, 40, 0, 1000, 500, 10, new Dictionary<FinishReason, long>());
        Assert.Null(StatsLogger.Describe(idle, idle, TimeSpan.FromSeconds(10)));

        var busy = idle with { NumRunning = 3, NumWaiting = 2, KvCacheUsage = 0.25f, PrefixCacheQueries = 300, PrefixCacheHits = 90, PromptTokens = 1500, GenerationTokens = 700 };
        Assert.Equal(
            "Avg prompt throughput: 50.0 tokens/s, Avg generation throughput: 20.0 tokens/s, Running: 3 reqs, Waiting: 2 reqs, KV cache usage: 25.0%, Prefix cache hit rate: 25.0%",
            StatsLogger.Describe(idle, busy, TimeSpan.FromSeconds(10)));
    }
}
