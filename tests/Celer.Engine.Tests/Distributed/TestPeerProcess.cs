using System.Diagnostics;
using Celer.Engine.Distributed;

namespace Celer.Engine.Tests.Distributed;

/// <summary>
/// The other processes of the cross-process tests (Celer.Engine.Tests and, linked, Celer.Backends.Cuda.Tests): this test
/// executable started again as a worker would be (<see cref="WorkerLaunch"/>: itself, or <c>dotnet app.dll</c>) with a
/// role's environment variable set runs that role and exits instead of running tests. A role's module initializer
/// (which runs before the test runner's generated entry point) calls <see cref="RunIfAsked"/>, so the tests need no
/// helper project of their own.
/// </summary>
internal static class TestPeerProcess
{
    /// <summary>Starts this test executable again as the role <paramref name="variable"/> names, given <paramref name="words"/>;
    /// its standard output and error are redirected.</summary>
    public static Process Start(string variable, params object[] words)
    {
        ProcessStartInfo start = WorkerLaunch.StartInfo([]);
        start.Environment[variable] = string.Join(' ', words);
        return Process.Start(start)!;
    }

    /// <summary>When this process was started as <paramref name="variable"/>'s role, runs it with the words it was given and
    /// exits: 0, or 1 with the exception on standard error. Otherwise returns at once.</summary>
    public static void RunIfAsked(string variable, Action<string[]> role)
    {
        string? words = Environment.GetEnvironmentVariable(variable);
        if (words is null)
        {
            return;
        }

        int exitCode = 0;
        try
        {
            role(words.Split(' '));
        }
        catch (Exception e)
        {
            Console.Error.WriteLine(e);
            exitCode = 1;
        }

        Environment.Exit(exitCode);
    }
}
