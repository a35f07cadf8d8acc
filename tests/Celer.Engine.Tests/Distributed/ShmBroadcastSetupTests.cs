using System.Diagnostics;
using Celer.Engine.Distributed;
using static Celer.Engine.Tests.Distributed.BroadcastTestSupport;

namespace Celer.Engine.Tests.Distributed;

/// <summary>Creating and opening broadcast queues: bad arguments, names and files get clear errors, and the files of
/// writers that died are cleaned up without touching live ones.</summary>
[Collection(BroadcastTestSupport.Collection)]
public class ShmBroadcastSetupTests
{
    [Fact]
    public void Create_RejectsImpossibleShapes()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => ShmBroadcastWriter.Create(0, 64, 4));
        Assert.Throws<ArgumentOutOfRangeException>(() => ShmBroadcastWriter.Create(1025, 64, 4));
        Assert.Throws<ArgumentOutOfRangeException>(() => ShmBroadcastWriter.Create(1, 0, 4));
        Assert.Throws<ArgumentOutOfRangeException>(() => ShmBroadcastWriter.Create(1, 64, 0));
        using var writer = ShmBroadcastWriter.Create(1, 64, 4);
        Assert.Throws<ArgumentOutOfRangeException>(() => writer.Enqueue([], TimeSpan.FromMilliseconds(-2), Ct));
    }

    [Fact]
    public void Create_FailsClearly_WhenTheMemoryCannotBeReserved_AndLeavesNoFile()
    {
        // 2^31 chunks of 2^31 bytes: more than any /dev/shm (or disk) holds, refused up front rather than faulting later.
        string[] before = OwnFiles();
        var error = Assert.Throws<IOException>(() => ShmBroadcastWriter.Create(1, int.MaxValue, int.MaxValue));
        Assert.StartsWith("Could not reserve", error.Message, StringComparison.Ordinal);
        Assert.Equal(before, OwnFiles());
    }

    [Theory]
    [InlineData("")]
    [InlineData("queue")]
    [InlineData("celer-broadcast-../../etc/passwd")]
    [InlineData("celer-broadcast-1/x")]
    [InlineData("celer-broadcast-12-ABC")]
    public void Open_RejectsNamesTheWriterNeverMakes(string name)
    {
        Assert.Throws<ArgumentException>(() => ShmBroadcastReader.Open(name, 0));
    }

    [Fact]
    public void Open_SaysWhenTheQueueIsMissing_TheIndexIsOutOfRange_OrTheFileIsNotAQueue()
    {
        var missing = Assert.Throws<FileNotFoundException>(() => ShmBroadcastReader.Open("celer-broadcast-1-0123abcd", 0));
        Assert.Contains("no broadcast queue 'celer-broadcast-1-0123abcd'", missing.Message, StringComparison.Ordinal);

        using (var writer = ShmBroadcastWriter.Create(2, 64, 4))
        {
            Assert.Throws<ArgumentOutOfRangeException>(() => ShmBroadcastReader.Open(writer.Name, -1));
            var index = Assert.Throws<ArgumentOutOfRangeException>(() => ShmBroadcastReader.Open(writer.Name, 2));
            Assert.Contains("has 2 reader(s), indices 0 to 1", index.Message, StringComparison.Ordinal);
        }

        // A file with a queue's name but not a queue's contents (process 1 is alive, so no writer sweeps it meanwhile).
        string name = $"celer-broadcast-1-{Guid.NewGuid():N}";
        string path = Path.Combine(ShmRingBuffer.Folder, name);
        try
        {
            File.WriteAllBytes(path, [.. Enumerable.Range(0, 4096).Select(i => (byte)(i * 37))]);
            Assert.Contains("is not a Celer broadcast queue", Assert.Throws<InvalidDataException>(() => ShmBroadcastReader.Open(name, 0)).Message, StringComparison.Ordinal);
            File.WriteAllBytes(path, [1, 2, 3]);
            Assert.Contains("the file is only 3 bytes", Assert.Throws<InvalidDataException>(() => ShmBroadcastReader.Open(name, 0)).Message, StringComparison.Ordinal);
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Fact]
    public void Create_DeletesOnlyTheFilesOfDeadWritersOverAMinuteOld()
    {
        int dead;
        using (var exited = Process.Start(new ProcessStartInfo("dotnet", "--version") { RedirectStandardOutput = true })!)
        {
            exited.WaitForExit();
            dead = exited.Id;
        }

        string Stale(int processId, TimeSpan age)
        {
            string path = Path.Combine(ShmRingBuffer.Folder, $"celer-broadcast-{processId}-{Guid.NewGuid():N}");
            File.WriteAllBytes(path, [0]);
            File.SetLastWriteTimeUtc(path, DateTime.UtcNow - age);
            return path;
        }

        string deadAndOld = Stale(dead, TimeSpan.FromMinutes(5));
        string deadButFresh = Stale(dead, TimeSpan.Zero);
        string aliveAndOld = Stale(1, TimeSpan.FromMinutes(5));
        string ownAndOld = Stale(Environment.ProcessId, TimeSpan.FromMinutes(5));
        try
        {
            using var writer = ShmBroadcastWriter.Create(1, 64, 4);
            Assert.False(File.Exists(deadAndOld));
            Assert.True(File.Exists(deadButFresh));
            Assert.True(File.Exists(aliveAndOld));
            Assert.True(File.Exists(ownAndOld));
        }
        finally
        {
            Array.ForEach([deadAndOld, deadButFresh, aliveAndOld, ownAndOld], File.Delete);
        }
    }

    private static string[] OwnFiles() =>
        [.. Directory.EnumerateFiles(ShmRingBuffer.Folder, $"celer-broadcast-{Environment.ProcessId}-*").Order(StringComparer.Ordinal)];
}
