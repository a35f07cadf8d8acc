namespace Celer.Engine.Scheduling;

public sealed partial class Scheduler
{
    /// <summary>
    /// Applies a step's samples: appends each request's new tokens, checks the token-level stop
    /// conditions, and finishes requests that met one. Returns one output per request that
    /// produced tokens, prompt logprobs or a finish.
    /// </summary>
    public List<EngineCoreOutput> UpdateFromOutput(SchedulerOutput schedulerOutput, ModelRunnerOutput runnerOutput)
    {
        foreach (long loadId in runnerOutput.FinishedKvLoads)
        {
            // Its blocks are back and cached: it goes to the front, to be scheduled from the loaded prefix on. Null: it
            // was aborted while loading, and its blocks were freed now.
            if (KvCacheManager.FinishLoad(loadId) is { } loaded && _loading.Remove(loaded))
            {
                _waiting.Prepend(loaded);
            }
        }

        var outputs = new List<EngineCoreOutput>(schedulerOutput.NumScheduledTokens.Count);
        foreach (string requestId in schedulerOutput.NumScheduledTokens.Keys)
        {
            if (!_requests.TryGetValue(requestId, out Request? request) || request.IsFinished)
            {
                // Aborted while the step ran: its samples are dropped.
                continue;
            }
            IReadOnlyList<int> sampled = runnerOutput.SampledTokenIds.GetValueOrDefault(requestId) ?? [];
            bool sampledStep = schedulerOutput.SampledRequestIds.Contains(requestId);
            if (sampled.Count > 0 && !sampledStep)
            {
                throw new InvalidOperationException($"The runner sampled for {requestId}, whose prefill chunk does not reach the end of its tokens.");
            }
            if (sampledStep && Config.AsyncScheduling)
            {
                request.NumOutputPlaceholders--;
            }

            if (schedulerOutput.ScheduledSpecTokens.TryGetValue(requestId, out int[]? drafts) && sampled.Count > 0)
            {
                // The runner returns the accepted drafts and one token of its own: the rejected drafts' positions were
                // counted as computed when scheduled, and are computed again (their KV overwritten) from here.
                int acceptedDrafts = sampled.Count - 1;
                request.NumComputedTokens -= drafts.Length - acceptedDrafts;
                _specDecoding.Record(drafts.Length, acceptedDrafts);
            }
            // A request preempted while this step ran waits in the queue; its token still counts.
            bool waiting = request.Status == RequestStatus.Preempted;
            int accepted = 0;
            bool stopped = false;
            foreach (int tokenId in sampled)
            {
                request.AppendOutputTokenId(tokenId);
                accepted++;
                if (CheckStop(request))
                {
                    // Tokens after a stop (speculative decoding's extra accepted ones) are dropped.
                    stopped = true;
                    break;
                }
            }
            IReadOnlyList<int> newTokenIds = accepted == sampled.Count ? sampled : sampled.Take(accepted).ToArray();
            float[]? pooled = runnerOutput.PoolerOutputs?.GetValueOrDefault(requestId);
            if (pooled is not null)
            {
                // A pooling request ends with its prompt (vLLM: finished, stopped).
                request.Status = RequestStatus.FinishedStopped;
                stopped = true;
            }

            IReadOnlyList<PositionLogprobs>? logprobs = runnerOutput.Logprobs?.GetValueOrDefault(requestId);
            if (logprobs is not null && logprobs.Count > newTokenIds.Count)
            {
                logprobs = logprobs.Take(newTokenIds.Count).ToArray();
            }
            PromptLogprobsChunk? promptLogprobs = runnerOutput.PromptLogprobs?.GetValueOrDefault(requestId);
            if (!stopped && !waiting && runnerOutput.DraftTokenIds?.GetValueOrDefault(requestId) is { Length: > 0 } next)
            {
                // No draft may take the request past max_tokens or the context: its next step adds drafts + 1 tokens.
                int room = Math.Min(request.MaxTokens - request.NumOutputTokens, Config.MaxModelLen - request.NumTokens) - 1;
                request.SpecTokenIds = room <= 0 ? [] : next.Length <= room ? next : next[..room];
            }

            if (stopped)
            {
                if (waiting)
                {
                    _waiting.Remove(request);
                }
                else
                {
                    _running.Remove(request);
                }
                FreeFinished(request);
            }
            if (newTokenIds.Count > 0 || promptLogprobs is not null || stopped)
            {
                outputs.Add(new EngineCoreOutput(
                    requestId, newTokenIds, logprobs, promptLogprobs,
                    request.Status.ToFinishReason(), request.StopReason, Math.Max(0, request.NumCachedTokens),
                    request.QueuedTime, request.FirstScheduledTime) { PoolerOutput = pooled });
            }
        }
        return outputs;
    }

    /// <summary>
    /// Finishes requests from outside the step (client abort, stop string found in text). Blocks
    /// are freed at once; the runner is told in the next <see cref="SchedulerOutput"/>. Unknown or
    /// already finished ids are ignored: an abort may race with the request's own finish.
    /// </summary>
    public void FinishRequests(IEnumerable<string> requestIds, RequestStatus finishedStatus)
    {
        if (!finishedStatus.IsFinished())
        {
            throw new ArgumentOutOfRangeException(nameof(finishedStatus), finishedStatus, "Not a finished status.");
        }
        foreach (string requestId in requestIds)
        {
            if (!_requests.TryGetValue(requestId, out Request? request))
            {
                // Already finished and removed (or never added).
                continue;
            }
            if (request.Status == RequestStatus.Running)
            {
                _running.Remove(request);
            }
            else if (!_loading.Remove(request))
            {
                _waiting.Remove(request);
            }
            request.Status = finishedStatus;
            FreeFinished(request);
        }
    }

    /// <summary>Gauges for this step and counters since the previous call.</summary>
    public SchedulerStats TakeStats(int numScheduledTokens)
    {
        var stats = new SchedulerStats(
            _running.Count, NumWaiting, KvCacheManager.Usage, KvCacheManager.TakePrefixCacheStats(),
            _numPreemptionsSinceStats, numScheduledTokens)
        {
            SpecDecoding = _specDecoding.Take(),
            KvOffload = KvCacheManager.TakeOffloadStats(),
        };
        _numPreemptionsSinceStats = 0;
        return stats;
    }

    /// <summary>vLLM's <c>check_stop</c> on token ids: length first (a hard limit), then, once
    /// min_tokens is reached, EOS (unless ignore_eos) and the stop token ids.</summary>
    private bool CheckStop(Request request)
    {
        if (request.NumTokens >= Config.MaxModelLen || request.NumOutputTokens >= request.MaxTokens)
        {
            request.Status = RequestStatus.FinishedLengthCapped;
            return true;
        }
        if (request.NumOutputTokens < request.SamplingParams.MinTokens)
        {
            return false;
        }
        int last = request.OutputTokenIds[^1];
        if (!request.SamplingParams.IgnoreEos && last == request.EosTokenId)
        {
            request.Status = RequestStatus.FinishedStopped;
            return true;
        }
        if (request.IsStopTokenId(last))
        {
            request.Status = RequestStatus.FinishedStopped;
            request.StopReason = last;
            return true;
        }
        return false;
    }

    private void FreeFinished(Request request)
    {
        KvCacheManager.Free(request);
        KvCacheManager.DropSwappedBlocks(request);
        _requests.Remove(request.RequestId);
        _finishedRequestIds.Add(request.RequestId);
    }
}
