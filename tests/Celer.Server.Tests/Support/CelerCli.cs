using System.CommandLine;
using Celer.Cli;

namespace Celer.Server.Tests.Support;

/// <summary>Runs the real <c>celer</c> command line in-process, capturing what it writes to its output and error.</summary>
internal static class CelerCli
{
    public static async Task<(int ExitCode, string Output, string Error)> RunAsync(params string[] args)
    {
        var output = new StringWriter();
        var error = new StringWriter();
        int exitCode = await CelerCommandLine.CreateRoot().Parse(args)
            .InvokeAsync(new InvocationConfiguration { Output = output, Error = error, ProcessTerminationTimeout = null });
        return (exitCode, output.ToString(), error.ToString());
    }
}
