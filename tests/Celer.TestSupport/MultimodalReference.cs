using System.Text.Json;
using Celer.Models.Multimodal;

namespace Celer.TestSupport;

/// <summary>One image of a multimodal fixture: its RGB pixels, transformers' pixel values for it, and the features the model made of them.</summary>
public sealed record ReferenceImage(RgbImage Image, float[] PixelValues, float[] Features, int FeatureRows);

/// <summary>
/// reference.json of a vision-language fixture (tools/reference/make_multimodal_fixtures.py): the model's greedy
/// cases as <see cref="ReferenceFixture"/> reads them (prompts with every image's placeholder run expanded), which
/// images each case shows in order, and the images themselves.
/// </summary>
public sealed record MultimodalReference(ReferenceFixture Text, IReadOnlyList<IReadOnlyList<int>> CaseImages, IReadOnlyList<ReferenceImage> Images, int ImageTokenId, int FeaturesPerImage)
{
    public static MultimodalReference Load(string modelDirectory)
    {
        string path = Path.Combine(modelDirectory, "reference.json");
        using JsonDocument doc = JsonDocument.Parse(File.ReadAllText(path));
        JsonElement root = doc.RootElement;
        var images = root.GetProperty("images").EnumerateArray().Select(i => new ReferenceImage(
            new RgbImage(i.GetProperty("width").GetInt32(), i.GetProperty("height").GetInt32(), Convert.FromBase64String(i.GetProperty("rgb").GetString()!)),
            Floats(i.GetProperty("pixel_values")),
            Floats(i.GetProperty("features")),
            i.GetProperty("feature_shape")[0].GetInt32())).ToList();
        var caseImages = root.GetProperty("cases").EnumerateArray()
            .Select(c => (IReadOnlyList<int>)[.. c.GetProperty("images").EnumerateArray().Select(e => e.GetInt32())]).ToList();
        return new MultimodalReference(ReferenceFixture.Load(path), caseImages, images, root.GetProperty("image_token_id").GetInt32(), root.GetProperty("features_per_image").GetInt32());
    }

    /// <summary>A case's prompt as a chat template leaves it: one placeholder per image, where the engine expands it.</summary>
    public int[] CollapsedPrompt(int caseIndex)
    {
        var tokens = new List<int>();
        IReadOnlyList<int> prompt = Text.Cases[caseIndex].PromptTokenIds;
        for (int i = 0; i < prompt.Count; i++)
        {
            tokens.Add(prompt[i]);
            if (prompt[i] == ImageTokenId)
            {
                i += FeaturesPerImage - 1;
            }
        }

        return [.. tokens];
    }

    /// <summary>
    /// The largest difference between feature values relative to max(1, |expected|): relative for the large values, absolute
    /// for those near 0, where any rounding of a sum that cancels would be magnified.
    /// </summary>
    public static double WorstFeatureError(ReadOnlySpan<float> expected, ReadOnlySpan<float> actual)
    {
        if (expected.Length != actual.Length)
        {
            throw new ArgumentException($"{actual.Length} values to compare with {expected.Length}.", nameof(actual));
        }

        double worst = 0;
        for (int i = 0; i < expected.Length; i++)
        {
            worst = Math.Max(worst, Math.Abs(expected[i] - actual[i]) / Math.Max(1, Math.Abs(expected[i])));
        }

        return worst;
    }

    /// <summary>Little-endian float32 values, base64 (the fixture scripts' b64_floats).</summary>
    public static float[] Floats(JsonElement base64)
    {
        byte[] bytes = Convert.FromBase64String(base64.GetString()!);
        var values = new float[bytes.Length / sizeof(float)];
        Buffer.BlockCopy(bytes, 0, values, 0, bytes.Length);
        return values;
    }
}
