using Celer.Tokenization;

namespace Celer.Engine.Output;

/// <summary>The front end's view of one user request (vLLM's <c>RequestState</c> + <c>ParentRequest</c>):
/// its n sequences, prompt logprobs gathered so far, and timings.</summary>
internal sealed class ParentRequestState
{
    private readonly PositionLogprobs?[]? _promptLogprobs;
    private int _numPromptLogprobs;

    public ParentRequestState(GenerateRequest request, IReadOnlyList<string> childIds, Tokenizer? tokenizer, double arrivalTime)
    {
        Request = request;
        ArrivalTime = arrivalTime;
        Children = new SequenceState[childIds.Count];
        for (int i = 0; i < childIds.Count; i++)
        {
            Children[i] = new SequenceState(childIds[i], i, tokenizer is null ? null : new SequenceDetokenizer(tokenizer, request.PromptTokenIds, request.Params));
        }
        if (request.Params.PromptLogprobs is not null)
        {
            // Position 0 has no logprob (nothing precedes it); vLLM reports null there.
            _promptLogprobs = new PositionLogprobs?[request.PromptTokenIds.Count];
        }
    }

    public GenerateRequest Request { get; }
    public SequenceState[] Children { get; }
    public double ArrivalTime { get; }
    public double QueuedTime { get; set; }
    public double FirstScheduledTime { get; set; }
    public int NumCachedTokens { get; set; }
    public bool SentFirstOutput { get; set; }

    /// <summary>A pooling request's vector, once its prompt is computed.</summary>
    public float[]? PoolerOutput { get; set; }
    public bool Finished => Children.All(c => c.FinishReason is not null);

    public bool PromptLogprobsComplete => _promptLogprobs is not null && _numPromptLogprobs == _promptLogprobs.Length - 1;

    public IReadOnlyList<PositionLogprobs?>? PromptLogprobs => _promptLogprobs;

    /// <summary>Stores a chunk by position, so a chunk recomputed after preemption or by another sample changes nothing.</summary>
    public void AddPromptLogprobs(Scheduling.PromptLogprobsChunk chunk)
    {
        if (_promptLogprobs is null)
        {
            return;
        }
        for (int i = 0; i < chunk.Logprobs.Count; i++)
        {
            int position = chunk.StartPosition + i;
            if (position >= 1 && position < _promptLogprobs.Length && _promptLogprobs[position] is null)
            {
                _promptLogprobs[position] = chunk.Logprobs[i];
                _numPromptLogprobs++;
            }
        }
    }
}

/// <summary>One of the n sequences of a user request, as the front end tracks it.</summary>
internal sealed class SequenceState(string engineRequestId, int index, SequenceDetokenizer? detokenizer)
{
    public string EngineRequestId { get; } = engineRequestId;
    public int Index { get; } = index;
    public SequenceDetokenizer? Detokenizer { get; } = detokenizer;
    public int NumGeneratedTokens { get; set; }
    public double FirstTokenTime { get; set; }
    public double LastTokenTime { get; set; }
    public FinishReason? FinishReason { get; set; }
    public object? StopReason { get; set; }
}
