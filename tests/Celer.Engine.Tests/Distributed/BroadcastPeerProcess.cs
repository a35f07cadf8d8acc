using System.Diagnostics;
using System.Globalization;
using System.Runtime.CompilerServices;
using System.Security.Cryptography;
using Celer.Engine.Distributed;

namespace Celer.Engine.Tests.Distributed;

/// <summary>
/// The other process of the cross-process broadcast tests: this test executable started again (<c>dotnet
/// Celer.Engine.Tests.dll</c>) with <see cref="RoleVariable"/> set acts as a queue's reader or writer and exits,
/// instead of running tests. A module initializer runs before the test runner's generated entry point, so the tests
/// need no helper project of their own.
/// </summary>
internal static class BroadcastPeerProcess
{
    private const string RoleVariable = "CELER_TEST_BROADCAST_PEER";

    /// <summary>A reader process: opens queue <paramref name="name"/> as reader <paramref name="readerIndex"/>, prints
    /// "open", reads <paramref name="messages"/> messages and prints their <see cref="BroadcastMessages.Checksum"/>; with
    /// <paramref name="stallAfter"/> ≥ 0 it prints "stalled" after that many and then hangs until killed.</summary>
    public static Process StartReader(string name, int readerIndex, int messages, int stallAfter = -1) =>
        Start($"read {name} {readerIndex} {messages} {stallAfter} {Environment.ProcessId}");

    /// <summary>A writer process: creates a queue for one reader, prints its name, sends messages 0 to
    /// <paramref name="messages"/> − 1 (<see cref="BroadcastMessages.Make"/>, lengths from <paramref name="seed"/>),
    /// prints "sent" and hangs until killed, leaving its file behind as a crashed writer does.</summary>
    public static Process StartWriter(int messages, int seed) => Start($"write {messages} {seed} {Environment.ProcessId}");

    /// <summary>Reads the next line the process prints, failing with its stderr if it exits or takes too long.</summary>
    public static async Task<string> ReadLineAsync(Process process)
    {
        CancellationToken ct = TestContext.Current.CancellationToken;
        string? line = await process.StandardOutput.ReadLineAsync(ct).AsTask().WaitAsync(TimeSpan.FromSeconds(60), ct);
        if (line is null)
        {
            await process.WaitForExitAsync(ct);
            Assert.Fail($"the peer process exited ({process.ExitCode}): {await process.StandardError.ReadToEndAsync(ct)}");
        }

        return line;
    }

    [ModuleInitializer]
    internal static void RunWhenAsked() => TestPeerProcess.RunIfAsked(RoleVariable, words =>
    {
        using var parent = Process.GetProcessById(Parse(words[^1]));
        if (words[0] == "read")
        {
            Read(words[1], Parse(words[2]), Parse(words[3]), Parse(words[4]), () => !parent.HasExited);
        }
        else
        {
            Write(Parse(words[1]), Parse(words[2]), () => !parent.HasExited);
        }
    });

    private static Process Start(string role) => TestPeerProcess.Start(RoleVariable, role);

    private static void Read(string name, int readerIndex, int messages, int stallAfter, Func<bool> isWriterAlive)
    {
        using var reader = ShmBroadcastReader.Open(name, readerIndex, isWriterAlive);
        Console.WriteLine("open");
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        for (int i = 0; i < messages; i++)
        {
            if (i == stallAfter)
            {
                Console.WriteLine("stalled");
                Thread.Sleep(Timeout.Infinite);
            }

            BroadcastMessages.Append(hash, reader.Dequeue(Timeout.InfiniteTimeSpan));
        }

        Console.WriteLine(Convert.ToHexString(hash.GetHashAndReset()));
    }

    private static void Write(int messages, int seed, Func<bool> isReaderAlive)
    {
        using var writer = ShmBroadcastWriter.Create(readerCount: 1, chunkBytes: 64, chunkCount: 4, _ => isReaderAlive());
        Console.WriteLine(writer.Name);
        int[] lengths = BroadcastMessages.Lengths(seed, messages, max: 300);
        for (int i = 0; i < messages; i++)
        {
            writer.Enqueue(BroadcastMessages.Make(i, lengths[i]), Timeout.InfiniteTimeSpan);
        }

        Console.WriteLine("sent");
        Thread.Sleep(Timeout.Infinite);
    }

    private static int Parse(string word) => int.Parse(word, CultureInfo.InvariantCulture);
}
