using System.Buffers.Binary;
using System.Text.Json;

namespace Celer.Models.Weights;

/// <summary>
/// Writes a safetensors file: the 8-byte header length, the JSON header padded with spaces so the
/// data section starts 8-byte aligned (as the reference writer does), then the tensors back to back
/// in the order given: from byte arrays (tests, small files) or streamed per tensor (<c>celer quantize</c>'s shards).
/// </summary>
public static class SafetensorsWriter
{
    public static void Write(
        string path,
        IEnumerable<(string Name, DType DType, int[] Shape, byte[] Data)> tensors,
        IReadOnlyDictionary<string, string>? metadata = null) =>
        Write(path, tensors.Select(t => new TensorData(t.Name, t.DType, t.Shape, t.Data.Length, stream => stream.Write(t.Data))), metadata);

    /// <summary>
    /// Writes tensors whose bytes <see cref="TensorData.WriteTo"/> streams (a checkpoint's tensors copied from their
    /// mapped files, say): only the header is built in memory.
    /// </summary>
    public static void Write(string path, IEnumerable<TensorData> tensors, IReadOnlyDictionary<string, string>? metadata = null)
    {
        var list = tensors.ToList();
        byte[] header = BuildHeader(list, metadata);
        using var stream = new FileStream(path, FileMode.Create, FileAccess.Write);
        Span<byte> length = stackalloc byte[sizeof(ulong)];
        BinaryPrimitives.WriteUInt64LittleEndian(length, (ulong)header.Length);
        stream.Write(length);
        stream.Write(header);
        foreach (var tensor in list)
        {
            long before = stream.Position;
            tensor.WriteTo(stream);
            if (stream.Position - before != tensor.ByteLength)
            {
                throw new InvalidOperationException($"tensor '{tensor.Name}' wrote {stream.Position - before} bytes, not the {tensor.ByteLength} its header names");
            }
        }
    }

    /// <summary>One tensor to write: its header entry and a callback that writes its <paramref name="ByteLength"/> bytes.</summary>
    public sealed record TensorData(string Name, DType DType, int[] Shape, long ByteLength, Action<Stream> WriteTo);

    private static byte[] BuildHeader(List<TensorData> tensors, IReadOnlyDictionary<string, string>? metadata)
    {
        using var buffer = new MemoryStream();
        using (var json = new Utf8JsonWriter(buffer))
        {
            json.WriteStartObject();
            if (metadata is not null)
            {
                json.WriteStartObject(SafetensorsHeader.MetadataKey);
                foreach (var (key, value) in metadata)
                {
                    json.WriteString(key, value);
                }
                json.WriteEndObject();
            }
            long offset = 0;
            foreach (var (name, dtype, shape, byteLength, _) in tensors)
            {
                long elements = shape.Aggregate(1L, (product, dim) => checked(product * dim));
                if (elements * dtype.ByteSize() != byteLength)
                {
                    throw new ArgumentException(
                        $"tensor '{name}': shape {WeightTensor.FormatShape(shape)} of {dtype} needs {elements * dtype.ByteSize()} bytes, got {byteLength}",
                        nameof(tensors));
                }
                json.WriteStartObject(name);
                json.WriteString("dtype", dtype.SafetensorsName());
                json.WriteStartArray("shape");
                foreach (int dim in shape)
                {
                    json.WriteNumberValue(dim);
                }
                json.WriteEndArray();
                json.WriteStartArray("data_offsets");
                json.WriteNumberValue(offset);
                json.WriteNumberValue(offset + byteLength);
                json.WriteEndArray();
                json.WriteEndObject();
                offset += byteLength;
            }
            json.WriteEndObject();
        }
        int padding = (int)((8 - (8 + buffer.Length) % 8) % 8);
        for (int i = 0; i < padding; i++)
        {
            buffer.WriteByte((byte)' ');
        }
        return buffer.ToArray();
    }
}
