using Celer.Engine.Scheduling;

namespace Celer.Engine;

/// <summary>
/// vLLM's engine arguments, as <c>celer serve</c> flags map onto them (<c>--max-model-len</c>,
/// <c>--max-num-seqs</c>, <c>--max-num-batched-tokens</c>, <c>--block-size</c>, …).
/// </summary>
public sealed record EngineArgs
{
    /// <summary>vLLM's capture sizes below 8; every multiple of 8 follows.</summary>
    private static readonly int[] SmallCaptureSizes = [1, 2, 4];

    /// <summary>vLLM's serving default for the per-step token budget with chunked prefill.</summary>
    public const int DefaultMaxNumBatchedTokens = 8192;

    /// <summary>
    /// A pooling model's default token budget (vLLM's POOLING_MODEL_MAX_NUM_BATCHED_TOKENS): it only runs prompts, so no
    /// decode waits behind a large step, and larger steps keep the GEMMs busier.
    /// </summary>
    public const int DefaultPoolingMaxNumBatchedTokens = 32768;

    public required string Model { get; init; }
    public string? ServedModelName { get; init; }
    public string Device { get; init; } = "cpu";
    public string LoadFormat { get; init; } = "auto";
    public string Dtype { get; init; } = "auto";

    /// <summary>vLLM's <c>--kv-cache-dtype</c>: auto (the model dtype), bfloat16, fp8 (= fp8_e4m3) or fp8_e5m2.</summary>
    public string KvCacheDtype { get; init; } = "auto";

    /// <summary>
    /// vLLM's <c>--quantization</c> (<c>-q</c>): the method the checkpoint is quantized with, by vLLM's names
    /// (<c>fp8</c>, <c>compressed-tensors</c>, …); null reads it from config.json's <c>quantization_config</c>. The loader
    /// refuses a method that differs from the checkpoint's.
    /// </summary>
    public string? Quantization { get; init; }
    public int? MaxModelLen { get; init; }
    public int MaxNumSeqs { get; init; } = 256;
    public int? MaxNumBatchedTokens { get; init; }
    public int BlockSize { get; init; } = 16;
    public long? KvCacheMemoryBytes { get; init; }
    public float GpuMemoryUtilization { get; init; } = 0.9f;
    public bool EnablePrefixCaching { get; init; } = true;

    /// <summary>
    /// <c>--kv-offload-size</c> (vLLM's <c>--kv-offloading-size</c>): GiB of host memory for the KV cache's host tier, where
    /// blocks evicted from the prefix cache go and come back from instead of being recomputed; 0: none.
    /// </summary>
    public double KvOffloadSize { get; init; }

    /// <summary>vLLM's old <c>--preemption-mode</c>: <c>recompute</c>, or <c>swap</c> (into the host tier).</summary>
    public string PreemptionMode { get; init; } = "recompute";
    public bool EnableChunkedPrefill { get; init; } = true;
    public string SchedulingPolicy { get; init; } = "fcfs";
    public int Seed { get; init; }
    public int MaxLogprobs { get; init; } = 20;

    /// <summary>
    /// vLLM's --async-scheduling: schedule and launch each step while the previous one runs on the device. Null: on
    /// where the steps really overlap (CUDA, which samples on the GPU), off elsewhere.
    /// </summary>
    public bool? AsyncScheduling { get; init; }

    /// <summary>
    /// vLLM's --hf-overrides: a JSON object whose fields replace config.json's before the model is read, e.g.
    /// <c>{"architectures": ["LlamaForCausalLM"]}</c> for a Llama clone published under another architecture name.
    /// </summary>
    public string? HfOverrides { get; init; }

    /// <summary>
    /// vLLM's --runner: <c>generate</c> (text generation), <c>pooling</c> (embeddings from the final hidden states), or
    /// <c>auto</c>: pooling for an architecture without a language-model head (<c>…Model</c>, e.g. Qwen3Model) or with
    /// <see cref="Convert"/> <c>embed</c>, else generate.
    /// </summary>
    public string Runner { get; init; } = "auto";

    /// <summary>
    /// vLLM's --convert: <c>embed</c> serves a generative architecture as an embedding model; <c>classify</c> as a sequence
    /// classifier (its <c>…ForSequenceClassification</c>: a <c>score</c> head in the checkpoint, or one made from LM-head
    /// rows by <c>classifier_from_token</c>); <c>auto</c>/<c>none</c> leave it.
    /// </summary>
    public string Convert { get; init; } = "auto";

    /// <summary>
    /// vLLM's --pooler-config: JSON over the pooler the checkpoint's sentence-transformers files give (<c>pooling_type</c>
    /// LAST, MEAN or CLS; <c>normalize</c>).
    /// </summary>
    public string? PoolerConfig { get; init; }

    /// <summary>
    /// vLLM's --speculative-config: a JSON object, e.g. <c>{"method": "ngram", "num_speculative_tokens": 4}</c>
    /// (<see cref="Speculative.SpeculativeConfig"/>). Speculative steps are scheduled synchronously.
    /// </summary>
    public string? SpeculativeConfig { get; init; }

    /// <summary>--speculative-config parsed; null when not given.</summary>
    public Speculative.SpeculativeConfig? ParseSpeculativeConfig() => Speculative.SpeculativeConfig.Parse(SpeculativeConfig);

    /// <summary>vLLM's --enforce-eager: never record decode steps as CUDA graphs.</summary>
    public bool EnforceEager { get; init; }

    /// <summary>
    /// vLLM's --enable-sleep-mode: the model can be put to sleep (its KV cache, and its weights on a GPU, give their memory
    /// back) and woken again (<see cref="AsyncLlmEngine.SleepAsync"/>).
    /// </summary>
    public bool EnableSleepMode { get; init; }

    /// <summary>
    /// vLLM's --tensor-parallel-size: the model's layers split over this many ranks (<see cref="Models.Architectures.TensorParallelShard"/>),
    /// rank 0 in this process and each other a worker process (<see cref="Distributed.TensorParallelWorker"/>).
    /// </summary>
    public int TensorParallelSize { get; init; } = 1;

    /// <summary>
    /// vLLM's --distributed-executor-backend: <c>mp</c>, a worker process per rank, on this host or over --nnodes (the default with more
    /// than one rank), or <c>uni</c>, one process (one rank only). Null: chosen by the size, as vLLM chooses.
    /// </summary>
    public string? DistributedExecutorBackend { get; init; }

    /// <summary>
    /// vLLM's --disable-custom-all-reduce: keep every all-reduce of a GPU group on NCCL. Otherwise the small ones (a decode
    /// step's hidden rows) take the one-shot kernel over peer memory where the host's GPUs reach each other's
    /// (<see cref="Backends.Cuda.CustomAllReduce"/>).
    /// </summary>
    public bool DisableCustomAllReduce { get; init; }

    /// <summary>vLLM's --nnodes: the hosts the tensor-parallel ranks span, each running an equal share of them.</summary>
    public int NNodes { get; init; } = 1;

    /// <summary>
    /// vLLM's --node-rank: this host's place among <see cref="NNodes"/>. Node 0 serves the API and runs rank 0; node n runs
    /// ranks n·share .. (n + 1)·share − 1 as workers of node 0's engine (<c>celer serve --headless</c>).
    /// </summary>
    public int NodeRank { get; init; }

    /// <summary>vLLM's --master-addr: node 0's address, where the other nodes' workers connect.</summary>
    public string MasterAddr { get; init; } = "127.0.0.1";

    /// <summary>
    /// vLLM's --master-port: node 0 takes each step's work to the other nodes' workers on this port, and (on the CPU,
    /// whose ranks cannot share memory across hosts) the collectives on the next one.
    /// </summary>
    public int MasterPort { get; init; } = 29501;

    /// <summary>The tensor-parallel ranks on each node.</summary>
    public int RanksPerNode => TensorParallelSize / NNodes;

    /// <summary>
    /// vLLM's --cuda-graph-sizes: one value is the largest decode batch recorded (1, 2, 4 and the multiples of 8 up to
    /// it); several are exactly the sizes recorded. Null: vLLM's default sizes up to <see cref="MaxCudaGraphCaptureSize"/>.
    /// </summary>
    public IReadOnlyList<int>? CudaGraphSizes { get; init; }

    /// <summary>vLLM's --max-cudagraph-capture-size: the largest decode batch recorded (null: min(max-num-seqs, 512)).</summary>
    public int? MaxCudaGraphCaptureSize { get; init; }

    /// <summary>The decode batch sizes recorded as graphs at startup, ascending.</summary>
    public IReadOnlyList<int> GraphCaptureSizes()
    {
        if (CudaGraphSizes is { Count: > 1 } sizes)
        {
            return [.. sizes.Distinct().Order()];
        }

        if (CudaGraphSizes is [int largest])
        {
            return [.. SmallCaptureSizes.Concat(Enumerable.Range(1, largest / 8).Select(i => 8 * i)).Where(s => s <= largest)];
        }

        return Models.Backend.StepGraphOptions.DefaultSizes(MaxCudaGraphCaptureSize ?? Math.Min(MaxNumSeqs, 512));
    }

    /// <summary>Checks every value on its own; throws <see cref="ArgumentException"/> naming the flag.</summary>
    public void Validate()
    {
        if (string.IsNullOrWhiteSpace(Model))
        {
            throw new ArgumentException("--model must be set.", nameof(Model));
        }
        Require(MaxModelLen is null or > 0, "--max-model-len must be positive", nameof(MaxModelLen));
        Require(MaxNumSeqs > 0, "--max-num-seqs must be positive", nameof(MaxNumSeqs));
        Require(MaxNumBatchedTokens is null or > 0, "--max-num-batched-tokens must be positive", nameof(MaxNumBatchedTokens));
        Require(BlockSize is > 0 and <= 256 && (BlockSize & (BlockSize - 1)) == 0, "--block-size must be a power of two up to 256", nameof(BlockSize));
        Require(KvCacheMemoryBytes is null or > 0, "--kv-cache-memory must be positive", nameof(KvCacheMemoryBytes));
        Require(GpuMemoryUtilization is > 0f and <= 1f, "--gpu-memory-utilization must be in (0, 1]", nameof(GpuMemoryUtilization));
        Require(TensorParallelSize >= 1, "--tensor-parallel-size must be at least 1", nameof(TensorParallelSize));
        Require(DistributedExecutorBackend is null or "mp" or "uni",
            DistributedExecutorBackend is "ray" or "external_launcher"
                ? $"--distributed-executor-backend {DistributedExecutorBackend} is not supported: Celer runs its ranks as worker processes (mp)"
                : "--distributed-executor-backend must be mp or uni",
            nameof(DistributedExecutorBackend));
        Require(DistributedExecutorBackend != "uni" || TensorParallelSize == 1,
            "--distributed-executor-backend uni runs one rank in one process: use mp for --tensor-parallel-size above 1", nameof(DistributedExecutorBackend));
        Require(NNodes >= 1, "--nnodes must be at least 1", nameof(NNodes));
        Require(NodeRank >= 0 && NodeRank < NNodes, $"--node-rank must be in 0 .. {NNodes - 1} (--nnodes {NNodes})", nameof(NodeRank));
        Require(TensorParallelSize % NNodes == 0,
            $"--tensor-parallel-size {TensorParallelSize} does not split evenly over --nnodes {NNodes}: every node runs the same number of ranks", nameof(NNodes));
        Require(MasterPort is > 0 and < 65535, "--master-port must be in 1 .. 65534 (the next port carries the CPU collectives)", nameof(MasterPort));
        Require(!string.IsNullOrWhiteSpace(MasterAddr), "--master-addr must be set", nameof(MasterAddr));
        Require(MaxLogprobs >= 0, "--max-logprobs must be non-negative", nameof(MaxLogprobs));
        Require(KvCacheDtype is "auto" or "bfloat16" or "fp8" or "fp8_e4m3" or "fp8_e5m2", "--kv-cache-dtype must be auto, bfloat16, fp8, fp8_e4m3 or fp8_e5m2", nameof(KvCacheDtype));
        Require(CudaGraphSizes is null || CudaGraphSizes.All(size => size > 0), "--cuda-graph-sizes must be positive", nameof(CudaGraphSizes));
        Require(MaxCudaGraphCaptureSize is null or > 0, "--max-cudagraph-capture-size must be positive", nameof(MaxCudaGraphCaptureSize));
        Require(CudaGraphSizes is null || MaxCudaGraphCaptureSize is null || CudaGraphSizes.Max() <= MaxCudaGraphCaptureSize,
            "--cuda-graph-sizes must not exceed --max-cudagraph-capture-size", nameof(CudaGraphSizes));
        Require(Runner is "auto" or "generate" or "pooling", "--runner must be auto, generate or pooling", nameof(Runner));
        Require(Convert is "auto" or "none" or "embed" or "classify", "--convert must be auto, none, embed or classify", nameof(Convert));
        Require(double.IsFinite(KvOffloadSize) && KvOffloadSize >= 0, "--kv-offload-size must be a non-negative number of GiB", nameof(KvOffloadSize));
        Require(ParsePreemptionMode() != Scheduling.PreemptionMode.Swap || KvOffloadSize > 0,
            "--preemption-mode swap swaps into the host tier: set --kv-offload-size", nameof(PreemptionMode));
        Require(KvOffloadSize == 0 || EnablePrefixCaching || ParsePreemptionMode() == Scheduling.PreemptionMode.Swap,
            "--kv-offload-size keeps the blocks the prefix cache evicts: it needs prefix caching, or --preemption-mode swap", nameof(KvOffloadSize));
        Require(!(Convert is "embed" or "classify" && Runner == "generate"), $"--convert {Convert} makes a pooling model: it does not go with --runner generate", nameof(Convert));
        ParsePolicy();
        ParseHfOverrides();
        ParseSpeculativeConfig();
    }

    /// <summary>--hf-overrides as a JSON object; null when not given.</summary>
    public System.Text.Json.Nodes.JsonObject? ParseHfOverrides()
    {
        if (string.IsNullOrWhiteSpace(HfOverrides))
        {
            return null;
        }

        try
        {
            return System.Text.Json.Nodes.JsonNode.Parse(HfOverrides) as System.Text.Json.Nodes.JsonObject
                ?? throw new ArgumentException("--hf-overrides must be a JSON object, e.g. '{\"architectures\": [\"LlamaForCausalLM\"]}'.", nameof(HfOverrides));
        }
        catch (System.Text.Json.JsonException e)
        {
            throw new ArgumentException($"--hf-overrides is not valid JSON: {e.Message}", nameof(HfOverrides), e);
        }
    }

    public PreemptionMode ParsePreemptionMode() => PreemptionMode.ToLowerInvariant() switch
    {
        "recompute" => Scheduling.PreemptionMode.Recompute,
        "swap" => Scheduling.PreemptionMode.Swap,
        _ => throw new ArgumentException($"--preemption-mode must be 'recompute' or 'swap', got '{PreemptionMode}'.", nameof(PreemptionMode)),
    };

    /// <summary>
    /// What the prefix cache's block hashes are seeded with: the model directory and everything that changes the KV it
    /// computes for the same tokens (dtype, KV-cache dtype, quantization, config overrides, the weights' format), so
    /// caches of two models, or of one model served two ways, never share a block.
    /// </summary>
    public string PrefixCacheIdentity() =>
        string.Join('\n', Path.GetFullPath(Model), Dtype, KvCacheDtype, Quantization ?? "", HfOverrides ?? "", LoadFormat.ToLowerInvariant());

    public SchedulingPolicy ParsePolicy() => SchedulingPolicy.ToLowerInvariant() switch
    {
        "fcfs" => Scheduling.SchedulingPolicy.Fcfs,
        "priority" => Scheduling.SchedulingPolicy.Priority,
        _ => throw new ArgumentException($"--scheduling-policy must be 'fcfs' or 'priority', got '{SchedulingPolicy}'.", nameof(SchedulingPolicy)),
    };

    /// <summary>
    /// Resolves the scheduler's limits once the model's context length and the backend's KV pool
    /// are known, with vLLM's cross-checks: the budget holds at least one sequence per slot, a whole
    /// prompt when chunked prefill is off, and the pool holds at least one full-length sequence.
    /// </summary>
    /// <param name="executor">The executor the scheduler will drive: whether it can, and by default does, run steps asynchronously.</param>
    /// <param name="pooler">
    /// A pooling model's pooler: a larger default token budget (<see cref="DefaultPoolingMaxNumBatchedTokens"/>), and for an
    /// encoder (<see cref="PoolerConfig.WholeSequences"/>) neither chunked prefill nor prefix caching, as vLLM runs encoder-only models.
    /// </param>
    public SchedulerConfig CreateSchedulerConfig(int modelMaxModelLen, int numKvBlocks, IModelExecutor? executor = null, PoolerConfig? pooler = null)
    {
        bool pooling = pooler is not null, whole = pooler?.WholeSequences == true;
        bool chunkedPrefill = EnableChunkedPrefill && !whole;
        Validate();
        bool asyncScheduling = AsyncScheduling ?? executor?.OverlapsSteps ?? false;
        if (asyncScheduling && executor is { SupportsAsyncScheduling: false })
        {
            throw new ArgumentException(
                ParseSpeculativeConfig() is null ? "--async-scheduling is not supported by this model executor." : "--async-scheduling does not work with --speculative-config yet.",
                nameof(AsyncScheduling));
        }
        int maxModelLen = MaxModelLen ?? modelMaxModelLen;
        if (maxModelLen > modelMaxModelLen)
        {
            throw new ArgumentException($"--max-model-len {maxModelLen} is larger than the model's maximum context length {modelMaxModelLen}.", nameof(MaxModelLen));
        }
        int fallback = pooling ? DefaultPoolingMaxNumBatchedTokens : DefaultMaxNumBatchedTokens;
        int budget = MaxNumBatchedTokens ?? (chunkedPrefill ? fallback : Math.Max(maxModelLen, fallback));
        if (budget < MaxNumSeqs)
        {
            throw new ArgumentException($"--max-num-batched-tokens ({budget}) must be greater than or equal to --max-num-seqs ({MaxNumSeqs}).", nameof(MaxNumBatchedTokens));
        }
        if (!chunkedPrefill && budget < maxModelLen)
        {
            throw new ArgumentException(
                $"--max-num-batched-tokens ({budget}) is smaller than --max-model-len ({maxModelLen}): without chunked prefill{(whole ? " (a model attending both ways, an encoder or EmbeddingGemma, reads each input whole)" : "")} the longest prompt could never be scheduled.",
                nameof(MaxNumBatchedTokens));
        }
        int blocksNeeded = ((maxModelLen + BlockSize - 1) / BlockSize) + 1;
        if (numKvBlocks < blocksNeeded)
        {
            throw new ArgumentException($"The KV cache has {numKvBlocks - 1} blocks of {BlockSize} tokens ({(numKvBlocks - 1) * BlockSize} tokens) but one sequence of --max-model-len {maxModelLen} needs {blocksNeeded - 1}. Increase the KV cache memory or decrease --max-model-len.", nameof(MaxModelLen));
        }
        return new SchedulerConfig(
            MaxNumSeqs, budget, maxModelLen, BlockSize, numKvBlocks, EnablePrefixCaching && !whole, chunkedPrefill, ParsePolicy(), asyncScheduling,
            ParseSpeculativeConfig()?.NumLookaheadTokens ?? 0, executor?.NumHostKvBlocks ?? 0, ParsePreemptionMode(), PrefixCacheIdentity());
    }

    private static void Require(bool condition, string message, string param)
    {
        if (!condition)
        {
            throw new ArgumentException(message + ".", param);
        }
    }
}
