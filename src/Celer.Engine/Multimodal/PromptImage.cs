namespace Celer.Engine.Multimodal;

/// <summary>
/// One image of a prompt (vLLM's <c>PlaceholderRange</c> with its processed input): the prompt positions
/// [<see cref="Offset"/>, Offset + <see cref="Length"/>) hold its placeholder token, and the language model reads its
/// features there instead of that token's embedding.
/// </summary>
/// <param name="Hash">The image's pixels' hash (<see cref="Celer.Models.Multimodal.RgbImage.Hash"/>): part of the prefix-cache key of every block it touches.</param>
/// <param name="PixelValues">What the vision encoder takes: the preprocessed image, channels × height × width.</param>
public sealed record PromptImage(int Offset, int Length, string Hash, float[] PixelValues)
{
    public int End => Offset + Length;
}
