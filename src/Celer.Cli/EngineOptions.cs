using System.CommandLine;
using Celer.Engine;

namespace Celer.Cli;

/// <summary>
/// The engine flags shared by every command that loads a model, with vLLM's names
/// (<c>vllm/engine/arg_utils.py</c>), mapped onto <see cref="EngineArgs"/>.
/// </summary>
internal sealed class EngineOptions
{
    // The values the choice flags take, shared with the models file of `celer serve --models-file`.
    public static readonly string[] PreemptionModes = ["recompute", "swap"];
    public static readonly string[] Devices = ["cpu", "cuda"];
    public static readonly string[] Dtypes = ["auto", "half", "float16", "bfloat16", "float", "float32"];
    public static readonly string[] KvCacheDtypes = ["auto", "bfloat16", "fp8", "fp8_e4m3", "fp8_e5m2"];
    public static readonly string[] LoadFormats = ["auto", "dummy", "safetensors"];
    public static readonly string[] Runners = ["auto", "generate", "pooling"];
    public static readonly string[] Converts = ["auto", "none", "embed", "classify"];

    public Option<string?> ServedModelName { get; } = new("--served-model-name") { Description = "Model name used in the API (default: the model directory's name)." };
    public Option<int?> MaxModelLen { get; } = new("--max-model-len") { Description = "Context length (default: from the model's config)." };
    public Option<int> MaxNumSeqs { get; } = new("--max-num-seqs") { Description = "Most sequences in one batch.", DefaultValueFactory = _ => 256 };
    public Option<int?> MaxNumBatchedTokens { get; } = new("--max-num-batched-tokens") { Description = "Token budget of one engine step (default: 8192; without chunked prefill at least --max-model-len)." };
    public Option<int> BlockSize { get; } = new("--block-size") { Description = "Tokens per KV-cache block.", DefaultValueFactory = _ => 16 };
    public Option<float> GpuMemoryUtilization { get; } = new("--gpu-memory-utilization") { Description = "Fraction of GPU memory the engine may use.", DefaultValueFactory = _ => 0.9f };
    public Option<long?> KvCacheMemory { get; } = new("--kv-cache-memory")
    {
        Description = "KV-cache size in bytes, e.g. 4GiB, 512MiB, 2G (default: what --gpu-memory-utilization leaves on a GPU; 4 GiB on the CPU).",
        CustomParser = result =>
        {
            var text = result.Tokens.Count > 0 ? result.Tokens[0].Value : "";
            if (ByteSize.TryParse(text, out var bytes))
                return bytes;
            result.AddError($"--kv-cache-memory: '{text}' is not a byte size (e.g. 4GiB, 512MiB, 1073741824).");
            return null;
        },
    };
    public Option<double> KvOffloadSize { get; } = new("--kv-offload-size", "--kv-offloading-size")
    {
        Description = "GiB of host memory for the KV cache's host tier (vLLM's --kv-offloading-size): blocks evicted from the prefix cache are kept there and loaded back instead of recomputed; 0: off.",
        DefaultValueFactory = _ => 0,
    };
    public Option<string> PreemptionMode { get; } = new Option<string>("--preemption-mode")
    {
        Description = "What a preempted request's KV becomes: recompute (freed, computed again) or swap (stored in the host tier and loaded back; needs --kv-offload-size).",
        DefaultValueFactory = _ => "recompute",
    }.AcceptOnlyFromAmong(PreemptionModes);
    public Option<string> Device { get; } = new Option<string>("--device") { Description = "cpu or cuda.", DefaultValueFactory = _ => "cpu" }.AcceptOnlyFromAmong(Devices);
    public Option<string> Dtype { get; } = new Option<string>("--dtype") { Description = "The dtype the model runs in; auto: the checkpoint's torch_dtype (fp32 checkpoints run in bf16 on a GPU).", DefaultValueFactory = _ => "auto" }.AcceptOnlyFromAmong(Dtypes);
    public Option<string> KvCacheDtype { get; } = new Option<string>("--kv-cache-dtype") { Description = "KV cache dtype: auto (the model's; fp32 on the CPU), bfloat16, fp8 (= fp8_e4m3) or fp8_e5m2.", DefaultValueFactory = _ => "auto" }.AcceptOnlyFromAmong(KvCacheDtypes);
    public Option<string?> Quantization { get; } = new("--quantization", "-q")
    {
        Description = "The method the checkpoint is quantized with (vLLM's names: fp8, compressed-tensors; default: its config.json's quantization_config), or for an unquantized checkpoint the FP8 quantization to apply at load: fp8 (a scale per weight matrix) or ptpc_fp8 (per output row), inputs per token.",
    };
    public Option<bool> EnablePrefixCaching { get; } = new("--enable-prefix-caching") { Description = "Reuse KV blocks of shared prompt prefixes (default on).", DefaultValueFactory = _ => true };
    public Option<bool> NoEnablePrefixCaching { get; } = new("--no-enable-prefix-caching") { Description = "Turn automatic prefix caching off." };
    public Option<string> LoadFormat { get; } = new Option<string>("--load-format") { Description = "auto (safetensors) or dummy (random weights).", DefaultValueFactory = _ => "auto" }.AcceptOnlyFromAmong(LoadFormats);
    public Option<int> Seed { get; } = new("--seed") { Description = "Engine random seed.", DefaultValueFactory = _ => 0 };
    public Option<int> MaxLogprobs { get; } = new("--max-logprobs") { Description = "Most logprobs a request may ask for.", DefaultValueFactory = _ => 20 };
    public Option<bool> EnforceEager { get; } = new("--enforce-eager") { Description = "Never record decode steps as CUDA graphs." };
    public Option<int> TensorParallelSize { get; } = new("--tensor-parallel-size", "-tp")
    {
        Description = "Split the model's layers over this many ranks (heads and MLP columns), one process each.",
        DefaultValueFactory = _ => 1,
    };
    public Option<bool> DisableCustomAllReduce { get; } = new("--disable-custom-all-reduce")
    {
        Description = "Run every all-reduce of a GPU group through NCCL, not the small ones through Celer's one-shot kernel over peer memory.",
    };

    public Option<string?> DistributedExecutorBackend { get; } = new("--distributed-executor-backend")
    {
        Description = "How the ranks run: mp (a worker process per rank, on this host or over --nnodes; the default for --tensor-parallel-size > 1) or uni (one process, one rank).",
    };
    public Option<int> NNodes { get; } = new("--nnodes") { Description = "Hosts the tensor-parallel ranks span, each running an equal share (node 0 serves the API; the others run `celer serve --headless`).", DefaultValueFactory = _ => 1 };
    public Option<int> NodeRank { get; } = new("--node-rank") { Description = "This host's place among --nnodes (0: the API server and rank 0).", DefaultValueFactory = _ => 0 };
    public Option<string> MasterAddr { get; } = new("--master-addr") { Description = "Node 0's address, where the other nodes' workers connect.", DefaultValueFactory = _ => "127.0.0.1" };
    public Option<int> MasterPort { get; } = new("--master-port") { Description = "Node 0's port for the other nodes' workers (the next port carries the CPU collectives).", DefaultValueFactory = _ => 29501 };
    public Option<bool> EnableSleepMode { get; } = new("--enable-sleep-mode")
    {
        Description = "Let the model sleep (POST /sleep?level=1|2, /wake_up, GET /is_sleeping): its KV cache and GPU weights give their memory back; a request wakes it.",
    };
    public Option<string?> HfOverrides { get; } = new("--hf-overrides")
    {
        Description = "JSON object of config.json fields to replace, e.g. '{\"architectures\": [\"LlamaForCausalLM\"]}' for a Llama clone under another name.",
    };
    public Option<string?> SpeculativeConfig { get; } = new("--speculative-config")
    {
        Description = "Speculative decoding as JSON: '{\"method\": \"ngram\", \"num_speculative_tokens\": 4, \"prompt_lookup_max\": 4}' (prompt lookup) or '{\"method\": \"draft_model\", \"model\": \"DIR\", \"num_speculative_tokens\": 3}' (a smaller model with the same vocabulary); turns async scheduling off.",
    };
    public Option<string> Runner { get; } = new Option<string>("--runner")
    {
        Description = "generate (text), pooling (embeddings), or auto: pooling for an architecture without a language-model head (e.g. Qwen3Model) or with --convert embed.",
        DefaultValueFactory = _ => "auto",
    }.AcceptOnlyFromAmong(Runners);
    public Option<string> Convert { get; } = new Option<string>("--convert")
    {
        Description = "embed: serve a generative architecture as an embedding model (pooling from its final hidden states); classify: as a sequence classifier (a score head in the checkpoint, or classifier_from_token's LM-head rows).",
        DefaultValueFactory = _ => "auto",
    }.AcceptOnlyFromAmong(Converts);
    public Option<string?> PoolerConfig { get; } = new("--pooler-config")
    {
        Description = "JSON over the pooler the checkpoint's sentence-transformers files give, e.g. '{\"pooling_type\": \"MEAN\", \"normalize\": false}' (LAST, MEAN or CLS).",
    };
    public Option<bool> AsyncScheduling { get; } = new("--async-scheduling") { Description = "Schedule and launch each step while the previous one runs (default: on with --device cuda, off on the CPU)." };
    public Option<bool> NoAsyncScheduling { get; } = new("--no-async-scheduling") { Description = "Turn async scheduling off." };
    public Option<int[]> CudaGraphSizes { get; } = new("--cuda-graph-sizes")
    {
        Description = "Decode batch sizes recorded as CUDA graphs at startup: one value is the largest (1, 2, 4 and multiples of 8 up to it), several are the exact list.",
        AllowMultipleArgumentsPerToken = true,
    };
    public Option<int?> MaxCudaGraphCaptureSize { get; } = new("--max-cudagraph-capture-size") { Description = "Largest decode batch recorded as a CUDA graph (default: min(max-num-seqs, 512))." };

    public void AddTo(Command command)
    {
        foreach (var option in new Option[]
                 {
                     ServedModelName, MaxModelLen, MaxNumSeqs, MaxNumBatchedTokens, BlockSize, GpuMemoryUtilization, KvCacheMemory, KvOffloadSize, PreemptionMode,
                     Device, Dtype, KvCacheDtype, Quantization, EnablePrefixCaching, NoEnablePrefixCaching, LoadFormat, Seed, MaxLogprobs, EnforceEager, EnableSleepMode, TensorParallelSize, DistributedExecutorBackend, DisableCustomAllReduce, NNodes, NodeRank, MasterAddr, MasterPort,
                     CudaGraphSizes, MaxCudaGraphCaptureSize, AsyncScheduling, NoAsyncScheduling, HfOverrides, SpeculativeConfig,
                     Runner, Convert, PoolerConfig,
                 })
            command.Options.Add(option);
    }

    public EngineArgs ToEngineArgs(ParseResult result, string model) => new()
    {
        Model = model,
        ServedModelName = result.GetValue(ServedModelName),
        MaxModelLen = result.GetValue(MaxModelLen),
        MaxNumSeqs = result.GetValue(MaxNumSeqs),
        MaxNumBatchedTokens = result.GetValue(MaxNumBatchedTokens),
        BlockSize = result.GetValue(BlockSize),
        GpuMemoryUtilization = result.GetValue(GpuMemoryUtilization),
        KvCacheMemoryBytes = result.GetValue(KvCacheMemory),
        KvOffloadSize = result.GetValue(KvOffloadSize),
        PreemptionMode = result.GetValue(PreemptionMode)!,
        Device = result.GetValue(Device)!,
        Dtype = result.GetValue(Dtype)!,
        KvCacheDtype = result.GetValue(KvCacheDtype)!,
        Quantization = result.GetValue(Quantization),
        EnablePrefixCaching = result.GetValue(EnablePrefixCaching) && !result.GetValue(NoEnablePrefixCaching),
        LoadFormat = result.GetValue(LoadFormat)!,
        Seed = result.GetValue(Seed),
        MaxLogprobs = result.GetValue(MaxLogprobs),
        EnforceEager = result.GetValue(EnforceEager),
        EnableSleepMode = result.GetValue(EnableSleepMode),
        TensorParallelSize = result.GetValue(TensorParallelSize),
        DistributedExecutorBackend = result.GetValue(DistributedExecutorBackend),
        DisableCustomAllReduce = result.GetValue(DisableCustomAllReduce),
        NNodes = result.GetValue(NNodes),
        NodeRank = result.GetValue(NodeRank),
        MasterAddr = result.GetValue(MasterAddr)!,
        MasterPort = result.GetValue(MasterPort),
        CudaGraphSizes = result.GetValue(CudaGraphSizes) is { Length: > 0 } sizes ? sizes : null,
        MaxCudaGraphCaptureSize = result.GetValue(MaxCudaGraphCaptureSize),
        AsyncScheduling = result.GetValue(NoAsyncScheduling) ? false : result.GetValue(AsyncScheduling) ? true : null,
        HfOverrides = result.GetValue(HfOverrides),
        SpeculativeConfig = result.GetValue(SpeculativeConfig),
        Runner = result.GetValue(Runner)!,
        Convert = result.GetValue(Convert)!,
        PoolerConfig = result.GetValue(PoolerConfig),
    };
}
