using Celer.Engine.Scheduling;
using Celer.Tokenization;

namespace Celer.Engine;

/// <summary>
/// Admission (vLLM's <c>Processor</c> + the serving layer's length checks): validates a request
/// before it reaches the engine loop, resolves max_tokens, and fans n &gt; 1 out into child
/// sequences, and compiles structured-output constraints into grammars (cached); a pooling model takes pooling
/// requests only, and a generative model only generation requests. Every refusal is an
/// <see cref="EngineRequestException"/> or a <see cref="SamplingParamsException"/>, which the server answers with
/// HTTP 400.
/// </summary>
public sealed class InputProcessor(
    Tokenizer? tokenizer, int vocabSize, int maxModelLen, int? eosTokenId,
    IReadOnlyList<int>? generationEosTokenIds = null, int maxLogprobs = 20, StructuredOutputs.StructuredOutputCompiler? structuredOutputs = null,
    PoolerConfig? pooler = null, Multimodal.ImagePrompts? images = null)
{
    public int VocabSize { get; } = vocabSize;

    /// <summary>A pooling model's pooler; null for a generative model.</summary>
    public PoolerConfig? Pooler { get; } = pooler;
    public int MaxModelLen { get; } = maxModelLen;

    /// <summary>The engine sequences of a request: one, or n children named <c>{index}_{id}</c> as vLLM names them.</summary>
    public IReadOnlyList<Request> Process(GenerateRequest request, double arrivalTime)
    {
        IReadOnlyList<int> prompt = request.PromptTokenIds;
        if (prompt.Count == 0)
        {
            throw new EngineRequestException("The prompt cannot be empty.", "prompt");
        }

        if (request.Images.Count > 0 && images is null)
        {
            throw new EngineRequestException("This model takes text only: it cannot read images.", "messages", "model_not_supported");
        }

        int[] imageOffsets = [];
        if (images is not null)
        {
            // Before the length checks: the context holds every image's features, not its one placeholder.
            (int[] expanded, imageOffsets) = images.Expand(prompt, request.Images);
            prompt = expanded;
        }
        foreach (int id in prompt)
        {
            if ((uint)id >= (uint)VocabSize)
            {
                throw new EngineRequestException($"Token id {id} is out of vocabulary (vocabulary size {VocabSize}).", "prompt");
            }
        }
        if (request.CacheSalt is "")
        {
            // vLLM's check, word for word: an empty salt would read as "salted" while salting nothing.
            throw new EngineRequestException("Parameter 'cache_salt' must be a non-empty string if provided.", "cache_salt");
        }

        if (request.Pooling is { } pooling)
        {
            return [ProcessPooling(request, pooling, arrivalTime)];
        }

        if (Pooler is not null)
        {
            throw new EngineRequestException(
                "This model runs as a pooling model (--runner pooling): it computes embeddings and does not generate text.", "model", "model_not_supported");
        }

        SamplingParams p = FillBadWordsTokenIds(request.Params);
        p.Validate(VocabSize, maxLogprobs);
        if (p.BestOf is { } bestOf && bestOf != p.N)
        {
            throw new EngineRequestException("best_of is not supported; leave it unset or equal to n.", "best_of");
        }
        if (tokenizer is null && p.Stop.Count > 0)
        {
            throw new EngineRequestException("stop strings need a tokenizer, and this engine runs without one.", "stop");
        }
        int maxTokens = ResolveMaxTokens(prompt.Count, p.MaxTokens);
        if (p.StructuredOutputs is { } constraint)
        {
            if (structuredOutputs is null)
            {
                throw new EngineRequestException("Structured outputs need a tokenizer, and this engine runs without one.", "structured_outputs");
            }

            p = p with { Grammar = structuredOutputs.Compile(constraint) };
        }

        if (!p.IgnoreEos && generationEosTokenIds is { Count: > 0 })
        {
            // vLLM's update_from_generation_config: extra EOS ids of generation_config.json stop like stop_token_ids.
            p = p with { StopTokenIds = [.. p.StopTokenIds.Union(generationEosTokenIds.Where(id => id != eosTokenId))] };
        }

        // Last: a request refused above costs no image preprocessing (a resize of a large photo takes tens of milliseconds).
        Multimodal.PromptImage[] placed = imageOffsets.Length == 0 ? [] : images!.Place(imageOffsets, request.Images);
        if (p.N == 1)
        {
            return [new Request(request.RequestId, prompt, p, maxTokens, eosTokenId, request.Priority, arrivalTime, request.CacheSalt) { Images = placed }];
        }
        var children = new Request[p.N];
        for (int i = 0; i < p.N; i++)
        {
            // vLLM's ParentRequest.get_child_info: each child is n=1 with seed + index (seed -1 means none).
            long? seed = p.Seed is { } s && s != -1 ? unchecked(s + i) : p.Seed;
            SamplingParams child = p with { N = 1, BestOf = null, Seed = seed };
            children[i] = new Request($"{i}_{request.RequestId}", prompt, child, maxTokens, eosTokenId, request.Priority, arrivalTime, request.CacheSalt) { Images = placed };
        }
        return children;
    }

    /// <summary>
    /// A pooling request: the whole input fits the context (nothing is generated after it), and <c>dimensions</c> only on a
    /// Matryoshka model and at a length it was trained for, with vLLM's messages.
    /// </summary>
    private Request ProcessPooling(GenerateRequest request, PoolingParams pooling, double arrivalTime)
    {
        if (Pooler is not { } pooler)
        {
            throw new EngineRequestException(pooling.Task == PoolingTask.Embed
                ? "This model is a generative model: embeddings need a pooling model (serve an embedding model, or this one with --runner pooling)."
                : "This model is a generative model: classification and scores need a classifier (serve a cross-encoder or classifier, or this one with --convert classify).",
                "model", "model_not_supported");
        }

        switch (pooling.Task)
        {
            case PoolingTask.Embed when pooler.Classifier is not null:
                throw new EngineRequestException(
                    "This model is a classifier: it scores and classifies (/classify, /score, /rerank) and computes no embeddings.", "model", "model_not_supported");
            case PoolingTask.Classify or PoolingTask.Score when pooler.Classifier is null:
                throw new EngineRequestException(
                    "This model is an embedding model: it has no classifier head to classify or score pairs with.", "model", "model_not_supported");
            case PoolingTask.Score when pooler.Classifier!.NumLabels != 1:
                throw new EngineRequestException(
                    $"Scoring pairs needs a cross-encoder with one output; this classifier has {pooler.Classifier.NumLabels} labels (use /classify).", "model", "model_not_supported");
        }

        if (pooling.Task != PoolingTask.Embed && (pooling.Dimensions is not null || pooling.Normalize is not null))
        {
            throw new EngineRequestException("dimensions and normalize apply to embeddings, not to classification or scores.", pooling.Dimensions is not null ? "dimensions" : "normalize");
        }

        if (pooling.TokenTypeIds is { } types)
        {
            if (types.Count != request.PromptTokenIds.Count)
            {
                throw new EngineRequestException($"token_type_ids has {types.Count} entries for {request.PromptTokenIds.Count} tokens.", "token_type_ids");
            }

            int allowed = Math.Max(1, pooler.TokenTypes);
            if (types.Any(t => (uint)t >= (uint)allowed))
            {
                throw new EngineRequestException($"token_type_ids must be in [0, {allowed}) for this model.", "token_type_ids");
            }
        }

        int length = request.PromptTokenIds.Count;
        if (length > MaxModelLen)
        {
            throw new EngineRequestException(
                $"This model's maximum context length is {MaxModelLen} tokens. However, you requested {length} tokens in the input for embedding generation. Please reduce the length of the input.",
                "input", "context_length_exceeded");
        }

        if (pooling.Dimensions is { } dimensions)
        {
            if (pooler.MatryoshkaDimensions is not { } supported)
            {
                throw new EngineRequestException("This model does not support matryoshka representation, changing output dimensions will lead to poor results.", "dimensions");
            }

            if (dimensions < 1 || dimensions > pooler.EmbeddingSize)
            {
                throw new EngineRequestException($"dimensions must be between 1 and the model's {pooler.EmbeddingSize}, got {dimensions}.", "dimensions");
            }

            if (supported.Count > 0 && !supported.Contains(dimensions))
            {
                throw new EngineRequestException(
                    $"This model only supports {string.Join(", ", supported)} as matryoshka dimensions; other output dimensions will lead to poor results.", "dimensions");
            }
        }

        return new Request(request.RequestId, request.PromptTokenIds, request.Params, maxTokens: 1, eosTokenId, request.Priority, arrivalTime, request.CacheSalt)
        {
            PoolingParams = pooling,
            PoolsEveryToken = pooler.Type != PoolingType.Last,
        };
    }

    /// <summary>vLLM's context-length checks, with its messages and OpenAI's error code.</summary>
    private int ResolveMaxTokens(int numPromptTokens, int? maxTokens)
    {
        if (maxTokens is null)
        {
            if (numPromptTokens >= MaxModelLen)
            {
                throw new EngineRequestException(
                    $"This model's maximum context length is {MaxModelLen} tokens. However, your request has {numPromptTokens} input tokens. Please reduce the length of the input messages.",
                    "prompt", "context_length_exceeded");
            }
            return MaxModelLen - numPromptTokens;
        }
        if ((long)numPromptTokens + maxTokens.Value > MaxModelLen)
        {
            throw new EngineRequestException(
                $"This model's maximum context length is {MaxModelLen} tokens. However, you requested {(long)numPromptTokens + maxTokens.Value} tokens ({numPromptTokens} in the messages, {maxTokens.Value} in the completion). Please reduce the length of the messages or completion.",
                "max_tokens", "context_length_exceeded");
        }
        return maxTokens.Value;
    }

    /// <summary>vLLM's bad-words tokenization: each word alone, and with a leading space when that
    /// makes a different first token of the same length (so mid-text occurrences are banned too).</summary>
    private SamplingParams FillBadWordsTokenIds(SamplingParams p)
    {
        if (p.BadWords is not { Count: > 0 } words || p.BadWordsTokenIds is not null)
        {
            return p;
        }
        if (tokenizer is null)
        {
            throw new EngineRequestException("bad_words need a tokenizer, and this engine runs without one.", "bad_words");
        }
        var sequences = new List<int[]>();
        foreach (string word in words)
        {
            int[] plain = tokenizer.Encode(word.TrimStart(), addSpecialTokens: false);
            if (plain.Length == 0)
            {
                // Validate() rejects the empty sequence with the right message.
                sequences.Add(plain);
                continue;
            }
            sequences.Add(plain);
            int[] spaced = tokenizer.Encode(" " + word.TrimStart(), addSpecialTokens: false);
            if (spaced.Length == plain.Length && spaced[0] != plain[0])
            {
                sequences.Add(spaced);
            }
        }
        return p with { BadWordsTokenIds = sequences };
    }
}
