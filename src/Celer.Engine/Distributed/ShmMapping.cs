using System.IO.MemoryMappedFiles;

namespace Celer.Engine.Distributed;

/// <summary>
/// A file under <see cref="ShmRingBuffer.Folder"/> mapped whole into this process, for memory that processes share: the
/// file is created for its owner only with its memory reserved up front, and the mapping hands out a base pointer.
/// </summary>
internal sealed unsafe class ShmMapping : IDisposable
{
    private readonly MemoryMappedFile _file;
    private readonly MemoryMappedViewAccessor _view;
    private bool _disposed;

    /// <summary>Maps the first <paramref name="length"/> bytes of <paramref name="stream"/>, which the mapping owns from
    /// here on (disposing it closes the stream).</summary>
    public ShmMapping(FileStream stream, long length)
    {
        _file = MemoryMappedFile.CreateFromFile(stream, null, length, MemoryMappedFileAccess.ReadWrite, HandleInheritability.None, leaveOpen: false);
        _view = _file.CreateViewAccessor(0, length, MemoryMappedFileAccess.ReadWrite);
        byte* pointer = null;
        _view.SafeMemoryMappedViewHandle.AcquirePointer(ref pointer);
        Base = pointer + _view.PointerOffset;
        Length = length;
    }

    public byte* Base { get; }

    public long Length { get; }

    /// <summary>Creates the file <paramref name="path"/> (which must not exist) and maps it: see <see cref="CreateFile"/>.</summary>
    public static ShmMapping Create(string path, long bytes, string what)
    {
#pragma warning disable CA2000 // the mapping owns the stream (closes it), or the catch below disposes it
        FileStream stream = CreateFile(path, bytes, what);
#pragma warning restore CA2000
        try
        {
            return new ShmMapping(stream, bytes);
        }
        catch
        {
            stream.Dispose();
            File.Delete(path);
            throw;
        }
    }

    /// <summary>Creates the file <paramref name="path"/> (which must not exist), <paramref name="bytes"/> long and zeroed,
    /// readable and writable by this account only. The memory is reserved now, so a too-small /dev/shm is an
    /// <see cref="IOException"/> here rather than a SIGBUS at the first store to a page it has no room for.</summary>
    /// <param name="what">What the file holds, for the error message ("a broadcast queue").</param>
    public static FileStream CreateFile(string path, long bytes, string what)
    {
        var options = new FileStreamOptions
        {
            Mode = FileMode.CreateNew,
            Access = FileAccess.ReadWrite,
            Share = FileShare.ReadWrite | FileShare.Delete,
            PreallocationSize = bytes,
        };
        if (!OperatingSystem.IsWindows())
        {
            // The memory carries users' prompts and their activations: no other account may read them.
            options.UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;
        }

        FileStream stream;
        try
        {
            stream = new FileStream(path, options);
        }
        catch (IOException e)
        {
            throw new IOException(
                $"Could not reserve {bytes} bytes for {what} in {Path.GetDirectoryName(path)}: {e.Message} " +
                "(a container's /dev/shm is 64 MiB unless raised: docker run --shm-size or --ipc=host, a memory emptyDir in Kubernetes).", e);
        }

        try
        {
            stream.SetLength(bytes);
            return stream;
        }
        catch
        {
            stream.Dispose();
            File.Delete(path);
            throw;
        }
    }

    public void Dispose()
    {
        if (_disposed)
        {
            return;
        }

        _disposed = true;
        _view.SafeMemoryMappedViewHandle.ReleasePointer();
        _view.Dispose();
        _file.Dispose();
    }
}
