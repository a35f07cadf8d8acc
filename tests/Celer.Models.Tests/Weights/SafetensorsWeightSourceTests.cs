using Xunit;
using System.Runtime.InteropServices;
using Celer.Models.Weights;

namespace Celer.Models.Tests.Weights;

public class SafetensorsWeightSourceTests
{
    private static byte[] RandomBytes(int count, int seed)
    {
        var bytes = new byte[count];
        new Random(seed).NextBytes(bytes);
        return bytes;
    }

    private static byte[] Floats(params float[] values) => MemoryMarshal.AsBytes(values.AsSpan()).ToArray();

    [Fact]
    public void Written_file_reads_back_every_tensor_byte_for_byte()
    {
        using var dir = new TempDirectory();
        var embed = RandomBytes(6 * 4 * 2, seed: 1);
        var norm = RandomBytes(4 * 2, seed: 2);
        var head = RandomBytes(3 * 4 * 4, seed: 3);
        SafetensorsWriter.Write(dir.File("model.safetensors"),
        [
            ("model.embed_tokens.weight", DType.BF16, [6, 4], embed),
            ("model.norm.weight", DType.F16, [4], norm),
            ("lm_head.weight", DType.F32, [3, 4], head),
        ], new Dictionary<string, string> { ["format"] = "pt" });

        using var source = SafetensorsWeightSource.Open(dir.Path);
        Assert.Equal(["lm_head.weight", "model.embed_tokens.weight", "model.norm.weight"], source.Names.Order());
        Assert.Equal("pt", source.Files[0].Metadata["format"]);

        var e = source.Get("model.embed_tokens.weight", 6, 4);
        Assert.Equal(DType.BF16, e.DType);
        Assert.Equal([6, 4], e.Shape);
        Assert.Equal(24, e.ElementCount);
        Assert.Equal(48, e.ByteLength);
        Assert.Equal(embed, e.Bytes.ToArray());
        Assert.Equal(norm, source.Get("model.norm.weight", 4).Bytes.ToArray());
        var h = source.Get("lm_head.weight");
        Assert.Equal(DType.F32, h.DType);
        Assert.Equal(MemoryMarshal.Cast<byte, float>(head).ToArray(), h.AsSpan<float>().ToArray());
    }

    [Fact]
    public void Data_section_starts_8_byte_aligned()
    {
        using var dir = new TempDirectory();
        SafetensorsWriter.Write(dir.File("model.safetensors"), [("w", DType.F32, [2], Floats(1f, 2f))]);
        long headerLength = BitConverter.ToInt64(File.ReadAllBytes(dir.File("model.safetensors")), 0);
        Assert.Equal(0, (8 + headerLength) % 8);
        using var source = SafetensorsWeightSource.Open(dir.Path);
        Assert.Equal(0, source.Get("w").Data % 8);
    }

    [Fact]
    public void Missing_tensor_and_wrong_shape_name_the_tensor()
    {
        using var dir = new TempDirectory();
        SafetensorsWriter.Write(dir.File("model.safetensors"), [("a.weight", DType.F32, [2, 3], RandomBytes(24, 4))]);
        using var source = SafetensorsWeightSource.Open(dir.Path);

        Assert.False(source.Contains("b.weight"));
        var missing = Assert.Throws<ModelLoadException>(() => source.Get("b.weight"));
        Assert.Equal("tensor 'b.weight' missing", missing.Message);
        var shape = Assert.Throws<ModelLoadException>(() => source.Get("a.weight", 3, 2));
        Assert.Equal("tensor 'a.weight' has shape [2,3], expected [3,2]", shape.Message);
    }

    [Fact]
    public void Sharded_checkpoint_is_read_through_the_index()
    {
        using var dir = new TempDirectory();
        var a = RandomBytes(8, 5);
        var b = RandomBytes(16, 6);
        SafetensorsWriter.Write(dir.File("model-00001-of-00002.safetensors"), [("x.weight", DType.BF16, [4], a)]);
        SafetensorsWriter.Write(dir.File("model-00002-of-00002.safetensors"), [("y.weight", DType.F32, [2, 2], b)]);
        File.WriteAllText(dir.File("model.safetensors.index.json"), """
            {"metadata": {"total_size": 24},
             "weight_map": {"x.weight": "model-00001-of-00002.safetensors", "y.weight": "model-00002-of-00002.safetensors"}}
            """);

        using var source = SafetensorsWeightSource.Open(dir.Path);
        Assert.Equal(2, source.Files.Count);
        Assert.Equal(a, source.Get("x.weight", 4).Bytes.ToArray());
        Assert.Equal(b, source.Get("y.weight", 2, 2).Bytes.ToArray());
    }

    [Fact]
    public void Background_read_ahead_runs_beside_the_loader_and_stops_at_dispose()
    {
        using var dir = new TempDirectory();
        // Two files of several read-ahead pieces' worth of pages each would take long to write; a few MiB exercise the
        // clipping of the last piece and the walk over files.
        var a = RandomBytes(3 << 20, 7);
        var b = RandomBytes(5 << 20, 8);
        SafetensorsWriter.Write(dir.File("model-00001-of-00002.safetensors"), [("x.weight", DType.BF16, [a.Length / 2], a)]);
        SafetensorsWriter.Write(dir.File("model-00002-of-00002.safetensors"), [("y.weight", DType.BF16, [b.Length / 2], b)]);
        File.WriteAllText(dir.File("model.safetensors.index.json"), """
            {"weight_map": {"x.weight": "model-00001-of-00002.safetensors", "y.weight": "model-00002-of-00002.safetensors"}}
            """);

        using (var source = SafetensorsWeightSource.Open(dir.Path))
        {
            Assert.Equal(a.Length + b.Length, source.Files.Sum(f => f.DataBytes));
            Assert.True(source.ReadAheadInBackground());
            Assert.False(source.ReadAheadInBackground());   // one reader per source
            Assert.Equal(b, source.Get("y.weight").Bytes.ToArray());
            Assert.Equal(a, source.Get("x.weight").Bytes.ToArray());
        }

        // Disposed at once after starting: the background reader stops before the mappings go.
        for (int i = 0; i < 20; i++)
        {
            using var source = SafetensorsWeightSource.Open(dir.Path);
            Assert.True(source.ReadAheadInBackground());
        }
    }

    [Fact]
    public void Index_pointing_to_a_missing_shard_names_the_shard()
    {
        using var dir = new TempDirectory();
        SafetensorsWriter.Write(dir.File("model-00001-of-00002.safetensors"), [("x.weight", DType.BF16, [4], RandomBytes(8, 7))]);
        File.WriteAllText(dir.File("model.safetensors.index.json"), """
            {"weight_map": {"x.weight": "model-00001-of-00002.safetensors", "y.weight": "model-00002-of-00002.safetensors"}}
            """);

        var e = Assert.Throws<SafetensorsException>(() => SafetensorsWeightSource.Open(dir.Path));
        Assert.Contains("'model-00002-of-00002.safetensors'", e.Message);
        Assert.Contains("'y.weight'", e.Message);
    }

    [Fact]
    public void Index_entry_absent_from_its_shard_is_an_error()
    {
        using var dir = new TempDirectory();
        SafetensorsWriter.Write(dir.File("model-00001-of-00001.safetensors"), [("x.weight", DType.BF16, [4], RandomBytes(8, 8))]);
        File.WriteAllText(dir.File("model.safetensors.index.json"), """
            {"weight_map": {"x.weight": "model-00001-of-00001.safetensors", "z.weight": "model-00001-of-00001.safetensors"}}
            """);

        var e = Assert.Throws<SafetensorsException>(() => SafetensorsWeightSource.Open(dir.Path));
        Assert.Contains("'z.weight'", e.Message);
        Assert.Contains("does not contain it", e.Message);
    }

    [Theory]
    [InlineData("../model.safetensors")]
    [InlineData("sub/model.safetensors")]
    [InlineData("")]
    public void Index_shard_names_cannot_leave_the_model_directory(string shard)
    {
        using var dir = new TempDirectory();
        File.WriteAllText(dir.File("model.safetensors.index.json"), "{\"weight_map\": {\"x.weight\": \"" + shard + "\"}}");
        var e = Assert.Throws<SafetensorsException>(() => SafetensorsWeightSource.Open(dir.Path));
        Assert.Contains("not a file name in the model directory", e.Message);
    }

    [Fact]
    public void Index_that_is_not_json_is_reported()
    {
        using var dir = new TempDirectory();
        File.WriteAllText(dir.File("model.safetensors.index.json"), "{\"weight_map\": ");
        var e = Assert.Throws<SafetensorsException>(() => SafetensorsWeightSource.Open(dir.Path));
        Assert.Contains("model.safetensors.index.json", e.Message);
    }

    [Fact]
    public void Without_index_or_model_safetensors_every_safetensors_file_is_read()
    {
        using var dir = new TempDirectory();
        SafetensorsWriter.Write(dir.File("a.safetensors"), [("x", DType.F32, [1], Floats(1f))]);
        SafetensorsWriter.Write(dir.File("b.safetensors"), [("y", DType.F32, [1], Floats(2f))]);
        using (var source = SafetensorsWeightSource.Open(dir.Path))
        {
            Assert.Equal(2f, source.Get("y").AsSpan<float>()[0]);
        }

        SafetensorsWriter.Write(dir.File("c.safetensors"), [("x", DType.F32, [1], Floats(3f))]);
        var e = Assert.Throws<SafetensorsException>(() => SafetensorsWeightSource.Open(dir.Path));
        Assert.Contains("tensor 'x' is stored in both 'a.safetensors' and 'c.safetensors'", e.Message);
    }

    [Fact]
    public void Directory_without_weights_is_a_load_error()
    {
        using var dir = new TempDirectory();
        var e = Assert.Throws<ModelLoadException>(() => SafetensorsWeightSource.Open(dir.Path));
        Assert.Contains("no safetensors weights", e.Message);
    }

    [Fact]
    public void Two_sources_can_map_the_same_file_at_once()
    {
        using var dir = new TempDirectory();
        SafetensorsWriter.Write(dir.File("model.safetensors"), [("w", DType.F32, [2], Floats(1f, 2f))]);
        using var first = SafetensorsWeightSource.Open(dir.Path);
        using var second = SafetensorsWeightSource.Open(dir.Path);
        Assert.Equal(first.Get("w").Bytes.ToArray(), second.Get("w").Bytes.ToArray());
    }

    [Fact]
    public void Get_after_dispose_throws()
    {
        using var dir = new TempDirectory();
        SafetensorsWriter.Write(dir.File("model.safetensors"), [("w", DType.F32, [1], Floats(1f))]);
        var source = SafetensorsWeightSource.Open(dir.Path);
        source.Dispose();
        Assert.Throws<ObjectDisposedException>(() => source.Get("w"));
    }

    [Fact]
    public void Writer_rejects_data_that_does_not_match_the_shape()
    {
        using var dir = new TempDirectory();
        var e = Assert.Throws<ArgumentException>(() =>
            SafetensorsWriter.Write(dir.File("model.safetensors"), [("w", DType.BF16, [3], new byte[4])]));
        Assert.Contains("'w'", e.Message);
    }
}
