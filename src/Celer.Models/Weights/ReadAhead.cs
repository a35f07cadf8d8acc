using System.Runtime.InteropServices;

namespace Celer.Models.Weights;

/// <summary>
/// Asks the kernel to start reading a range of a memory-mapped checkpoint now (madvise MADV_WILLNEED), so a tensor about to
/// be copied streams from the disk in large requests while the loader still works on the one before it, instead of one
/// page fault's readahead at a time. Only a hint: where it is not available nothing happens.
/// </summary>
internal static unsafe partial class ReadAhead
{
    private const int MadvWillNeed = 3;

    private static readonly long PageSize = Environment.SystemPageSize;

    public static void Request(nint address, long length)
    {
        if (!OperatingSystem.IsLinux() || length <= 0)
        {
            return;
        }

        long start = address & ~(PageSize - 1);
        _ = madvise((void*)start, (nuint)(address + length - start), MadvWillNeed);
    }

    [LibraryImport("libc", EntryPoint = "madvise")]
    private static partial int madvise(void* address, nuint length, int advice);
}
