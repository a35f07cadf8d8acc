using System.Text;
using Celer.Engine;

namespace Celer.Server.Serving;

/// <summary>One sample's text, tokens and logprobs so far.</summary>
internal sealed class SequenceAccumulator
{
    public StringBuilder Text { get; } = new();
    public List<int> TokenIds { get; } = [];
    public List<PositionLogprobs> Logprobs { get; } = [];
    public FinishReason? FinishReason { get; set; }
    public object? StopReason { get; set; }
}

/// <summary>
/// Folds the engine's delta outputs of one request (n samples) into whole results, for
/// non-streamed responses and for the usage totals of streamed ones.
/// </summary>
internal sealed class RequestAccumulator
{
    public RequestAccumulator(int n)
    {
        Sequences = new SequenceAccumulator[n];
        for (var i = 0; i < n; i++)
            Sequences[i] = new SequenceAccumulator();
    }

    public SequenceAccumulator[] Sequences { get; }
    public IReadOnlyList<int> PromptTokenIds { get; private set; } = [];
    public IReadOnlyList<PositionLogprobs?>? PromptLogprobs { get; private set; }
    public int NumCachedTokens { get; private set; }
    public bool Finished { get; private set; }

    public int CompletionTokens
    {
        get
        {
            var total = 0;
            foreach (var sequence in Sequences)
                total += sequence.TokenIds.Count;
            return total;
        }
    }

    public void Add(RequestOutput output)
    {
        PromptTokenIds = output.PromptTokenIds;
        PromptLogprobs ??= output.PromptLogprobs;
        NumCachedTokens = output.NumCachedTokens;
        Finished = output.Finished;
        foreach (var delta in output.Outputs)
        {
            var sequence = Sequences[delta.Index];
            sequence.Text.Append(delta.TextDelta);
            sequence.TokenIds.AddRange(delta.TokenIdsDelta);
            if (delta.LogprobsDelta is { } logprobs)
                sequence.Logprobs.AddRange(logprobs);
            if (delta.FinishReason is { } reason)
            {
                sequence.FinishReason = reason;
                sequence.StopReason = delta.StopReason;
            }
        }
    }
}
