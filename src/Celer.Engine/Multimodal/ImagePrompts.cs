using Celer.Models.Multimodal;

namespace Celer.Engine.Multimodal;

/// <summary>
/// A vision-language model's prompt processing (the image half of an HF processor such as <c>LlavaProcessor</c>): each
/// image placeholder token of a prompt becomes as many placeholders as the image has features, and each image is
/// preprocessed into the pixel values its vision encoder reads.
/// </summary>
/// <param name="preprocess">The model's image processor (its preprocessor_config.json): an image's pixel values.</param>
public sealed class ImagePrompts(int imageTokenId, int featuresPerImage, Func<RgbImage, float[]> preprocess)
{
    public int ImageTokenId { get; } = imageTokenId;

    public int FeaturesPerImage { get; } = featuresPerImage;

    /// <summary>
    /// The prompt with every placeholder expanded, and where each image's run of placeholders starts; refuses counts that
    /// disagree. Cheap: the images are preprocessed by <see cref="Place"/>, once the request has passed its other checks.
    /// </summary>
    public (int[] Tokens, int[] Offsets) Expand(IReadOnlyList<int> prompt, IReadOnlyList<RgbImage> images)
    {
        int placeholders = prompt.Count(id => id == ImageTokenId);
        if (placeholders != images.Count)
        {
            throw new EngineRequestException(
                $"The prompt has {placeholders} image placeholder token{(placeholders == 1 ? "" : "s")} (id {ImageTokenId}) for {images.Count} image{(images.Count == 1 ? "" : "s")}: each image needs exactly one, where it goes.",
                "messages");
        }

        if (images.Count == 0)
        {
            return ([.. prompt], []);
        }

        var tokens = new List<int>(prompt.Count + images.Count * (FeaturesPerImage - 1));
        var offsets = new int[images.Count];
        int next = 0;
        foreach (int id in prompt)
        {
            if (id != ImageTokenId)
            {
                tokens.Add(id);
                continue;
            }

            offsets[next++] = tokens.Count;
            tokens.AddRange(Enumerable.Repeat(ImageTokenId, FeaturesPerImage));
        }

        return ([.. tokens], offsets);
    }

    /// <summary>The images at the offsets <see cref="Expand"/> gave, each preprocessed into its pixel values.</summary>
    public PromptImage[] Place(IReadOnlyList<int> offsets, IReadOnlyList<RgbImage> images) =>
        [.. images.Select((image, i) => new PromptImage(offsets[i], FeaturesPerImage, image.Hash, preprocess(image)))];
}
