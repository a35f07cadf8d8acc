using System.CommandLine;
using Celer.Engine;

namespace Celer.Cli;

/// <summary>Sampling flags of the offline commands; greedy unless told otherwise.</summary>
internal sealed class SamplingOptions
{
    public Option<int> MaxTokens { get; } = new("--max-tokens") { Description = "Tokens to generate.", DefaultValueFactory = _ => 64 };
    public Option<float> Temperature { get; } = new("--temperature") { Description = "0 = greedy.", DefaultValueFactory = _ => 0f };
    public Option<float> TopP { get; } = new("--top-p") { DefaultValueFactory = _ => 1f };
    public Option<int> TopK { get; } = new("--top-k") { DefaultValueFactory = _ => 0 };
    public Option<float> MinP { get; } = new("--min-p") { DefaultValueFactory = _ => 0f };
    public Option<float> RepetitionPenalty { get; } = new("--repetition-penalty") { DefaultValueFactory = _ => 1f };
    public Option<long?> SamplingSeed { get; } = new("--sampling-seed") { Description = "Per-request seed for reproducible sampling." };

    public void AddTo(Command command)
    {
        foreach (var option in new Option[] { MaxTokens, Temperature, TopP, TopK, MinP, RepetitionPenalty, SamplingSeed })
            command.Options.Add(option);
    }

    public SamplingParams ToSamplingParams(ParseResult result) => new()
    {
        MaxTokens = result.GetValue(MaxTokens),
        Temperature = result.GetValue(Temperature),
        TopP = result.GetValue(TopP),
        TopK = result.GetValue(TopK),
        MinP = result.GetValue(MinP),
        RepetitionPenalty = result.GetValue(RepetitionPenalty),
        Seed = result.GetValue(SamplingSeed),
    };
}
