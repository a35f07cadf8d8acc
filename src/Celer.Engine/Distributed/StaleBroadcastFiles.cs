using System.Diagnostics;
using System.Globalization;

namespace Celer.Engine.Distributed;

/// <summary>
/// Deletes the queue files of writers that died without disposing (killed, crashed): /dev/shm is memory, and each one
/// would hold its size until the next reboot. A file is stale when the process id in its name is not running and it is
/// over a minute old.
/// </summary>
/// <remarks>
/// The age rule is for processes in other PID namespaces that share /dev/shm (containers of one pod): their writer's id
/// means nothing here and may look dead. Readers open a queue within seconds of its creation, and deleting a file that
/// is still mapped leaves the mappings working, so removing a live queue a minute on harms no one; removing it at once
/// could keep a reader from opening it.
/// </remarks>
internal static class StaleBroadcastFiles
{
    private static readonly TimeSpan MinimumAge = TimeSpan.FromMinutes(1);

    public static void Delete(string folder)
    {
        foreach (string path in Directory.EnumerateFiles(folder, ShmRingBuffer.NamePrefix + "*"))
        {
            if (WriterProcessId(Path.GetFileName(path)) is not int writer || writer == Environment.ProcessId || IsRunning(writer)
                || DateTime.UtcNow - File.GetLastWriteTimeUtc(path) < MinimumAge)
            {
                continue;
            }

            try
            {
                File.Delete(path);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                // Another account's file (/dev/shm is sticky), or one another writer removed first: not ours to clean.
            }
        }
    }

    /// <summary>The process id in a queue file's name, <c>celer-broadcast-&lt;pid&gt;-&lt;random&gt;</c>.</summary>
    private static int? WriterProcessId(string name)
    {
        ReadOnlySpan<char> rest = name.AsSpan(ShmRingBuffer.NamePrefix.Length);
        int dash = rest.IndexOf('-');
        return dash > 0 && int.TryParse(rest[..dash], NumberStyles.None, CultureInfo.InvariantCulture, out int id) ? id : null;
    }

    private static bool IsRunning(int processId)
    {
        try
        {
            using var process = Process.GetProcessById(processId);
            return !process.HasExited;
        }
        catch (ArgumentException)
        {
            return false; // no such process
        }
        catch (InvalidOperationException)
        {
            return true; // cannot tell: keep the file
        }
    }
}
