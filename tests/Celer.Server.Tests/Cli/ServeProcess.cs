using System.Collections.Concurrent;
using System.Diagnostics;

namespace Celer.Server.Tests.Cli;

/// <summary>
/// <c>celer serve</c> in its own process, as an operator runs it: started with the given arguments and returned once it
/// prints "Serving model '…' (…) at URL"; stderr and the stdout lines before that one are kept in <see cref="Log"/>.
/// Disposing kills it if it is still running.
/// </summary>
internal sealed class ServeProcess : IAsyncDisposable
{
    private ServeProcess(Process process, Uri baseAddress, ConcurrentQueue<string> log)
    {
        Process = process;
        BaseAddress = baseAddress;
        Log = log;
    }

    public Process Process { get; }

    public Uri BaseAddress { get; }

    public ConcurrentQueue<string> Log { get; }

    public static async Task<ServeProcess> StartAsync(params string[] serveArguments)
    {
        var start = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true };
        start.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "celer.dll"));
        start.ArgumentList.Add("serve");
        foreach (string argument in serveArguments)
        {
            start.ArgumentList.Add(argument);
        }

        var process = Process.Start(start)!;
        var log = new ConcurrentQueue<string>();
        process.ErrorDataReceived += (_, e) => { if (e.Data is not null) log.Enqueue(e.Data); };
        process.BeginErrorReadLine();
        try
        {
            string? line;
            CancellationToken ct = TestContext.Current.CancellationToken;
            while ((line = await process.StandardOutput.ReadLineAsync(ct).AsTask().WaitAsync(TimeSpan.FromSeconds(120), ct)) is not null
                && !line.StartsWith("Serving model", StringComparison.Ordinal))
            {
                log.Enqueue(line);
            }

            Assert.True(line is not null, $"the server never came up: {string.Join('\n', log)}");
            return new ServeProcess(process, new Uri(line[(line.LastIndexOf(" at ", StringComparison.Ordinal) + 4)..]), log);
        }
        catch
        {
            process.Kill(entireProcessTree: true);
            process.Dispose();
            throw;
        }
    }

    public HttpClient CreateClient() => new() { BaseAddress = BaseAddress, Timeout = TimeSpan.FromSeconds(60) };

    public async ValueTask DisposeAsync()
    {
        if (!Process.HasExited)
        {
            Process.Kill(entireProcessTree: true);
        }

        await Process.WaitForExitAsync(CancellationToken.None);
        Process.Dispose();
    }
}
