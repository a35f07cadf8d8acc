using Celer.Models.Config;
using Celer.Tokenization;

namespace Celer.Engine.Execution;

/// <summary>A model ready to serve: the engine plus what the server needs around it (tokenizer, chat template, names).</summary>
public sealed class LoadedModel : IAsyncDisposable
{
    public required AsyncLlmEngine Engine { get; init; }

    /// <summary>Null for checkpoints without tokenizer.json: token ids in, token ids out.</summary>
    public required Tokenizer? Tokenizer { get; init; }

    public required TokenizerConfig TokenizerConfig { get; init; }

    /// <summary>The default chat template (tokenizer_config.json or chat_template.jinja), or null.</summary>
    public string? ChatTemplate => TokenizerConfig.ChatTemplate;

    public required string ModelName { get; init; }

    public required string ModelPath { get; init; }

    public required int MaxModelLen { get; init; }

    public required ModelConfig ModelConfig { get; init; }

    public required GenerationConfig GenerationConfig { get; init; }

    /// <summary>The backend in words ("cpu (16 threads)", "cuda:0 (NVIDIA H100 80GB HBM3)"), for logs and benchmarks.</summary>
    public required string DeviceName { get; init; }

    public required int NumKvBlocks { get; init; }

    /// <summary>Blocks of the host KV tier (<c>--kv-offload-size</c>); 0 without one.</summary>
    public int NumHostKvBlocks { get; init; }

    /// <summary>Tokens per KV block (--block-size).</summary>
    public required int BlockSize { get; init; }

    public required bool EnablePrefixCaching { get; init; }

    /// <summary>The model's image placeholder token (<see cref="EngineModelInfo.ImageTokenId"/>); null: the model takes text only.</summary>
    public int? ImageTokenId => ModelConfig.Vision?.ImageTokenId;

    public ValueTask DisposeAsync() => Engine.DisposeAsync();
}
