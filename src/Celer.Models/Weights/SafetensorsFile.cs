using System.Buffers.Binary;
using System.IO.MemoryMappedFiles;

namespace Celer.Models.Weights;

/// <summary>
/// One memory-mapped safetensors file: an 8-byte little-endian header length, a JSON header, then
/// the tensor bytes. The whole file stays mapped read-only for the life of this object and tensors
/// are handed out as pointers into the mapping, so loading touches only the pages a backend reads.
/// </summary>
public sealed unsafe class SafetensorsFile : IDisposable
{
    private readonly MemoryMappedFile _map;
    private readonly MemoryMappedViewAccessor _view;
    private readonly byte* _data; // start of the data section (after the header)
    private readonly long _dataBytes;
    private readonly Dictionary<string, SafetensorsEntry> _tensors;
    private bool _disposed;

    private SafetensorsFile(string path, MemoryMappedFile map, MemoryMappedViewAccessor view, byte* data, long dataBytes,
        Dictionary<string, SafetensorsEntry> tensors, Dictionary<string, string> metadata)
    {
        Path = path;
        _map = map;
        _view = view;
        _data = data;
        _dataBytes = dataBytes;
        _tensors = tensors;
        Metadata = metadata;
    }

    public string Path { get; }

    /// <summary>The header's <c>__metadata__</c> (e.g. <c>{"format": "pt"}</c>); empty when absent.</summary>
    public IReadOnlyDictionary<string, string> Metadata { get; }

    public IEnumerable<string> Names => _tensors.Keys;

    public static SafetensorsFile Open(string path)
    {
        string file = System.IO.Path.GetFileName(path);
        long length;
        try
        {
            length = new FileInfo(path).Length;
        }
        catch (FileNotFoundException e)
        {
            throw new SafetensorsException($"'{file}' not found", e);
        }
        if (length < sizeof(ulong))
        {
            throw new SafetensorsException($"'{file}' is {length} bytes, too small to hold the 8-byte header length");
        }

        var map = MemoryMappedFile.CreateFromFile(path, FileMode.Open, null, 0, MemoryMappedFileAccess.Read);
        MemoryMappedViewAccessor? view = null;
        bool acquired = false;
        try
        {
            view = map.CreateViewAccessor(0, 0, MemoryMappedFileAccess.Read);
            byte* basePointer = null;
            view.SafeMemoryMappedViewHandle.AcquirePointer(ref basePointer);
            acquired = true;
            basePointer += view.PointerOffset;

            ulong headerLength = BinaryPrimitives.ReadUInt64LittleEndian(new ReadOnlySpan<byte>(basePointer, sizeof(ulong)));
            if (headerLength > (ulong)(length - sizeof(ulong)))
            {
                throw new SafetensorsException($"'{file}': header length {headerLength} runs past the end of the {length}-byte file");
            }
            if (headerLength > SafetensorsHeader.MaxHeaderBytes)
            {
                throw new SafetensorsException($"'{file}': header length {headerLength} exceeds the {SafetensorsHeader.MaxHeaderBytes}-byte limit");
            }
            long dataStart = sizeof(ulong) + (long)headerLength;
            byte[] header = new ReadOnlySpan<byte>(basePointer + sizeof(ulong), (int)headerLength).ToArray();
            var (tensors, metadata) = SafetensorsHeader.Parse(header, length - dataStart, file);
            return new SafetensorsFile(path, map, view, basePointer + dataStart, length - dataStart, tensors, metadata);
        }
        catch
        {
            if (acquired)
            {
                view!.SafeMemoryMappedViewHandle.ReleasePointer();
            }
            view?.Dispose();
            map.Dispose();
            throw;
        }
    }

    /// <summary>Bytes of tensor data (the file less its header).</summary>
    public long DataBytes => _dataBytes;

    public bool Contains(string name) => _tensors.ContainsKey(name);

    /// <summary>
    /// Asks the kernel to read the data bytes <paramref name="offset"/> .. + <paramref name="length"/> (clipped to the
    /// data) from the disk now; the caller keeps the file open meanwhile.
    /// </summary>
    internal void RequestRead(long offset, long length)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        length = Math.Min(length, _dataBytes - offset);
        ReadAhead.Request((nint)(_data + offset), length);
    }

    /// <summary>The safetensors dtype string of a tensor ("BF16", "I32", "F8_E4M3", ...), or null when absent.</summary>
    public string? DTypeNameOf(string name) => _tensors.TryGetValue(name, out var e) ? e.DTypeName : null;

    /// <summary>
    /// The tensor as a view into the mapping. Tensors of dtypes other than BF16/F16/F32 and the FP8 ones are listed
    /// in the header (quantized checkpoints carry I32/U8 tensors) but fail here, naming the dtype.
    /// </summary>
    public WeightTensor Get(string name)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (!_tensors.TryGetValue(name, out var entry))
        {
            throw WeightShapes.Missing(name);
        }
        if (!DTypeExtensions.TryParseSafetensors(entry.DTypeName, out var dtype))
        {
            throw new SafetensorsException(
                $"'{System.IO.Path.GetFileName(Path)}': tensor '{name}' has dtype {entry.DTypeName}, which is not supported (BF16, F16, F32, F8_E4M3, F8_E5M2, I8, I32, I64)");
        }
        // A tensor asked for is about to be read whole (uploaded, converted or sliced): start reading it from the disk now.
        ReadAhead.Request((nint)(_data + entry.Begin), entry.ByteLength);
        return new WeightTensor(name, dtype, (int[])entry.Shape.Clone(), (nint)(_data + entry.Begin), entry.ByteLength);
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
        _map.Dispose();
    }
}
