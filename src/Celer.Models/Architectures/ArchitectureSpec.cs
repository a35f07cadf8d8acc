namespace Celer.Models.Architectures;

/// <summary>
/// What one member of the Llama family adds to the shared forward pass (<see cref="DecoderModel"/>). Biases and
/// sliding windows are read from config.json by <see cref="Config.ModelConfig"/>; what remains is declared here.
/// </summary>
public sealed record ArchitectureSpec
{
    /// <summary>The HF <c>architectures</c> entry this spec serves.</summary>
    public required string Name { get; init; }

    /// <summary>Per-head RMSNorm of queries and keys before RoPE (Qwen3).</summary>
    public bool QkNorm { get; init; }
}
