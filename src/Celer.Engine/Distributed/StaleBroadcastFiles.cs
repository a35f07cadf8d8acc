using System.Diagnostics;
using System.Globalization;

namespace Celer.Engine.Distributed;

/// <summary>
/// Deletes the shared-memory files (broadcast queues, collective groups) of creators that died without disposing them
/// (killed, crashed): /dev/shm is memory, and each one would hold its size until the next reboot. A file is stale when
/// the process id in its name is not running and it is over a minute old.
/// </summary>
/// <remarks>
/// The age rule is for processes in other PID namespaces that share /dev/shm (containers of one pod): their creator's id
/// means nothing here and may look dead. The other processes open a file within seconds of its creation (a queue's
/// readers, a group's ranks, at startup), and deleting a file that is still mapped leaves the mappings working, so
/// removing a live one a minute on harms no one; removing it at once could keep a late process from opening it.
/// </remarks>
internal static class StaleBroadcastFiles
{
    private static readonly TimeSpan MinimumAge = TimeSpan.FromMinutes(1);

    /// <summary>Deletes the stale broadcast queues in <paramref name="folder"/>.</summary>
    public static void Delete(string folder) => Delete(folder, ShmRingBuffer.NamePrefix);

    /// <summary>Deletes the stale files in <paramref name="folder"/> named <c>&lt;namePrefix&gt;&lt;pid&gt;-&lt;random&gt;</c>.</summary>
    public static void Delete(string folder, string namePrefix)
    {
        foreach (string path in Directory.EnumerateFiles(folder, namePrefix + "*"))
        {
            if (CreatorProcessId(Path.GetFileName(path), namePrefix) is not int creator || creator == Environment.ProcessId || IsRunning(creator)
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
                // Another account's file (/dev/shm is sticky), or one another creator removed first: not ours to clean.
            }
        }
    }

    /// <summary>The process id in a file's name, <c>&lt;namePrefix&gt;&lt;pid&gt;-&lt;random&gt;</c>.</summary>
    public static int? CreatorProcessId(string name, string namePrefix)
    {
        ReadOnlySpan<char> rest = name.AsSpan(namePrefix.Length);
        int dash = rest.IndexOf('-');
        return dash > 0 && int.TryParse(rest[..dash], NumberStyles.None, CultureInfo.InvariantCulture, out int id) ? id : null;
    }

    /// <summary>Whether process <paramref name="processId"/> is running; true when that cannot be told. A zombie (exited,
    /// not yet reaped by its parent) counts as running, as do processes of another PID namespace that reuse the id.</summary>
    public static bool IsRunning(int processId)
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
            return true; // cannot tell: a file is kept, a peer waited for
        }
    }
}
