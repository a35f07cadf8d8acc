using System.Diagnostics;
using System.Reflection;

namespace Celer.Engine.Distributed;

/// <summary>
/// How a worker process is started: this program again (the <c>celer</c> executable, or <c>dotnet app.dll</c>) with the
/// worker's arguments, its standard output and error redirected to the process that starts it.
/// </summary>
internal static class WorkerLaunch
{
    public static ProcessStartInfo StartInfo(IEnumerable<string> arguments)
    {
        string host = Environment.ProcessPath ?? throw new InvalidOperationException("This process's executable is unknown, so no worker process can be started.");
        var start = new ProcessStartInfo(host) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        if (Path.GetFileNameWithoutExtension(host).Equals("dotnet", StringComparison.OrdinalIgnoreCase))
        {
            // `dotnet app.dll …`: the worker is the same app started again (a single-file app is its own executable, above).
            string app = Path.Combine(AppContext.BaseDirectory, (Assembly.GetEntryAssembly()?.GetName().Name ?? throw new InvalidOperationException("This process has no entry assembly to start as a worker.")) + ".dll");
            start.ArgumentList.Add(app);
        }

        foreach (string argument in arguments)
        {
            start.ArgumentList.Add(argument);
        }

        return start;
    }
}
