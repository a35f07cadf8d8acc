using System.Diagnostics;
using System.Globalization;
using System.Runtime.CompilerServices;
using Celer.Engine.Distributed;

namespace Celer.Engine.Tests.Distributed;

/// <summary>
/// A rank of the cross-process collective tests: this test executable started again (<c>dotnet Celer.Engine.Tests.dll</c>)
/// with <see cref="RoleVariable"/> set joins a group as one rank, runs a <see cref="CollectiveSequence"/> and exits,
/// instead of running tests (a module initializer runs before the test runner's entry point, as in
/// <see cref="BroadcastPeerProcess"/>).
/// </summary>
internal static class CollectivesPeerProcess
{
    private const string RoleVariable = "CELER_TEST_COLLECTIVES_PEER";

    /// <summary>Joins group <paramref name="name"/> as <paramref name="rank"/> (waits of up to a minute, its peers watched
    /// through the process ids they recorded), prints "joined", runs steps 0 to <paramref name="steps"/> − 1 of
    /// <see cref="CollectiveSequence"/> <paramref name="seed"/> and prints the <see cref="CollectiveSequence.Checksum"/>
    /// of its results; with <paramref name="stallBefore"/> ≥ 0 it prints "stalled" before that step and hangs until killed.</summary>
    public static Process Start(string name, int rank, int seed, int steps, int stallBefore = -1)
        => TestPeerProcess.Start(RoleVariable, name, rank, seed, steps, stallBefore);

    /// <summary>Kills the process if it still runs, and lets it go.</summary>
    public static void Stop(Process? process)
    {
        if (process is null)
        {
            return;
        }

        if (!process.HasExited)
        {
            process.Kill();
            process.WaitForExit();
        }

        process.Dispose();
    }

    [ModuleInitializer]
    internal static void RunWhenAsked() =>
        TestPeerProcess.RunIfAsked(RoleVariable, words => Run(words[0], Parse(words[1]), Parse(words[2]), Parse(words[3]), Parse(words[4])));

    private static void Run(string name, int rank, int seed, int steps, int stallBefore)
    {
        using var group = ShmCollectives.Join(name, rank, TimeSpan.FromMinutes(1));
        Console.WriteLine("joined");
        CollectiveSequence.Step[] sequence = CollectiveSequence.Steps(seed, steps);
        var results = new List<float[]>();
        for (int i = 0; i < steps; i++)
        {
            if (i == stallBefore)
            {
                Console.WriteLine("stalled");
                Thread.Sleep(Timeout.Infinite);
            }

            results.Add(CollectiveSequence.Run(group, sequence[i], CollectiveSequence.Input(seed, i, sequence[i], rank)));
        }

        Console.WriteLine(CollectiveSequence.Checksum(results));
    }

    private static int Parse(string word) => int.Parse(word, CultureInfo.InvariantCulture);
}
