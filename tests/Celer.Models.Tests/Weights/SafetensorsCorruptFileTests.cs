using Xunit;
using System.Buffers.Binary;
using System.Text;
using Celer.Models.Weights;

namespace Celer.Models.Tests.Weights;

/// <summary>Hand-built byte-level files: every corruption must be a <see cref="SafetensorsException"/> naming the file (and tensor), never an out-of-range read.</summary>
public class SafetensorsCorruptFileTests
{
    private static string Build(TempDirectory dir, string header, int dataBytes, ulong? headerLengthOverride = null)
    {
        byte[] json = Encoding.UTF8.GetBytes(header);
        var bytes = new byte[8 + json.Length + dataBytes];
        BinaryPrimitives.WriteUInt64LittleEndian(bytes, headerLengthOverride ?? (ulong)json.Length);
        json.CopyTo(bytes, 8);
        new Random(42).NextBytes(bytes.AsSpan(8 + json.Length));
        string path = dir.File("model.safetensors");
        File.WriteAllBytes(path, bytes);
        return path;
    }

    private static SafetensorsException OpenFails(string header, int dataBytes, ulong? headerLengthOverride = null)
    {
        using var dir = new TempDirectory();
        Build(dir, header, dataBytes, headerLengthOverride);
        var e = Assert.Throws<SafetensorsException>(() => SafetensorsWeightSource.Open(dir.Path));
        Assert.Contains("model.safetensors", e.Message);
        return e;
    }

    [Fact]
    public void Hand_built_valid_file_opens_with_its_exact_bytes()
    {
        using var dir = new TempDirectory();
        string path = Build(dir, """{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"BF16","shape":[1,2],"data_offsets":[8,12]}}""", 12);
        byte[] raw = File.ReadAllBytes(path);
        using var source = SafetensorsWeightSource.Open(dir.Path);
        Assert.Equal(raw[^12..^4], source.Get("a", 2).Bytes.ToArray());
        Assert.Equal(raw[^4..], source.Get("b", 1, 2).Bytes.ToArray());
    }

    [Fact]
    public void File_shorter_than_the_length_prefix()
    {
        using var dir = new TempDirectory();
        File.WriteAllBytes(dir.File("model.safetensors"), [1, 2, 3]);
        var e = Assert.Throws<SafetensorsException>(() => SafetensorsWeightSource.Open(dir.Path));
        Assert.Contains("too small", e.Message);
    }

    [Fact]
    public void Truncated_header()
    {
        // The length prefix promises more header bytes than the file holds.
        var e = OpenFails("""{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}""", 0, headerLengthOverride: 200);
        Assert.Contains("runs past the end", e.Message);
    }

    [Fact]
    public void Huge_header_length()
    {
        var e = OpenFails("{}", 0, headerLengthOverride: ulong.MaxValue);
        Assert.Contains("runs past the end", e.Message);
    }

    [Fact]
    public void Header_that_is_not_json()
    {
        var e = OpenFails("""{"a":{"dtype":"F32",""", 4);
        Assert.Contains("not valid JSON", e.Message);
    }

    [Fact]
    public void Header_that_is_not_an_object()
    {
        var e = OpenFails("[1,2,3]", 0);
        Assert.Contains("must be a JSON object", e.Message);
    }

    [Theory]
    [InlineData("""{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}""", 4, "outside the data section")]
    [InlineData("""{"a":{"dtype":"F32","shape":[1],"data_offsets":[8,4]}}""", 8, "outside the data section")]
    [InlineData("""{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}""", 8, "needs 12 bytes")]
    [InlineData("""{"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}""", 4, "not a non-negative integer")]
    [InlineData("""{"a":{"dtype":"F32","shape":[1],"data_offsets":[0]}}""", 4, "list of 2 integers")]
    [InlineData("""{"a":{"shape":[1],"data_offsets":[0,4]}}""", 4, "'dtype'")]
    [InlineData("""{"a":{"dtype":"Q4_K","shape":[1],"data_offsets":[0,4]}}""", 4, "unknown dtype 'Q4_K'")]
    [InlineData("""{"a":{"dtype":"F32","shape":[2147483648],"data_offsets":[0,4]}}""", 4, "too large")]
    [InlineData("""{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}""", 8, "appears twice")]
    [InlineData("""{"a":"F32"}""", 4, "must be an object")]
    public void Bad_tensor_entries_name_the_tensor(string header, int dataBytes, string expected)
    {
        var e = OpenFails(header, dataBytes);
        Assert.Contains("tensor 'a'", e.Message);
        Assert.Contains(expected, e.Message);
    }

    [Fact]
    public void Overlapping_tensors()
    {
        var e = OpenFails("""{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}""", 12);
        Assert.Contains("tensor 'b' (bytes 4..12) overlaps tensor 'a' (bytes 0..8)", e.Message);
    }

    [Fact]
    public void Metadata_values_must_be_strings()
    {
        var e = OpenFails("""{"__metadata__":{"format":1}}""", 0);
        Assert.Contains("__metadata__", e.Message);
    }

    [Fact]
    public void Unsupported_dtype_is_listed_but_fails_when_requested()
    {
        using var dir = new TempDirectory();
        Build(dir, """{"q.x":{"dtype":"F64","shape":[1],"data_offsets":[0,8]},"b":{"dtype":"F16","shape":[2],"data_offsets":[8,12]}}""", 12);
        using var source = SafetensorsWeightSource.Open(dir.Path);
        Assert.True(source.Contains("q.x"));
        Assert.Equal("F64", source.Files[0].DTypeNameOf("q.x"));
        var e = Assert.Throws<SafetensorsException>(() => source.Get("q.x"));
        Assert.Contains("tensor 'q.x' has dtype F64", e.Message);
        Assert.Equal(DType.F16, source.Get("b", 2).DType);
    }

    [Fact]
    public void Empty_tensor_and_gaps_are_accepted()
    {
        using var dir = new TempDirectory();
        Build(dir, """{"e":{"dtype":"F32","shape":[0,4],"data_offsets":[0,0]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}""", 8);
        using var source = SafetensorsWeightSource.Open(dir.Path);
        Assert.Equal(0, source.Get("e", 0, 4).ElementCount);
        Assert.Equal(4, source.Get("a", 1).Bytes.Length);
    }
}
