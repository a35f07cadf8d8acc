using System.Buffers.Binary;
using System.Text.Json;
using Celer.Models.Multimodal;
using Celer.TestSupport;

namespace Celer.Models.Tests.Multimodal;

/// <summary>One image of tests/fixtures/multimodal/clip-processor/reference.json under one of its configs.</summary>
public sealed record ClipProcessorCase(
    string Id, string Config, RgbImage Image, int[] Shape, float[] Slow, float[] Fast, double FastVsSlowMaxAbs);

/// <summary>
/// CLIPImageProcessor's pixel values from transformers 5.17, written by tools/reference/make_multimodal_fixtures.py:
/// its PIL backend ("slow") and its torchvision backend ("fast") for generated images under three configs, and the
/// pixel values of the LLaVA fixture's two images under that model's own preprocessor_config.json.
/// </summary>
public static class ClipProcessorReference
{
    private static readonly Lazy<(IReadOnlyDictionary<string, string> Configs, IReadOnlyList<ClipProcessorCase> Cases)> Loaded = new(Load);

    public static string LlavaDirectory => Path.Combine(RepoPaths.Fixtures, "multimodal", "llava-clip-bf16");

    /// <summary>Each config's preprocessor_config.json text, by the fixture's name for it.</summary>
    public static IReadOnlyDictionary<string, string> Configs => Loaded.Value.Configs;

    public static IReadOnlyList<ClipProcessorCase> Cases => Loaded.Value.Cases;

    public static ClipProcessorCase Case(string id) => Cases.Single(c => c.Id == id);

    /// <summary>The LLaVA fixture's images with their pixel values from the PIL backend.</summary>
    public static IReadOnlyList<(RgbImage Image, int[] Shape, float[] PixelValues)> LlavaImages()
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(LlavaDirectory, "reference.json")));
        return doc.RootElement.GetProperty("images").EnumerateArray()
            .Select(i => (Image(i), Ints(i.GetProperty("pixel_shape")), Floats(i.GetProperty("pixel_values"))))
            .ToList();
    }

    private static (IReadOnlyDictionary<string, string>, IReadOnlyList<ClipProcessorCase>) Load()
    {
        string path = Path.Combine(RepoPaths.Fixtures, "multimodal", "clip-processor", "reference.json");
        using var doc = JsonDocument.Parse(File.ReadAllText(path));
        var root = doc.RootElement;
        var configs = root.GetProperty("configs").EnumerateObject().ToDictionary(p => p.Name, p => p.Value.GetRawText());
        var cases = root.GetProperty("cases").EnumerateArray().Select(c =>
        {
            var image = Image(c.GetProperty("image"));
            string config = c.GetProperty("config").GetString()!;
            return new ClipProcessorCase(
                $"{config} {image.Width}x{image.Height}", config, image, Ints(c.GetProperty("shape")),
                Floats(c.GetProperty("slow")), Floats(c.GetProperty("fast")), c.GetProperty("fast_vs_slow_max_abs").GetDouble());
        }).ToList();
        return (configs, cases);
    }

    private static RgbImage Image(JsonElement e) =>
        new(e.GetProperty("width").GetInt32(), e.GetProperty("height").GetInt32(), Convert.FromBase64String(e.GetProperty("rgb").GetString()!));

    private static int[] Ints(JsonElement e) => e.EnumerateArray().Select(x => x.GetInt32()).ToArray();

    private static float[] Floats(JsonElement e)
    {
        byte[] bytes = Convert.FromBase64String(e.GetString()!);
        var values = new float[bytes.Length / 4];
        for (int i = 0; i < values.Length; i++)
        {
            values[i] = BinaryPrimitives.ReadSingleLittleEndian(bytes.AsSpan(4 * i));
        }

        return values;
    }
}
