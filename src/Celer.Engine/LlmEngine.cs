using Celer.Models.Backend;
using Celer.Tokenization;

namespace Celer.Engine;

/// <summary>
/// The offline engine (vLLM's <c>LLM</c> class): runs a batch of requests to completion on the
/// caller's thread and returns one aggregated output per request, in input order.
/// </summary>
public sealed class LlmEngine : IDisposable
{
    private readonly EngineDriver _driver;
    private readonly IModelExecutor _executor;

    /// <param name="executor">Owned by the engine: disposed with it.</param>
    public LlmEngine(EngineArgs args, IModelExecutor executor, Tokenizer? tokenizer, EngineModelInfo model, IEngineStatsListener? listener = null)
    {
        _driver = new EngineDriver(args, executor, tokenizer, model, listener);
        _executor = executor;
    }

    public EngineStats Stats => _driver.Stats;

    /// <summary>The GPU's busy and idle time per step (CUDA backend); null on the CPU.</summary>
    public StepTimeline? GpuTimeline => _executor.Timeline;
    /// <summary>Whether steps are scheduled while the previous one runs (--async-scheduling, resolved for the backend).</summary>
    public bool AsyncScheduling => _driver.Scheduler.Config.AsyncScheduling;
    public int MaxModelLen => _driver.InputProcessor.MaxModelLen;
    public int VocabSize => _driver.InputProcessor.VocabSize;

    /// <summary>A pooling model's pooler (its requests carry <see cref="GenerateRequest.Pooling"/>); null for a generative model.</summary>
    public PoolerConfig? Pooler => _driver.InputProcessor.Pooler;

    /// <summary>For tests: the scheduler, to check blocks are all back in the pool.</summary>
    internal Scheduling.Scheduler Scheduler => _driver.Scheduler;

    /// <summary>Every request is validated before any runs, so a bad one fails the call with nothing started.</summary>
    public IReadOnlyList<RequestOutput> Generate(IReadOnlyList<GenerateRequest> requests)
    {
        double now = EngineClock.Now;
        var duplicate = requests.GroupBy(r => r.RequestId).FirstOrDefault(g => g.Count() > 1);
        if (duplicate is not null)
        {
            throw new EngineRequestException($"Request id {duplicate.Key} appears more than once.", "request_id");
        }
        var admitted = requests.Select(r => (Request: r, Sequences: _driver.InputProcessor.Process(r, now))).ToList();
        var results = new Dictionary<string, RequestOutputAccumulator>();
        foreach ((GenerateRequest request, IReadOnlyList<Scheduling.Request> sequences) in admitted)
        {
            results[request.RequestId] = new RequestOutputAccumulator(request.Params.N);
            _driver.Add(request, sequences, now);
        }
        int unfinished = requests.Count;
        while (unfinished > 0)
        {
            foreach (RequestOutput delta in _driver.Step())
            {
                results[delta.RequestId].Add(delta);
                unfinished -= delta.Finished ? 1 : 0;
            }
        }
        return requests.Select(r => results[r.RequestId].Build()).ToArray();
    }

    public void Dispose() => _driver.Dispose();
}
