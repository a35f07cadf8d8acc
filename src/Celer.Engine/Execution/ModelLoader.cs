using System.Diagnostics;
using Celer.Models.Architectures;
using Celer.Models.Backend;
using Celer.Models.Config;
using Celer.Models.Multimodal;
using Celer.Models.Quantization;
using Celer.Models.Weights;
using Celer.Engine.Distributed;
using Celer.Engine.Multimodal;
using Celer.Engine.Speculative;
using Celer.Tokenization;

namespace Celer.Engine.Execution;

/// <summary>
/// Turns <see cref="EngineArgs"/> into a running engine: reads the model directory (config, generation config,
/// tokenizer), picks the backend, loads the weights (or dummy ones), sizes the KV cache and builds the runner.
/// </summary>
public static partial class ModelLoader
{
    /// <summary>vLLM's default CPU KV cache space (VLLM_CPU_KVCACHE_SPACE = 4 GiB).</summary>
    public const long DefaultCpuKvCacheBytes = CpuPlatform.DefaultKvCacheSpace;

    /// <param name="wrapExecutor">Wraps the model runner before the engine gets it (instrumentation, fault injection in tests).</param>
    /// <param name="log">Startup lines, as vLLM logs them: the time of each phase, the KV cache size, the graphs recorded.</param>
    public static LoadedModel Load(
        EngineArgs args, IProgress<ModelLoadProgress>? progress = null, IEngineStatsListener? listener = null,
        Func<IModelExecutor, IModelExecutor>? wrapExecutor = null, Action<string>? log = null)
    {
        Parts parts = LoadParts(args, progress, log);
        IModelExecutor executor = wrapExecutor is null ? parts.Runner : wrapExecutor(parts.Runner);
#pragma warning disable CA2000 // the returned LoadedModel owns the engine
        var engine = new AsyncLlmEngine(args, executor, parts.Tokenizer, parts.Info, listener);
#pragma warning restore CA2000
        return parts.ToLoaded(engine);
    }

    /// <summary>The offline engine over the same parts (benchmarks, batch generation).</summary>
    public static (LlmEngine Engine, Tokenizer? Tokenizer, EngineModelInfo Info) LoadOffline(
        EngineArgs args, IProgress<ModelLoadProgress>? progress = null, Action<string>? log = null, Func<IModelExecutor, IModelExecutor>? wrapExecutor = null)
    {
        Parts parts = LoadParts(args, progress, log);
        IModelExecutor executor = wrapExecutor is null ? parts.Runner : wrapExecutor(parts.Runner);
        return (new LlmEngine(args, executor, parts.Tokenizer, parts.Info), parts.Tokenizer, parts.Info);
    }

    private sealed record Parts(
        EngineArgs Args, ModelConfig Config, GenerationConfig Generation, TokenizerConfig TokenizerConfig, Tokenizer? Tokenizer,
        EngineModelInfo Info, ModelRunner Runner, string DeviceName)
    {
        public LoadedModel ToLoaded(AsyncLlmEngine engine) => new()
        {
            Engine = engine,
            Tokenizer = Tokenizer,
            TokenizerConfig = TokenizerConfig,
            ModelName = Args.ServedModelName ?? Path.GetFileName(Path.TrimEndingDirectorySeparator(Path.GetFullPath(Args.Model))),
            ModelPath = Path.GetFullPath(Args.Model),
            MaxModelLen = engine.MaxModelLen,
            ModelConfig = Config,
            GenerationConfig = Generation,
            DeviceName = DeviceName,
            NumKvBlocks = Runner.NumKvBlocks,
            NumHostKvBlocks = Runner.NumHostKvBlocks,
            BlockSize = Args.BlockSize,
            EnablePrefixCaching = Args.EnablePrefixCaching && Info.Pooler?.WholeSequences != true,   // encoders share nothing
        };
    }

    private static Parts LoadParts(EngineArgs args, IProgress<ModelLoadProgress>? progress, Action<string>? log)
    {
        var total = Stopwatch.StartNew();
        var phase = Stopwatch.StartNew();
        void Phase(string what)
        {
            log?.Invoke($"{what} ({phase.Elapsed.TotalSeconds:F2} s)");
            phase.Restart();
        }

        args.Validate();
        string dir = args.Model;
        if (!Directory.Exists(dir))
        {
            throw new ModelLoadException($"Model directory '{dir}' does not exist.");
        }

        ModelConfig config = ModelConfig.Load(dir, args.ParseHfOverrides());
        if (args.Convert == "classify")
        {
            config = AsClassifier(args, dir, config);
        }

        (config, PoolerConfig? pooler, int? maxSeqLength) = PoolingRunner.Resolve(args, dir, config);
        bool encoder = ModelRegistry.IsEncoder(config);
        GenerationConfig generation = GenerationConfig.Load(dir);
        TokenizerConfig tokenizerConfig = TokenizerConfig.Load(dir);
        string tokenizerPath = Path.Combine(dir, "tokenizer.json");
        Tokenizer? tokenizer = File.Exists(tokenizerPath) ? Tokenizer.FromFile(tokenizerPath, tokenizerConfig, config.ModelType) : null;
        if (config.Classifier is { FromTokens: { } fromTokens } classifier)
        {
            // An LLM reranker's head comes from the LM-head rows of tokens named as vocabulary strings (convert_tokens_to_ids).
            int[] ids = [.. fromTokens.Select(t => tokenizer?.TokenToId(t)
                ?? throw new ModelLoadException($"'{dir}': classifier_from_token names '{t}', which {(tokenizer is null ? "needs the model's tokenizer.json" : "is not a token of the tokenizer")}."))];
            config = config with { Classifier = classifier with { FromTokenIds = ids } };
            pooler = pooler! with { Classifier = pooler.Classifier! with { FromTokenIds = ids } };
        }

        // sentence-transformers' max_seq_length caps an embedding model's inputs, as vLLM takes it.
        int modelMaxLen = Math.Min(config.MaxPositionEmbeddings, maxSeqLength ?? int.MaxValue);
        int maxModelLen = Math.Min(args.MaxModelLen ?? modelMaxLen, modelMaxLen);
        // The token budget sizes the activation buffers; the pool size is not known yet, so it is checked later.
        int maxNumTokens = args.CreateSchedulerConfig(modelMaxLen, int.MaxValue, pooler: pooler).MaxNumBatchedTokens;
        int maxLogitsRows = Math.Min(args.MaxNumSeqs, maxNumTokens);

        Phase($"read the model config ({config.Architecture}) and tokenizer");
        DevicePlatform platform = DevicePlatform.For(args.Device);
        if (QuantizationConfig.RequestRefusal(args.Quantization, config.Quantization) is { } mismatch)
        {
            throw new ModelLoadException($"'{dir}': {mismatch}.");
        }

        // The checkpoint's own quantization, or the one --quantization asks for at load.
        QuantizationConfig? quantization = config.Quantization ?? QuantizationConfig.Online(args.Quantization);
        if (quantization is not null)
        {
            if (platform.QuantizationRefusal(quantization) is { } refusal)
            {
                throw new ModelLoadException($"'{dir}' {refusal}.");
            }

            // MXFP4 is the exception: dummy weights have random MXFP4 bytes for gpt-oss's experts (DummyWeightSource).
            if (!quantization.IsOnline && quantization.Method != "mxfp4" && args.LoadFormat.Equals("dummy", StringComparison.OrdinalIgnoreCase))
            {
                throw new ModelLoadException($"'{dir}' is a quantized checkpoint ({quantization.Method}): --load-format dummy makes unquantized weights only, and MXFP4 experts (--quantization fp8 on an unquantized config quantizes them).");
            }
        }

        if (pooler is not null && args.ParseSpeculativeConfig() is not null)
        {
            throw new ModelLoadException("--speculative-config goes with text generation, not a pooling model (--runner pooling).");
        }

        DType dtype = ModelDType(args, config, quantization, platform);
        DType? kvDType = KvCacheDType(args, dtype, platform);
        if (args.EnableSleepMode && args.ParseSpeculativeConfig() is { UsesModel: true })
        {
            throw new ModelLoadException("--enable-sleep-mode does not cover a draft model's or head's memory yet: serve it without sleep mode, or use the ngram method.");
        }

        if (args.NodeRank > 0)
        {
            throw new ModelLoadException($"--node-rank {args.NodeRank} runs this node's tensor-parallel ranks for node 0's engine, not an engine of its own: start it with --headless.");
        }

        if (config.Vision is { } vl && VisionRefusal(args, pooler) is { } notWithImages)
        {
            throw new ModelLoadException($"'{dir}' is a vision-language model ({vl.Architecture}): {notWithImages}.");
        }

        if (args.TensorParallelSize > 1 && TensorParallelRefusal(args, platform, pooler, encoder) is { } notSplit)
        {
            throw new ModelLoadException($"--tensor-parallel-size {args.TensorParallelSize}: {notSplit}.");
        }

        IModelBackend backend = platform.CreateBackend(dtype, kvDType, args.EnableSleepMode);
        Phase($"backend {backend.Name} ready, computing in {backend.ActivationDType}");
        ProgressWeightSource? weights = null;
        DraftParts? draft = null;
        HeadParts? head = null;
        IImageEncoder? imageEncoder = null;
        (WorkerProcesses Workers, CollectiveGroups.Member Group)? tensorParallel = null;
        try
        {
            weights = OpenWeights(args, dir, quantization, dtype, platform, progress, baseModelNames: pooler is not null);
            StepGraphOptions? graphs = GraphOptions(args, maxModelLen, pooling: pooler is not null);
            if (args.TensorParallelSize > 1)
            {
                DecoderModel.CheckSplit(config, args.TensorParallelSize, pooling: pooler is not null);
                // Ranks 1 .. n − 1 are worker processes, loading their shards while this one loads rank 0's.
                tensorParallel = StartWorkers(args, config, backend, maxModelLen, maxNumTokens, maxLogitsRows, dtype, kvDType, log);
            }

#pragma warning disable CA2000 // LanguageModelWeights owns nothing (its Dispose is empty); imageEncoder is disposed in the catch below until the runner owns it
            DecoderModel? decoder = encoder ? null : new DecoderModel(
                config, config.Vision is null ? weights : new LanguageModelWeights(weights), backend, maxNumTokens, maxLogitsRows, graphs,
                pooling: pooler is not null, tensorParallel: tensorParallel?.Group.Collectives);
            if (config.Vision is { } vision)
            {
                imageEncoder = LoadImageEncoder(vision, config, weights, platform, backend, dtype, maxNumTokens);
#pragma warning restore CA2000
                Phase($"vision tower loaded: {(vision.Vision.Tower == VisionTower.Clip ? "CLIP" : "SigLIP")}, {vision.LayersRun} of {vision.Vision.NumHiddenLayers} layers run, {vision.FeaturesPerImage} features per image, {imageEncoder.MaxImagesPerPass} images per pass");
            }

            IPoolingModel model = decoder ?? (IPoolingModel)new EncoderModel(config, weights, backend, maxNumTokens, maxLogitsRows);
            weights.Complete();
            Phase($"weights loaded: {weights.BytesLoaded / (double)(1L << 30):F2} GiB, served in {dtype} ({args.LoadFormat})");
            // Sampling on the GPU: its scratch is counted before the KV cache takes the rest of the card.
            IDeviceSampler? deviceSampler = pooler is null ? backend as IDeviceSampler : null;
            deviceSampler?.ReserveSampling(maxLogitsRows, config.VocabSize);
            SpeculativeConfig? spec = args.ParseSpeculativeConfig();
            if (spec?.Method == SpeculativeConfig.DraftModel)
            {
#pragma warning disable CA2000 // draft is disposed in the catch below until the proposer owns it
                draft = LoadDraft(args, spec, config, platform, backend, dtype, kvDType, maxNumTokens, maxLogitsRows, maxModelLen, graphs);
#pragma warning restore CA2000
                Phase($"draft model loaded from '{spec.Model}' ({draft.Model.Config.Architecture}, {draft.Model.Config.NumHiddenLayers} layers)");
            }
            else if (spec?.Method is SpeculativeConfig.Eagle or SpeculativeConfig.Eagle3)
            {
#pragma warning disable CA2000 // head is disposed in the catch below until the proposer owns it
                head = LoadHead(args, spec, decoder!, platform, backend, dtype, kvDType, maxNumTokens, maxLogitsRows, maxModelLen, graphs);
#pragma warning restore CA2000
                Phase($"{(spec.Method == SpeculativeConfig.Eagle ? "EAGLE" : "EAGLE-3")} head loaded from '{spec.Model}', fed target layers [{string.Join(", ", head.TargetLayers)}]");
            }

            // An encoder's requests end in the step that computes them: its cache holds one step's sequences, no more; with
            // async scheduling two, as the step in flight keeps its blocks until its rows are read while the next is built.
            int? stepTokens = pooler?.WholeSequences == true ? maxNumTokens : null;
            int stepsHeld = (args.AsyncScheduling ?? backend.QueuesWork) ? 2 : 1;
            // A rank's cache holds its own KV heads; every rank gets as many blocks.
            ModelConfig cacheShape = tensorParallel is null ? config : config with { NumKeyValueHeads = model.Attention.NumKvHeads };
            IEnumerable<(IModelBackend, ModelConfig)> drafters = draft is not null ? [(draft.Backend, draft.Model.Config)]
                : head is not null ? [(head.Backend, head.Head.Config.Layer)]
                : [];
            int numBlocks = KvBlocks(args, platform, [(backend, cacheShape), .. drafters], maxModelLen, stepTokens, stepsHeld);
            int numHostBlocks = HostKvBlocks(args, KvBlockBytes(backend, cacheShape, args.BlockSize), pooler);
            if (tensorParallel is { Workers: var workers })
            {
                workers.AllocateKvCaches(numBlocks);
                Phase($"tensor parallelism: {args.TensorParallelSize} ranks (rank 0 here, the others worker processes), each with {decoder!.Attention.NumHeads} query and {decoder.Attention.NumKvHeads} KV heads");
            }

            IReadOnlyList<int> eos = EosTokenIds(config, generation, tokenizerConfig, tokenizer);
            (float[] K, float[] V)? kvScales = KvScales(args, kvDType, weights, config.NumHiddenLayers);
            // The CPU computes straight from the memory-mapped checkpoint, so the runner keeps it open; a GPU has its
            // own copy by now, and the host memory (all of it, for dummy weights) can go.
            IDisposable? keepOpen = platform.ReadsWeightsInPlace ? weights : null;
            if (keepOpen is null)
            {
                weights.Dispose();
            }

            if (tensorParallel is { } group)
            {
                // The workers stop before the collectives they meet in go, and both before rank 0's checkpoint.
                decoder!.Peers = group.Workers;
                keepOpen = new OwnedInOrder(group.Workers, group.Group.Owner, keepOpen);
                tensorParallel = null;
            }

#pragma warning disable CA2000 // the returned Parts own the runner (and the runner the backend and keepOpen)
            IDraftProposer? proposer = spec switch
            {
                null => null,
                { Method: SpeculativeConfig.Ngram } => new NgramProposer(spec.PromptLookupMin, spec.PromptLookupMax, spec.NumSpeculativeTokens, spec.DisableByBatchSize),
                { Method: SpeculativeConfig.Eagle or SpeculativeConfig.Eagle3 } => new EagleProposer(
                    head!.Head, head.Backend, head.TargetHidden, head.Backend as IDeviceSampler, numBlocks, args.BlockSize, spec.NumSpeculativeTokens, spec.DisableByBatchSize, head.KeepOpen),
                _ => new DraftModelProposer(
                    draft!.Model, draft.Backend, draft.Backend as IDeviceSampler, numBlocks, args.BlockSize, spec.NumSpeculativeTokens, spec.DisableByBatchSize, draft.KeepOpen),
            };
            draft = null;   // the proposer owns it now
            head = null;
            // Sleep mode's level 2 discards the weights; waking loads them from the checkpoint again, into the same memory.
            Action? reloadWeights = !args.EnableSleepMode ? null : () =>
            {
                using ProgressWeightSource again = OpenWeights(args, dir, quantization, dtype, platform, progress: null, baseModelNames: pooler is not null);
                ReloadWeights((ISleepMode)backend, () => _ = encoder
                    ? new EncoderModel(config, again, backend, maxNumTokens, maxLogitsRows)
                    : (IPoolingModel)new DecoderModel(config, again, backend, maxNumTokens, maxLogitsRows, graphs: null, pooling: pooler is not null));
            };
            var runner = new ModelRunner(model, backend, numBlocks, args.BlockSize, eos, args.Seed, keepOpen, deviceSampler, proposer, pooler, numHostBlocks, reloadWeights, imageEncoder);
            imageEncoder = null;   // the runner owns it now
#pragma warning restore CA2000
            if (kvScales is { } scales)
            {
                backend.SetKvCacheScales(scales.K, scales.V);
            }

            long cacheTokens = (long)(numBlocks - 1) * args.BlockSize;   // block 0 is the null block
            double cacheGiB = (double)numBlocks * KvBlockBytes(backend, cacheShape, args.BlockSize) / (1L << 30);
            Phase($"KV cache: {numBlocks - 1} blocks of {args.BlockSize} tokens = {cacheTokens} tokens, {cacheGiB:F2} GiB ({backend.KvCacheDType}); " +
                $"maximum concurrency for {maxModelLen} tokens per request: {cacheTokens / (double)maxModelLen:F2}x");
            if (numHostBlocks > 0)
            {
                Phase($"KV host tier: {numHostBlocks} blocks = {(long)numHostBlocks * args.BlockSize} tokens, " +
                    $"{(double)numHostBlocks * KvBlockBytes(backend, cacheShape, args.BlockSize) / (1L << 30):F2} GiB of host memory; preemption by {args.ParsePreemptionMode().ToString().ToLowerInvariant()}");
            }

            if (platform.JitWarmUp > TimeSpan.Zero)
            {
                Phase($"warmed up the kernels' JIT: {model.WarmUp(platform.JitWarmUp)} padding steps");
            }

            IReadOnlyList<int> captured = decoder?.CaptureGraphs() ?? [];
            if (captured.Count > 0)
            {
                Phase($"CUDA graphs recorded for {captured.Count} decode batch sizes ({captured[0]}..{captured[^1]})");
            }

            if (proposer is DraftModelProposer drafter && drafter.CaptureGraphs() is { Count: > 0 } draftGraphs)
            {
                Phase($"draft model: CUDA graphs recorded for {draftGraphs.Count} decode batch sizes");
            }

            if (proposer is EagleProposer eagle && eagle.CaptureGraphs() is { Count: > 0 } headGraphs)
            {
                Phase($"EAGLE head: CUDA graphs recorded for {headGraphs.Count} batch sizes of its chained passes");
            }

            foreach (string note in platform.LoadNotes(backend))
            {
                log?.Invoke(note);
            }

            var info = new EngineModelInfo(config.VocabSize, maxModelLen, eos.Count > 0 ? eos[0] : null, eos)
            {
                Pooler = pooler,
                Images = config.Vision is { } images ? ImagePromptsOf(dir, images) : null,
            };
            if (platform.JitWarmUp > TimeSpan.Zero)
            {
                // After the kernels' padding steps: a request's host code (scheduler, runner, sampler, detokenizer) compiled
                // before the first user's request, on a driver of its own that leaves the engine no trace.
                Phase($"warmed up the engine's path: {EngineWarmUp.Run(args, runner, tokenizer, info, TimeSpan.Zero)} requests");
            }

            log?.Invoke($"engine ready in {total.Elapsed.TotalSeconds:F2} s");
            return new Parts(args, config, generation, tokenizerConfig, tokenizer, info, runner, backend.Name);
        }
        catch
        {
            draft?.Dispose();
            head?.Dispose();
            imageEncoder?.Dispose();
            tensorParallel?.Workers.Dispose();
            tensorParallel?.Group.Owner.Dispose();
            weights?.Dispose();
            backend.Dispose();
            throw;
        }
    }

    /// <summary>
    /// The decode graphs to record: vLLM records them for batches up to 512 sequences, and 256 covers the default
    /// --max-num-seqs. None when eager, nor for a pooling model, which only ever runs prompts.
    /// </summary>
    private static StepGraphOptions? GraphOptions(EngineArgs args, int maxModelLen, bool pooling) =>
        args.EnforceEager || pooling ? null : new StepGraphOptions(args.GraphCaptureSizes(), (maxModelLen + args.BlockSize - 1) / args.BlockSize);

    /// <summary>An FP8 cache takes the checkpoint's per-layer scales (dummy weights have none: 1.0, as vLLM).</summary>
    private static (float[] K, float[] V)? KvScales(EngineArgs args, DType? kvDType, IWeightSource weights, int numLayers) =>
        kvDType == DType.F8E4M3 && !args.LoadFormat.Equals("dummy", StringComparison.OrdinalIgnoreCase)
            ? KvCacheScales.Read(weights, numLayers)
            : null;

    /// <summary>What tensor parallelism cannot serve yet, or null: its ranks are worker processes, a GPU each on CUDA.</summary>
    private static string? TensorParallelRefusal(EngineArgs args, DevicePlatform platform, PoolerConfig? pooler, bool encoder) =>
        platform.DeviceCount is int gpus && gpus < args.RanksPerNode
            ? $"each node runs {args.RanksPerNode} ranks, a GPU each, and this one has {gpus} (CUDA_VISIBLE_DEVICES picks them)"
        : pooler is not null || encoder ? "pooling models are not split yet"
        : args.ParseSpeculativeConfig() is not null ? "speculative decoding is not split yet"
        : args.KvOffloadSize > 0 ? "the host KV tier (--kv-offload-size) is not split yet"
        : args.EnableSleepMode ? "sleep mode is not split yet"
        : null;

    /// <summary>
    /// Builds the model a second time with the backend reloading: every weight lands where the first load put it, and the
    /// second model (its activations) is dropped.
    /// </summary>
    private static void ReloadWeights(ISleepMode backend, Action buildModel)
    {
        backend.BeginWeightReload();
        bool complete;
        try
        {
            buildModel();
        }
        finally
        {
            complete = backend.EndWeightReload();
        }

        if (!complete)
        {
            throw new ModelLoadException("Reloading the weights after sleep did not load every weight of the first load again.");
        }
    }

    /// <summary>
    /// <c>--convert classify</c>: a causal LM read again as its <c>…ForSequenceClassification</c> (as if
    /// <c>--hf-overrides</c> had named it), so its classifier fields (<c>num_labels</c>, <c>classifier_from_token</c>, …) apply.
    /// </summary>
    private static ModelConfig AsClassifier(EngineArgs args, string dir, ModelConfig config)
    {
        const string CausalLm = "ForCausalLM";
        if (config.Classifier is not null)
        {
            return config;
        }

        if (!config.Architecture.EndsWith(CausalLm, StringComparison.Ordinal))
        {
            throw new ModelLoadException($"'{dir}' is a {config.Architecture}; --convert classify turns a …ForCausalLM into its …ForSequenceClassification.");
        }

        System.Text.Json.Nodes.JsonObject overrides = args.ParseHfOverrides() ?? [];
        overrides["architectures"] = new System.Text.Json.Nodes.JsonArray(config.Architecture[..^CausalLm.Length] + "ForSequenceClassification");
        return ModelConfig.Load(dir, overrides);
    }

    /// <summary>
    /// A vision-language model's prompt processing with the checkpoint's own image processor (preprocessor_config.json),
    /// which must make the square images its tower was trained on: refused at load where every image would miss it, at
    /// the request where only some would (a resize to a shortest edge without a crop).
    /// </summary>
    private static ImagePrompts ImagePromptsOf(string dir, VisionLanguageConfig vision)
    {
        ClipImageProcessor processor = ClipImageProcessor.Load(dir);
        int size = vision.Vision.ImageSize;
        ImageSize fixedSize = processor.DoCenterCrop ? processor.CropSize : processor.ResizeSize ?? new ImageSize(size, size);
        if (fixedSize != new ImageSize(size, size))
        {
            throw new ModelLoadException($"'{dir}': {ClipImageProcessor.FileName} makes {fixedSize.Width} × {fixedSize.Height} images; the vision tower takes {size} × {size}.");
        }

        return new ImagePrompts(vision.ImageTokenId, vision.FeaturesPerImage, image =>
        {
            ProcessedImage processed = processor.Preprocess(image);
            return processed.Height == size && processed.Width == size ? processed.PixelValues
                : throw new EngineRequestException(
                    $"A {image.Width} × {image.Height} image preprocesses to {processed.Width} × {processed.Height}; this model's vision tower takes {size} × {size}.", "messages");
        });
    }

    /// <summary>What a vision-language model cannot be served with yet, or null.</summary>
    private static string? VisionRefusal(EngineArgs args, PoolerConfig? pooler) =>
        pooler is not null ? "it generates text from images and text, and runs as no pooling model (--runner pooling)"
        : args.TensorParallelSize > 1 ? "its image features are computed on one GPU, so it runs without tensor parallelism (--tensor-parallel-size 1)"
        : args.ParseSpeculativeConfig() is not null ? "drafts would read image placeholders as text, so it runs without --speculative-config"
        : args.EnableSleepMode ? "sleep mode does not reload its vision tower, so it runs without --enable-sleep-mode"
        : null;

    /// <summary>
    /// A vision-language model's image side, on a second backend sharing the language model's device (its attention has
    /// a cache of its own), in the model dtype, from the same checkpoint. A pass takes as many images as the token budget
    /// holds features of, up to 8.
    /// </summary>
    private static LlavaImageEncoder LoadImageEncoder(
        VisionLanguageConfig vision, ModelConfig config, IWeightSource weights, DevicePlatform platform, IModelBackend backend, DType dtype, int maxNumTokens)
    {
        IModelBackend onDevice = platform.CreateDraftBackend(backend, dtype, kvCacheDType: null);
        try
        {
            return new LlavaImageEncoder(vision, config.HiddenSize, weights, onDevice, Math.Clamp(maxNumTokens / vision.FeaturesPerImage, 1, 8));
        }
        catch
        {
            onDevice.Dispose();
            throw;
        }
    }

    /// <summary>A draft model loaded for speculative decoding, until its proposer owns it.</summary>
    private sealed record DraftParts(DecoderModel Model, IModelBackend Backend, IDisposable? KeepOpen) : IDisposable
    {
        public void Dispose()
        {
            Backend.Dispose();
            KeepOpen?.Dispose();
        }
    }

    /// <summary>An EAGLE head loaded for speculative decoding, and the target's hidden states it reads, until its proposer owns it.</summary>
    private sealed record HeadParts(EagleHead Head, IModelBackend Backend, Tensor TargetHidden, int[] TargetLayers, IDisposable? KeepOpen) : IDisposable
    {
        public void Dispose()
        {
            Backend.Dispose();
            KeepOpen?.Dispose();
        }
    }

    /// <summary>
    /// The EAGLE or EAGLE-3 head of <c>--speculative-config</c>, on a backend sharing the target's device (and so its
    /// embedding table and hidden states) in the target's dtype and KV cache type; the target keeps the hidden states
    /// the head reads from every step on.
    /// </summary>
    private static HeadParts LoadHead(
        EngineArgs args, SpeculativeConfig spec, DecoderModel target, DevicePlatform platform, IModelBackend targetBackend, DType dtype, DType? kvDType,
        int maxNumTokens, int maxLogitsRows, int maxModelLen, StepGraphOptions? graphs)
    {
        string dir = spec.Model!;
        if (!Directory.Exists(dir))
        {
            throw new ModelLoadException($"--speculative-config: the EAGLE head directory '{dir}' does not exist.");
        }

        EagleConfig config = EagleConfig.Load(dir, spec.Method == SpeculativeConfig.Eagle ? EagleKind.Eagle : EagleKind.Eagle3);
        if (config.Layer.Quantization is not null)
        {
            throw new ModelLoadException($"--speculative-config: the EAGLE head '{dir}' is quantized, which Celer does not run for heads.");
        }

        int[] layers = config.TargetLayers(target.Config.NumHiddenLayers);
        bool random = args.LoadFormat.Equals("dummy", StringComparison.OrdinalIgnoreCase);
        Tensor? hidden = null;
        (EagleHead head, IModelBackend backend, IDisposable? keepOpen) = OnDraftBackend(args, dir, null, platform, targetBackend, dtype, kvDType, (onDevice, weights) =>
        {
            var built = new EagleHead(config, weights, onDevice, target, maxNumTokens, maxLogitsRows, maxModelLen, randomWeights: random, graphs);
            (onDevice as IDeviceSampler)?.ReserveSampling(maxLogitsRows, built.LogitsWidth);
            hidden = target.CaptureHiddenStates(layers);
            return built;
        });
        return new HeadParts(head, backend, hidden!, layers, keepOpen);
    }

    /// <summary>
    /// A drafter (a draft model or an EAGLE head) that <paramref name="build"/> makes from the checkpoint in
    /// <paramref name="dir"/> on a second backend sharing the target's device, in the target's dtype and KV cache type.
    /// The checkpoint stays open, owned by the caller, where the backend computes from it in place (the CPU); else it is
    /// closed once loaded. A failure leaves nothing behind.
    /// </summary>
    private static (T Drafter, IModelBackend Backend, IDisposable? KeepOpen) OnDraftBackend<T>(
        EngineArgs args, string dir, QuantizationConfig? quantization, DevicePlatform platform, IModelBackend targetBackend, DType dtype, DType? kvDType,
        Func<IModelBackend, IWeightSource, T> build)
    {
        IModelBackend backend = platform.CreateDraftBackend(targetBackend, dtype, kvDType);
        ProgressWeightSource? weights = null;
        try
        {
#pragma warning disable CA2000 // kept open by the caller (CPU) or disposed below
            weights = OpenWeights(args, dir, quantization, dtype, platform, progress: null);
#pragma warning restore CA2000
            T drafter = build(backend, weights);
            IDisposable? keepOpen = platform.ReadsWeightsInPlace ? weights : null;
            if (keepOpen is null)
            {
                weights.Dispose();
            }

            return (drafter, backend, keepOpen);
        }
        catch
        {
            weights?.Dispose();
            backend.Dispose();
            throw;
        }
    }

    /// <summary>
    /// The draft model of <c>--speculative-config</c>'s draft_model method, on a backend sharing the target's device, in
    /// the target's dtype and KV cache type, with the target's token budget and graph sizes. It must speak the target's
    /// vocabulary (ids the target does not have could not be verified) and reach the served context length.
    /// </summary>
    private static DraftParts LoadDraft(
        EngineArgs args, SpeculativeConfig spec, ModelConfig target, DevicePlatform platform, IModelBackend targetBackend, DType dtype, DType? kvDType,
        int maxNumTokens, int maxLogitsRows, int maxModelLen, StepGraphOptions? graphs)
    {
        string dir = spec.Model!;
        if (!Directory.Exists(dir))
        {
            throw new ModelLoadException($"--speculative-config: the draft model directory '{dir}' does not exist.");
        }

        ModelConfig config = ModelConfig.Load(dir);
        ModelRegistry.Resolve(config);
        if (config.VocabSize > target.VocabSize)
        {
            throw new ModelLoadException(
                $"--speculative-config: the draft model '{dir}' has {config.VocabSize} tokens, more than the target's {target.VocabSize}: a draft must use the target's tokenizer.");
        }

        if (config.MaxPositionEmbeddings < maxModelLen)
        {
            throw new ModelLoadException(
                $"--speculative-config: the draft model '{dir}' reaches {config.MaxPositionEmbeddings} positions, fewer than --max-model-len {maxModelLen}; lower --max-model-len.");
        }

        if (config.Quantization is { } q && platform.QuantizationRefusal(q) is { } refusal)
        {
            throw new ModelLoadException($"--speculative-config: the draft model '{dir}' {refusal}.");
        }

        (DecoderModel model, IModelBackend backend, IDisposable? keepOpen) = OnDraftBackend(args, dir, config.Quantization, platform, targetBackend, dtype, kvDType, (onDevice, weights) =>
        {
            var built = new DecoderModel(config, weights, onDevice, maxNumTokens, maxLogitsRows, graphs);
            (onDevice as IDeviceSampler)?.ReserveSampling(maxLogitsRows, config.VocabSize);
            return built;
        });
        return new DraftParts(model, backend, keepOpen);
    }

    /// <summary>
    /// The cache type <c>--kv-cache-dtype</c> asks for (null: the platform's default, the model dtype on a GPU and fp32 on the CPU). What the platform cannot keep is refused
    /// here rather than accepted and ignored.
    /// </summary>
    private static DType? KvCacheDType(EngineArgs args, DType modelDType, DevicePlatform platform)
    {
        DType? kv = args.KvCacheDtype switch
        {
            "fp8" or "fp8_e4m3" => DType.F8E4M3,
            "fp8_e5m2" => DType.F8E5M2,
            "bfloat16" => DType.BF16,
            _ => null,
        };
        if (kv is { } cache && platform.KvCacheRefusal(cache, modelDType) is { } refusal)
        {
            throw new ModelLoadException($"--kv-cache-dtype {args.KvCacheDtype} {refusal}.");
        }

        return kv;
    }

    /// <summary>
    /// The dtype the model is served in, vLLM's <c>--dtype</c>: as given, else the checkpoint's torch_dtype (bf16 when
    /// the config names none). On a GPU an fp32 checkpoint runs in bf16, as vLLM's auto does on GPUs that have it;
    /// the CPU keeps fp32 weights as they are (it computes in fp32 whatever the weights' dtype). A quantized checkpoint's
    /// weights arrive on the CPU dequantized in <see cref="QuantizedWeights.DequantizedDType"/>, so that is its stored
    /// dtype there; a GPU multiplies them in FP8 and computes the rest in the torch_dtype, as vLLM does.
    /// </summary>
    internal static DType ModelDType(EngineArgs args, ModelConfig config, QuantizationConfig? quantization, DevicePlatform platform) =>
        ParseDtype(args.Dtype) ?? platform.AutoDType(quantization is null || platform.MultipliesFp8 ? config.TorchDtype ?? DType.BF16 : QuantizedWeights.DequantizedDType);

    /// <summary>
    /// The weights as the model reads them: from the checkpoint (or random, <c>--load-format dummy</c>), quantized at load
    /// when <paramref name="quantization"/> is online (dummy values then made on the host, where the quantizer reads them),
    /// and a quantized checkpoint's dequantized, or kept in FP8 (<see cref="QuantizedWeights"/>).
    /// </summary>
    /// <param name="baseModelNames">A pooling model: its checkpoint may be a bare base model (<see cref="BaseModelWeightSource"/>).</param>
    private static ProgressWeightSource OpenWeights(
        EngineArgs args, string dir, QuantizationConfig? quantization, DType dtype, DevicePlatform platform, IProgress<ModelLoadProgress>? progress,
        bool baseModelNames = false)
    {
#pragma warning disable CA2000 // the returned ProgressWeightSource owns the source it wraps and disposes it (each wrapper its inner one)
        bool online = quantization is { IsOnline: true };
        IWeightSource Quantized(IWeightSource source)
        {
            source = baseModelNames ? new BaseModelWeightSource(source) : source;
            return QuantizedWeights.Wrap(
                online ? new OnlineFp8Source(source, quantization!.WeightScales) : source, quantization, platform.MultipliesFp8, platform.MultipliesInt4);
        }

        switch (args.LoadFormat.ToLowerInvariant())
        {
            case "dummy":
                var dummy = new DummyWeightSource(dtype, (ulong)args.Seed, materialize: online || !platform.MakesDummyWeights);
                return new ProgressWeightSource(dummy, Quantized, null, null, progress);
            case "auto" or "safetensors":
                var source = SafetensorsWeightSource.Open(dir);
                source.ReadAheadInBackground();   // every tensor is read once: keep the disk streaming meanwhile
                return new ProgressWeightSource(source, Quantized, source.Names.Count(), source.Files.Sum(f => new FileInfo(f.Path).Length), progress);
            default:
                throw new ArgumentException($"Unknown load format '{args.LoadFormat}'; expected auto, safetensors or dummy.", nameof(args));
        }
#pragma warning restore CA2000
    }

    private static DType? ParseDtype(string dtype) => dtype.ToLowerInvariant() switch
    {
        "auto" => null,
        "bfloat16" or "bf16" => DType.BF16,
        "float16" or "half" or "fp16" => DType.F16,
        "float32" or "float" or "fp32" => DType.F32,
        _ => throw new ArgumentException($"Unknown dtype '{dtype}'; expected auto, bfloat16, float16 or float32.", nameof(dtype)),
    };

    /// <summary>
    /// How many KV blocks to allocate. An explicit --kv-cache-memory wins. On the GPU the cache takes what is left of
    /// --gpu-memory-utilization of the card once weights and activation buffers are in place (they are preallocated
    /// for the largest step, so their peak is already counted); on the CPU it takes 4 GiB as vLLM does. Never more
    /// than every sequence at full length could use, which keeps small models small.
    /// </summary>
    /// <param name="models">The target first, then its draft model, which keeps a cache of as many blocks.</param>
    /// <param name="stepTokens">
    /// For a model whose requests never outlive their step (an encoder: whole sequences, pooled and finished in the step
    /// that computes them), the step's token budget: the cache then needs only what one step's sequences fill, their
    /// tokens' blocks plus a part-filled block each, as vLLM gives encoder-only models no cache beyond the step.
    /// </param>
    /// <param name="stepsHeld">How many steps' sequences hold blocks at once: 2 with async scheduling (the one in flight and the next).</param>
    private static int KvBlocks(
        EngineArgs args, DevicePlatform platform, IReadOnlyList<(IModelBackend Backend, ModelConfig Config)> models, int maxModelLen, int? stepTokens = null,
        int stepsHeld = 1)
    {
        long blockBytes = models.Sum(m => KvBlockBytes(m.Backend, m.Config, args.BlockSize));
        long bytes = args.KvCacheMemoryBytes
            ?? platform.DefaultKvCacheBytes(models[0].Backend, models[0].Config, args.GpuMemoryUtilization) - models.Skip(1).Sum(m => platform.ScratchAfterCache(m.Backend, m.Config));
        long blocksPerSeq = (maxModelLen + args.BlockSize - 1) / args.BlockSize;
        long useful = (long)args.MaxNumSeqs * blocksPerSeq + 1;
        if (stepTokens is { } tokens)
        {
            useful = Math.Min(useful, (stepsHeld * (Math.Max(((long)tokens + args.BlockSize - 1) / args.BlockSize, blocksPerSeq) + args.MaxNumSeqs)) + 1);
        }

        long blocks = Math.Min(bytes / blockBytes, useful);
        if (blocks < blocksPerSeq + 1)
        {
            throw new ModelLoadException(
                $"The KV cache budget ({bytes / (1 << 20)} MiB) holds {blocks} blocks, fewer than one sequence of {maxModelLen} tokens needs ({blocksPerSeq + 1}). Lower --max-model-len or give the cache more memory.");
        }

        return (int)Math.Min(blocks, int.MaxValue);
    }

    /// <summary>
    /// The host tier's blocks for <c>--kv-offload-size</c> (the target model's blocks: a draft model's KV is not offloaded,
    /// it catches up on loaded prefixes as on any prefix hit). Refuses a size the machine's memory cannot hold, one that
    /// holds no block, and a model whose prefix cache is off (an encoder's).
    /// </summary>
    private static int HostKvBlocks(EngineArgs args, long blockBytes, PoolerConfig? pooler)
    {
        if (args.KvOffloadSize == 0)
        {
            return 0;
        }

        if (pooler?.WholeSequences == true)
        {
            throw new ModelLoadException("--kv-offload-size: an encoder model shares no KV blocks between requests, so there is nothing to offload.");
        }

        long bytes = (long)Math.Min(args.KvOffloadSize * (1L << 30), long.MaxValue);
        long memory = GC.GetGCMemoryInfo().TotalAvailableMemoryBytes;
        if (bytes > memory)
        {
            throw new ArgumentException(
                $"--kv-offload-size {args.KvOffloadSize} GiB is more than this machine's memory ({memory / (double)(1L << 30):F1} GiB).", nameof(args.KvOffloadSize));
        }

        long blocks = bytes / blockBytes;
        if (blocks == 0)
        {
            throw new ArgumentException(
                $"--kv-offload-size {args.KvOffloadSize} GiB is smaller than one KV block of this model ({blockBytes / (double)(1 << 20):F2} MiB).", nameof(args.KvOffloadSize));
        }

        return (int)Math.Min(blocks, int.MaxValue);
    }

    private static long KvBlockBytes(IModelBackend backend, ModelConfig config, int blockSize) =>
        backend.KvBlockBytes(config.NumHiddenLayers, blockSize, config.NumKeyValueHeads, config.HeadDim);

    /// <summary>
    /// EOS ids: the tokenizer's eos_token first (vLLM's primary EOS, the one ignore_eos and min_tokens act on), then
    /// generation_config.json's list (what transformers stops on), then config.json's.
    /// </summary>
    private static IReadOnlyList<int> EosTokenIds(ModelConfig config, GenerationConfig generation, TokenizerConfig tokenizerConfig, Tokenizer? tokenizer)
    {
        var ids = new List<int>();
        if (tokenizerConfig.EosToken is { } eosText && tokenizer?.TokenToId(eosText) is int fromTokenizer)
        {
            ids.Add(fromTokenizer);
        }

        foreach (int id in (generation.EosTokenIds ?? []).Concat(config.EosTokenIds))
        {
            if (!ids.Contains(id))
            {
                ids.Add(id);
            }
        }

        return ids;
    }
}
