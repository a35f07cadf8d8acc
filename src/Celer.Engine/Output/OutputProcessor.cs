using Celer.Engine.Scheduling;
using Celer.Tokenization;

namespace Celer.Engine.Output;

/// <summary>What one step produced for the callers.</summary>
/// <param name="RequestOutputs">One delta per user request that changed.</param>
/// <param name="EngineRequestsToAbort">Sequences a stop string finished: the core must free them (vLLM aborts them).</param>
/// <param name="FinishedRequests">User requests that finished in this step, with their metrics.</param>
public sealed record ProcessedOutputs(
    IReadOnlyList<RequestOutput> RequestOutputs,
    IReadOnlyList<string> EngineRequestsToAbort,
    IReadOnlyList<(string RequestId, RequestMetrics Metrics)> FinishedRequests,
    int NumPromptTokens,
    int NumGenerationTokens,
    IReadOnlyList<double> TimesToFirstToken,
    IReadOnlyList<double> InterTokenLatencies);

/// <summary>
/// Turns the core's per-sequence outputs into per-request <see cref="RequestOutput"/> deltas
/// (vLLM's v1 <c>OutputProcessor</c>): detokenizes, applies stop strings, gathers the n samples
/// of a request, and records timings. Single-threaded: the engine loop owns it.
/// </summary>
public sealed class OutputProcessor(Tokenizer? tokenizer)
{
    private readonly Dictionary<string, ParentRequestState> _requests = [];
    private readonly Dictionary<string, (ParentRequestState Parent, SequenceState Sequence)> _sequences = [];

    public int NumUnfinishedRequests => _requests.Count;

    public bool Contains(string requestId) => _requests.ContainsKey(requestId);

    public void AddRequest(GenerateRequest request, IReadOnlyList<Request> engineRequests, double arrivalTime)
    {
        if (request.Images.Count > 0)
        {
            // The prompt as the model reads it, each image's placeholder expanded (vLLM's prompt_token_ids and usage count those).
            request = request with { PromptTokenIds = engineRequests[0].PromptTokenIds };
        }

        var parent = new ParentRequestState(request, engineRequests.Select(r => r.RequestId).ToArray(), tokenizer, arrivalTime);
        _requests.Add(request.RequestId, parent);
        foreach (SequenceState sequence in parent.Children)
        {
            _sequences.Add(sequence.EngineRequestId, (parent, sequence));
        }
    }

    public ProcessedOutputs Process(IReadOnlyList<EngineCoreOutput> coreOutputs, double now)
    {
        var changed = new Dictionary<ParentRequestState, List<CompletionOutput>>();
        var toAbort = new List<string>();
        var finished = new List<(string, RequestMetrics)>();
        var ttfts = new List<double>();
        var itls = new List<double>();
        int promptTokens = 0, generationTokens = 0;

        foreach (EngineCoreOutput output in coreOutputs)
        {
            if (!_sequences.TryGetValue(output.RequestId, out var entry))
            {
                // Aborted by the caller while the step ran.
                continue;
            }
            (ParentRequestState parent, SequenceState sequence) = entry;
            parent.QueuedTime = parent.QueuedTime == 0 ? output.QueuedTime : parent.QueuedTime;
            parent.FirstScheduledTime = parent.FirstScheduledTime == 0 ? output.FirstScheduledTime : parent.FirstScheduledTime;
            parent.NumCachedTokens = Math.Max(parent.NumCachedTokens, output.NumCachedTokens);
            if (output.PromptLogprobs is not null)
            {
                parent.AddPromptLogprobs(output.PromptLogprobs);
            }

            if (output.PoolerOutput is not null)
            {
                // Pooled: its prompt is processed (counted here, as a generation's is at its first token).
                parent.PoolerOutput = output.PoolerOutput;
                promptTokens += parent.Request.PromptTokenIds.Count;
            }

            if (output.NewTokenIds.Count > 0)
            {
                generationTokens += output.NewTokenIds.Count;
                if (sequence.NumGeneratedTokens == 0)
                {
                    sequence.FirstTokenTime = now;
                    ttfts.Add(now - parent.ArrivalTime);
                    promptTokens += parent.Request.PromptTokenIds.Count;
                }
                else
                {
                    itls.Add(now - sequence.LastTokenTime);
                }
                sequence.LastTokenTime = now;
                sequence.NumGeneratedTokens += output.NewTokenIds.Count;
            }

            FinishReason? finishReason = output.FinishReason;
            object? stopReason = output.StopReason;
            if (sequence.Detokenizer is { } detokenizer)
            {
                string? stopString = detokenizer.Update(output.NewTokenIds, stopTerminated: finishReason == FinishReason.Stop);
                if (stopString is not null)
                {
                    if (finishReason is null)
                    {
                        toAbort.Add(sequence.EngineRequestId);
                    }
                    finishReason = FinishReason.Stop;
                    stopReason = stopString;
                }
            }
            sequence.FinishReason = finishReason;
            sequence.StopReason = stopReason;
            string text = sequence.Detokenizer?.NextTextDelta(finishReason is not null) ?? "";
            if (text.Length == 0 && output.NewTokenIds.Count == 0 && finishReason is null)
            {
                // Only prompt logprobs moved (a prefill chunk): nothing to send for this sample yet.
                continue;
            }
            if (!changed.TryGetValue(parent, out List<CompletionOutput>? completions))
            {
                changed[parent] = completions = [];
            }
            completions.Add(new CompletionOutput(sequence.Index, text, output.NewTokenIds, output.NewLogprobs, finishReason, stopReason));
            if (finishReason is not null)
            {
                _sequences.Remove(sequence.EngineRequestId);
            }
        }

        var requestOutputs = new List<RequestOutput>(changed.Count);
        foreach ((ParentRequestState parent, List<CompletionOutput> completions) in changed)
        {
            RequestMetrics? metrics = null;
            if (parent.Finished)
            {
                metrics = BuildMetrics(parent, now);
                finished.Add((parent.Request.RequestId, metrics));
                _requests.Remove(parent.Request.RequestId);
            }
            requestOutputs.Add(BuildOutput(parent, completions, metrics));
        }
        return new ProcessedOutputs(requestOutputs, toAbort, finished, promptTokens, generationTokens, ttfts, itls);
    }

    /// <summary>
    /// Ends a user request from outside (client gone, <c>AbortAsync</c>). Returns the engine
    /// sequences the core must free, and the final output (finish reason abort on every
    /// unfinished sample), or null when the request is unknown or already finished.
    /// </summary>
    public (IReadOnlyList<string> EngineRequestIds, RequestOutput Output, RequestMetrics Metrics)? Abort(string requestId, double now)
    {
        if (!_requests.Remove(requestId, out ParentRequestState? parent))
        {
            return null;
        }
        var engineIds = new List<string>();
        var completions = new List<CompletionOutput>();
        foreach (SequenceState sequence in parent.Children.Where(c => c.FinishReason is null))
        {
            sequence.FinishReason = FinishReason.Abort;
            engineIds.Add(sequence.EngineRequestId);
            _sequences.Remove(sequence.EngineRequestId);
            completions.Add(new CompletionOutput(sequence.Index, sequence.Detokenizer?.NextTextDelta(finished: true) ?? "", [], null, FinishReason.Abort, null));
        }
        RequestMetrics metrics = BuildMetrics(parent, now);
        return (engineIds, BuildOutput(parent, completions, metrics), metrics);
    }

    /// <summary>Drops every request (the engine died); returns their ids.</summary>
    public IReadOnlyList<string> Clear()
    {
        string[] ids = [.. _requests.Keys];
        _requests.Clear();
        _sequences.Clear();
        return ids;
    }

    private static RequestOutput BuildOutput(ParentRequestState parent, List<CompletionOutput> completions, RequestMetrics? metrics)
    {
        IReadOnlyList<PositionLogprobs?>? promptLogprobs = null;
        if (!parent.SentFirstOutput && parent.PromptLogprobsComplete)
        {
            promptLogprobs = parent.PromptLogprobs;
        }
        parent.SentFirstOutput |= promptLogprobs is not null || parent.Request.Params.PromptLogprobs is null;
        completions.Sort((a, b) => a.Index.CompareTo(b.Index));
        return new RequestOutput(parent.Request.RequestId, parent.Request.PromptTokenIds, promptLogprobs, completions, metrics is not null, parent.NumCachedTokens, metrics)
        {
            PoolerOutput = parent.PoolerOutput,
        };
    }

    private static RequestMetrics BuildMetrics(ParentRequestState parent, double now)
    {
        SequenceState[] children = parent.Children;
        double firstToken = children.Where(c => c.FirstTokenTime > 0).Select(c => c.FirstTokenTime).DefaultIfEmpty(0).Min();
        double lastToken = children.Select(c => c.LastTokenTime).Max();
        // The request's reason is its last sample's; a request aborted part-way reports abort.
        FinishReason reason = children.Any(c => c.FinishReason == FinishReason.Abort) ? FinishReason.Abort : children[^1].FinishReason ?? FinishReason.Abort;
        return new RequestMetrics(
            parent.ArrivalTime, parent.QueuedTime, parent.FirstScheduledTime, firstToken, lastToken, now,
            parent.Request.PromptTokenIds.Count, children.Sum(c => c.NumGeneratedTokens), parent.NumCachedTokens,
            children.Length, parent.Request.Params.MaxTokens, reason, children.Max(c => c.NumGeneratedTokens));
    }
}
