using System.Collections.Concurrent;
using Celer.Backends.Cuda;
using Celer.Engine.Scheduling;
using Celer.Models.Architectures;
using Celer.Models.Backend;

namespace Celer.Engine.Execution;

/// <summary>
/// The executor of one model on one backend (vLLM's <c>GPUModelRunner</c>): keeps each request's tokens, block
/// table and sampler state across steps, turns a <see cref="SchedulerOutput"/> into one flat <see cref="ForwardBatch"/>
/// (prefill chunks and decodes mixed), asks the model for logits only on the rows that need them (the last row of a
/// sequence that samples this step; prompt rows when prompt logprobs are wanted), and samples.
/// </summary>
public sealed class ModelRunner : IModelExecutor
{
    private readonly DecoderModel _model;
    private readonly IModelBackend _backend;
    private readonly int _blockSize;
    private readonly IReadOnlyCollection<int> _eosTokenIds;
    private readonly SeedSource _seeds;
    private readonly IDeviceSampler? _deviceSampler;
    private readonly DeviceSamplingBatch _deviceBatch = new();
    private readonly IDisposable? _weights;
    private readonly Dictionary<string, RunnerRequest> _requests = new(StringComparer.Ordinal);

    /// <param name="weights">Owned: the memory-mapped checkpoint the CPU backend reads weights from in place.</param>
    /// <param name="deviceSampler">
    /// Samples on the device (reserved for the model's logits rows): steps that only sample never copy logits to the
    /// host. Null: every row is sampled on the host.
    /// </param>
    public ModelRunner(
        DecoderModel model, IModelBackend backend, int numKvBlocks, int blockSize, IReadOnlyCollection<int> eosTokenIds, long seed,
        IDisposable? weights = null, IDeviceSampler? deviceSampler = null)
    {
        _deviceSampler = deviceSampler;
        _weights = weights;
        _model = model;
        _backend = backend;
        NumKvBlocks = numKvBlocks;
        _blockSize = blockSize;
        _eosTokenIds = eosTokenIds;
        _seeds = new SeedSource(seed);
        backend.AllocateKvCache(model.Config.NumHiddenLayers, numKvBlocks, blockSize, model.Attention);
    }

    public int NumKvBlocks { get; }

    public StepTimeline? Timeline => (_backend as CudaBackend)?.Timeline;

    public ModelRunnerOutput Execute(SchedulerOutput schedulerOutput)
    {
        UpdateStates(schedulerOutput);
        if (schedulerOutput.IsEmpty)
        {
            return ModelRunnerOutput.Empty;
        }

        var plan = StepPlan.Build(schedulerOutput, _requests, _blockSize);
        if (_deviceSampler is not null && plan.Uses.All(u => u.Kind == LogitsRowKind.Sample) && plan.Batch.LogitsRows.Length <= _model.MaxLogitsRows)
        {
            return SampleOnDevice(plan, _deviceSampler);
        }

        var sampled = new ConcurrentDictionary<string, IReadOnlyList<int>>(StringComparer.Ordinal);
        var logprobs = new ConcurrentDictionary<string, IReadOnlyList<PositionLogprobs>>(StringComparer.Ordinal);
        var promptLogprobs = new Dictionary<string, List<PositionLogprobs>>(StringComparer.Ordinal);
        int vocab = _model.Config.VocabSize;

        _model.Forward(plan.Batch, (first, count, rows) =>
        {
            // Sampling is per row and independent (each sequence has its own generator), so rows run in parallel.
            Parallel.For(0, count, new ParallelOptions { MaxDegreeOfParallelism = count >= 4 ? -1 : 1 }, r =>
            {
                LogitsRowUse use = plan.Uses[first + r];
                if (use.Kind != LogitsRowKind.Sample)
                {
                    return;
                }

                RunnerRequest request = _requests[use.RequestId];
                SampleResult result = Sampler.Sample(rows.AsSpan(r * vocab, vocab), request.Sampling, _eosTokenIds);
                request.Sampling.Append(result.TokenId);
                sampled[use.RequestId] = [result.TokenId];
                if (result.Logprobs is { } lp)
                {
                    logprobs[use.RequestId] = [lp];
                }
            });

            // Prompt rows read the untouched logits; they are never the rows a sampler overwrote.
            for (int r = 0; r < count; r++)
            {
                LogitsRowUse use = plan.Uses[first + r];
                if (use.Kind == LogitsRowKind.PromptLogprob)
                {
                    RunnerRequest request = _requests[use.RequestId];
                    PositionLogprobs position = Logprobs.Compute(
                        rows.AsSpan(r * vocab, vocab), request.TokenIds[use.Position + 1], request.Sampling.Params.PromptLogprobs ?? 0);
                    if (!promptLogprobs.TryGetValue(use.RequestId, out List<PositionLogprobs>? list))
                    {
                        promptLogprobs[use.RequestId] = list = [];
                    }

                    list.Add(position);
                }
            }
        });

        return new ModelRunnerOutput(
            sampled,
            logprobs.IsEmpty ? null : logprobs,
            promptLogprobs.Count == 0
                ? null
                : promptLogprobs.ToDictionary(p => p.Key, p => new PromptLogprobsChunk(plan.PromptLogprobsStart[p.Key], p.Value), StringComparer.Ordinal));
    }

    /// <summary>A step whose logits rows all sample (no prompt logprobs): the logits stay on the device.</summary>
    private ModelRunnerOutput SampleOnDevice(StepPlan plan, IDeviceSampler sampler)
    {
        Tensor logits = _model.ForwardToDevice(plan.Batch);
        int vocab = _model.Config.VocabSize;
        _deviceBatch.Clear();
        var states = new SamplingState[plan.Uses.Length];
        for (int r = 0; r < states.Length; r++)
        {
            states[r] = _requests[plan.Uses[r].RequestId].Sampling;
            _deviceBatch.Add(states[r], _eosTokenIds, vocab);
        }

        SampleResult[] results = _deviceBatch.Sample(sampler, logits);
        var sampled = new Dictionary<string, IReadOnlyList<int>>(results.Length, StringComparer.Ordinal);
        Dictionary<string, IReadOnlyList<PositionLogprobs>>? logprobs = null;
        for (int r = 0; r < results.Length; r++)
        {
            string id = plan.Uses[r].RequestId;
            states[r].Append(results[r].TokenId);
            sampled[id] = [results[r].TokenId];
            if (results[r].Logprobs is { } lp)
            {
                (logprobs ??= new Dictionary<string, IReadOnlyList<PositionLogprobs>>(StringComparer.Ordinal))[id] = [lp];
            }
        }

        return new ModelRunnerOutput(sampled, logprobs, null);
    }

    /// <summary>Applies the scheduler's diffs: finished requests dropped, new ones cached, running ones extended.</summary>
    private void UpdateStates(SchedulerOutput so)
    {
        foreach (string id in so.FinishedRequestIds)
        {
            _requests.Remove(id);
        }

        foreach (NewRequestData data in so.ScheduledNewRequests)
        {
            SamplingParams p = data.SamplingParams;
            var request = new RunnerRequest(data.RequestId, data.PromptTokenIds, new SamplingState(p, data.PromptTokenIds, _seeds.EffectiveSeed(p.Seed, 0)))
            {
                NumComputedTokens = data.NumComputedTokens,
            };
            request.BlockIds.AddRange(data.BlockIds);
            _requests[data.RequestId] = request;
        }

        foreach (CachedRequestData data in so.ScheduledCachedRequests)
        {
            RunnerRequest request = _requests[data.RequestId];
            if (data.ResumedFromPreemption)
            {
                // The blocks are new and NewTokenIds holds every output token so far.
                request.BlockIds.Clear();
                request.TokenIds.RemoveRange(request.PromptLength, request.TokenIds.Count - request.PromptLength);
            }

            request.TokenIds.AddRange(data.NewTokenIds);
            request.BlockIds.AddRange(data.NewBlockIds);
            request.NumComputedTokens = data.NumComputedTokens;
        }
    }

    public void Dispose()
    {
        _backend.Dispose();
        _weights?.Dispose();
    }
}
