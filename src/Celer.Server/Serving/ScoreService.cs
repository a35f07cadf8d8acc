using System.Text.Json;
using System.Text.Json.Nodes;
using Celer.ChatTemplates;
using Celer.Engine;
using Celer.Server.Protocol;
using Celer.Tokenization;

namespace Celer.Server.Serving;

/// <summary>
/// vLLM's <c>POST /score</c> and <c>POST /rerank</c> (vLLM's <c>ServingScores</c>), two ways by the model:
/// <list type="bullet">
/// <item>a cross-encoder (a sequence classifier with one output): each pair is tokenized as the tokenizer encodes a pair
/// (BERT's <c>[CLS] A [SEP] B [SEP]</c> with token types 0 then 1, XLM-R's <c>&lt;s&gt; A &lt;/s&gt;&lt;/s&gt; B &lt;/s&gt;</c>)
/// and is one score request of the engine, whose output is the model's logit through its cross-encoder activation;</item>
/// <item>an embedding model: a pair's score is the cosine similarity of its two texts' vectors. Every distinct text is
/// tokenized, truncated and embedded once (a query scored against a hundred documents is embedded once); the cosine is
/// taken in double on the vectors as the pooler gives them.</item>
/// </list>
/// Both read the request, pair the texts and write the response the same way, and submit all their engine requests
/// (<c>{id}-{k}</c>) at once through <see cref="PoolingBatch"/>, as <c>/v1/embeddings</c> does.
/// </summary>
internal sealed partial class ScoreService(ServingModel model, AdmissionControl admission, ILogger<ScoreService> logger, ServerOptions options)
{
    /// <summary>Most texts on one side of a request: the embeddings API's limit on inputs.</summary>
    public const int MaxTexts = PoolingInputs.MaxInputs;

    // torch.nn.CosineSimilarity's eps, which vLLM scores with: a zero vector scores 0, not NaN.
    private const double CosineEpsilon = 1e-8;

    /// <summary>One side of the pairs: the request field it came from and its texts, in order.</summary>
    private sealed record Side(string Field, IReadOnlyList<string> Texts);

    /// <summary>The pairs a request scores: pair k is (First[k], Second[k]), or (First[0], Second[k]) when First holds one text.</summary>
    private sealed record Pairs(Side First, Side Second)
    {
        public int Count => Second.Texts.Count;

        public int FirstIndex(int k) => First.Texts.Count == 1 ? 0 : k;
    }

    /// <summary>The fields of a score or rerank request that say how its pairs are scored.</summary>
    private sealed record Scoring(int? TruncatePromptTokens, bool UseActivation, int Priority);

    /// <summary>A request's engine requests, and how pair k's score is read from their outputs (in the requests' order).</summary>
    private sealed record Plan(List<GenerateRequest> EngineRequests, Func<float[][], int, double> Score);

    /// <summary>
    /// <c>/score</c>: 1 text against N scores N pairs (the one text broadcast), N against N pairs them in order; any
    /// other pair of lengths is refused, as vLLM refuses it (N against 1 too).
    /// </summary>
    public async Task<IResult> HandleScoreAsync(HttpContext context, ScoreRequest request)
    {
        var modelName = model.PrimaryName;
        var pairs = new Pairs(
            ReadSide(("text_1", request.Text1), ("queries", request.Queries), ("data_1", request.Data1)),
            ReadSide(("text_2", request.Text2), ("documents", request.Documents), ("items", request.Items), ("data_2", request.Data2)));
        var (first, second) = (pairs.First, pairs.Second);
        if (first.Texts.Count > 1 && first.Texts.Count != second.Texts.Count)
        {
            throw OpenAIException.BadRequest(
                $"Input lengths must be either 1:1, 1:N or N:N: got {first.Texts.Count} in `{first.Field}` and {second.Texts.Count} in `{second.Field}`.", first.Field);
        }

        var id = "score-" + Guid.NewGuid().ToString("N");
        var created = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
        var scoring = new Scoring(request.TruncatePromptTokens, PoolingBatch.UseActivation(null, request.Activation, request.UseActivation), request.Priority ?? 0);
        var (scores, promptTokens) = await ScoreAsync(id, pairs, scoring, context.RequestAborted);
        return TypedResults.Json(
            new ScoreResponse(id, created, modelName, [.. scores.Select((score, k) => new ScoreData(k, score))], new UsageInfo(promptTokens, promptTokens, 0)),
            ServerJsonContext.Wire.ScoreResponse);
    }

    /// <summary><c>/rerank</c>: the query against each document, best first (ties in the documents' order), cut to <c>top_n</c>.</summary>
    public async Task<IResult> HandleRerankAsync(HttpContext context, RerankRequest request)
    {
        var modelName = model.PrimaryName;
        if (request.TopN is < 0)
            throw OpenAIException.BadRequest($"`top_n` must be 0 (every document) or more, got {request.TopN}.", "top_n");
        var query = request.Query switch
        {
            null or { ValueKind: JsonValueKind.Null } => throw OpenAIException.BadRequest("`query` is required.", "query"),
            { ValueKind: JsonValueKind.String } text => new Side("query", [text.GetString()!]),
            _ => throw OpenAIException.BadRequest("`query` must be a string.", "query"),
        };
        var documents = ReadSide(("documents", request.Documents));

        var id = "rerank-" + Guid.NewGuid().ToString("N");
        var scoring = new Scoring(request.TruncatePromptTokens, PoolingBatch.UseActivation(null, request.Activation, request.UseActivation), request.Priority ?? 0);
        var (scores, promptTokens) = await ScoreAsync(id, new Pairs(query, documents), scoring, context.RequestAborted);
        var topN = request.TopN is > 0 and var n ? Math.Min(n, documents.Texts.Count) : documents.Texts.Count;
        // OrderByDescending is stable: equal scores keep the documents' order, as vLLM's sort does.
        var results = Enumerable.Range(0, documents.Texts.Count)
            .Select(j => new RerankResult(j, new RerankDocument(documents.Texts[j]), scores[j]))
            .OrderByDescending(r => r.RelevanceScore)
            .Take(topN)
            .ToList();
        return TypedResults.Json(
            new RerankResponse(id, modelName, new EmbeddingUsage(promptTokens, promptTokens), results),
            ServerJsonContext.Wire.RerankResponse);
    }

    /// <summary>
    /// The one side given under any of its names (vLLM's request models are a union over them): a string, or a non-empty
    /// list of strings.
    /// </summary>
    private static Side ReadSide(params (string Field, JsonElement? Value)[] names)
    {
        var given = names.Where(n => n.Value is { ValueKind: not JsonValueKind.Null }).ToList();
        if (given.Count == 0)
        {
            var others = names.Length > 1 ? $" (or {string.Join(" or ", names.Skip(1).Select(n => $"`{n.Field}`"))})" : "";
            throw OpenAIException.BadRequest($"`{names[0].Field}`{others} is required.", names[0].Field);
        }
        if (given.Count > 1)
            throw OpenAIException.BadRequest($"`{given[0].Field}` and `{given[1].Field}` name the same side of the pairs: give one of them.", given[1].Field);

        var (field, value) = (given[0].Field, given[0].Value!.Value);
        switch (value.ValueKind)
        {
            case JsonValueKind.String:
                return new Side(field, [value.GetString()!]);
            case JsonValueKind.Array:
                var length = value.GetArrayLength();
                if (length == 0)
                    throw OpenAIException.BadRequest($"`{field}` cannot be empty: give at least one text.", field);
                if (length > MaxTexts)
                    throw OpenAIException.BadRequest($"`{field}` can hold at most {MaxTexts} texts, got {length}.", field);
                var texts = new List<string>(length);
                foreach (var item in value.EnumerateArray())
                    texts.Add(item.ValueKind == JsonValueKind.String ? item.GetString()! : throw InvalidShape(field));
                return new Side(field, texts);
            case JsonValueKind.Object:
                // vLLM's ScoreMultiModalParam ({"content": [...]}), refused on a model that is not multimodal.
                throw OpenAIException.BadRequest($"`{field}` must be a string or a list of strings: multimodal content needs a multimodal model.", field);
            default:
                throw InvalidShape(field);
        }
    }

    private static OpenAIException InvalidShape(string field) => OpenAIException.BadRequest($"`{field}` must be a string or a list of strings.", field);

    /// <summary>
    /// Plans the request for the model (every text tokenized and checked before anything is admitted), runs all its
    /// engine requests as one batch, and reads each pair's score.
    /// </summary>
    private async Task<(double[] Scores, int PromptTokens)> ScoreAsync(string id, Pairs pairs, Scoring scoring, CancellationToken cancellationToken)
    {
        var plan = model.Classifier is null ? PlanBiEncoder(id, pairs, scoring) : PlanCrossEncoder(id, pairs, scoring);
        using var lease = admission.Enter(plan.EngineRequests.Count, 1, pairs.Second.Field);
        if (options.EnableLogRequests && logger.IsEnabled(LogLevel.Information))
        {
            var tokens = plan.EngineRequests.Sum(r => r.PromptTokenIds.Count);
            LogReceived(id, pairs.Count, plan.EngineRequests.Count, tokens);
        }
        var pooled = await PoolingBatch.RunAsync(model.Engine, plan.EngineRequests, cancellationToken);
        var scores = new double[pairs.Count];
        for (var k = 0; k < scores.Length; k++)
            scores[k] = plan.Score(pooled.Vectors, k);
        return (scores, pooled.PromptTokens);
    }

    /// <summary>
    /// An embedding model: one embedding request per distinct text (the first side it appears on names it in errors),
    /// each prompted and truncated as <c>/v1/embeddings</c> does (both sides get the model's default prompt, as
    /// <c>SentenceTransformer.encode</c> gives it to every text); a pair's score is the cosine of its two vectors.
    /// <c>use_activation</c> only decides whether the vectors are normalized, which the cosine does not see.
    /// </summary>
    private Plan PlanBiEncoder(string id, Pairs pairs, Scoring scoring)
    {
        var keepLast = PoolingBatch.TruncationLength(scoring.TruncatePromptTokens, model.MaxModelLen);
        var distinct = new Dictionary<string, int>(StringComparer.Ordinal);
        var engineRequests = new List<GenerateRequest>();
        var pooling = new PoolingParams();
        var prompt = DefaultPromptInputs.For(model, addSpecialTokens: true);
        int[] Slots(Side side)
        {
            var rules = new CompletionPrompts.Rules(side.Field, MaxTexts, AllowEmptyText: true, prompt?.Text ?? "");
            var slots = new int[side.Texts.Count];
            for (var i = 0; i < slots.Length; i++)
            {
                var text = side.Texts[i];
                if (!distinct.TryGetValue(text, out var k))
                {
                    var tokenized = CompletionPrompts.FromText(text, model.Tokenizer, addSpecialTokens: true, rules).TokenIds;
                    var ids = PoolingBatch.KeepLast(tokenized, keepLast);
                    if (ids.Length > model.MaxModelLen)
                        throw TooLong(ids.Length, side.Field);
                    var textPooling = prompt?.Pooling(pooling, tokenized.Length, ids.Length, side.Field, i) ?? pooling;
                    k = engineRequests.Count;
                    distinct.Add(text, k);
                    engineRequests.Add(GenerateRequest.ForPooling($"{id}-{k}", ids, textPooling, scoring.Priority));
                }
                slots[i] = k;
            }
            return slots;
        }

        var (first, second) = (Slots(pairs.First), Slots(pairs.Second));
        return new Plan(engineRequests, (vectors, k) => Cosine(vectors[first[pairs.FirstIndex(k)]], vectors[second[k]]));
    }

    /// <summary>
    /// A cross-encoder: one score request per pair, the pair encoded by the tokenizer's pair template with its token
    /// types when the model embeds them; the engine's output is the score. <c>truncate_prompt_tokens</c> cuts a pair as
    /// HF's tokenizer does for vLLM (longest first, then the template); a pair still longer than the context is refused.
    /// A default prompt goes before each pair's first text, as sentence-transformers 6's <c>CrossEncoder.predict</c>
    /// puts it (a classifier's head pools as the checkpoint says, so <c>include_prompt</c> does not apply).
    /// </summary>
    private Plan PlanCrossEncoder(string id, Pairs pairs, Scoring scoring)
    {
        var maxLength = PoolingBatch.TruncationLength(scoring.TruncatePromptTokens, model.MaxModelLen);
        var prompt = model.Engine.Pooler?.DefaultPrompt?.Text ?? "";

        var engineRequests = new List<GenerateRequest>(pairs.Count);
        for (var k = 0; k < pairs.Count; k++)
        {
            var encoded = EncodePair(pairs, k, prompt, maxLength);
            var pooling = new PoolingParams
            {
                Task = PoolingTask.Score, TokenTypeIds = model.TakesTokenTypes ? encoded.TokenTypeIds : null, UseActivation = scoring.UseActivation,
            };
            engineRequests.Add(GenerateRequest.ForPooling($"{id}-{k}", encoded.InputIds, pooling, scoring.Priority));
        }
        return new Plan(engineRequests, (outputs, k) => outputs[k][0]);
    }

    /// <summary>
    /// Pair k, its first text after <paramref name="prompt"/>, as the tokenizer encodes a pair (HF's
    /// <c>tokenizer(text, text_pair)</c>), truncated if asked, checked against the context.
    /// </summary>
    private EncodedInput EncodePair(Pairs pairs, int k, string prompt, int? maxLength)
    {
        var (first, second) = (prompt + pairs.First.Texts[pairs.FirstIndex(k)], pairs.Second.Texts[k]);
        EncodedInput encoded;
        try
        {
            // With a score template the pair is the one text it renders; else an LLM reranker (vLLM's use_pad_token
            // false) reads the two texts joined, as one text.
            encoded = model.ScoreTemplate is { } template
                ? model.Tokenizer.EncodeWithTypes(RenderScoreTemplate(template, pairs, k, first, second), addSpecialTokens: true, maxLength: maxLength)
                : model.Classifier!.UsePadToken
                ? model.Tokenizer.EncodeWithTypes(first, second, addSpecialTokens: true, maxLength)
                : model.Tokenizer.EncodeWithTypes(first + second, addSpecialTokens: true, maxLength: maxLength);
        }
        catch (NotSupportedException e)
        {
            throw OpenAIException.BadRequest($"This model's tokenizer cannot encode a pair of texts, which cross-encoder scoring needs: {e.Message}", "model");
        }
        catch (ArgumentOutOfRangeException e) when (maxLength is not null)
        {
            throw OpenAIException.BadRequest($"`truncate_prompt_tokens` ({maxLength}) is too small for a pair: {e.Message.Split(" (Parameter")[0]}", "truncate_prompt_tokens");
        }

        if (encoded.InputIds.Length == 0)
            throw OpenAIException.BadRequest($"The pair of `{pairs.First.Field}` and `{pairs.Second.Field}` at index {k} tokenizes to no tokens.", pairs.First.Field);
        if (encoded.InputIds.Length > model.MaxModelLen)
        {
            // Name the text to shorten: the longer of the two, counted alone only on this error path.
            var firstIsLonger = model.Tokenizer.Encode(first, addSpecialTokens: false).Length > model.Tokenizer.Encode(second, addSpecialTokens: false).Length;
            throw TooLong(encoded.InputIds.Length, firstIsLonger ? pairs.First.Field : pairs.Second.Field);
        }
        return encoded;
    }

    /// <summary>
    /// Pair k through the score template (<see cref="ServingModel.ScoreTemplate"/>), as vLLM renders it: the messages
    /// [{role: "query", content: first}, {role: "document", content: second}], no generation prompt, the tokenizer's
    /// bos and eos tokens. A text that spells a special token would become that control token in the rendered prompt,
    /// so it is refused as in a chat message (BAD_INPUT.md, row 19).
    /// </summary>
    private string RenderScoreTemplate(ChatTemplate template, Pairs pairs, int k, string first, string second)
    {
        foreach (var (text, side, index) in new[] { (first, pairs.First, pairs.FirstIndex(k)), (second, pairs.Second, k) })
        {
            if (ChatPromptBuilder.SpecialTokenIn(text, model.SpecialTokenTexts) is { } special)
                throw OpenAIException.BadRequest($"`{side.Field}`[{index}] contains the text of the special token '{special}', which the score template's prompt cannot carry as text.", side.Field);
        }

        var context = new JsonObject
        {
            ["messages"] = new JsonArray(
                new JsonObject { ["role"] = "query", ["content"] = first },
                new JsonObject { ["role"] = "document", ["content"] = second }),
            ["add_generation_prompt"] = false,
            ["bos_token"] = model.TokenizerConfig.BosToken,
            ["eos_token"] = model.TokenizerConfig.EosToken,
        };
        try
        {
            return template.Render(context);
        }
        catch (TemplateRenderException e)
        {
            throw OpenAIException.BadRequest($"The score template (--chat-template) failed to render the pair at index {k}: {e.Message}", pairs.Second.Field);
        }
    }

    /// <summary>
    /// The engine refuses an input longer than the context too, but names <c>input</c>; checked here first, with vLLM's
    /// message for a score request, so the error names the field, and nothing is submitted.
    /// </summary>
    private OpenAIException TooLong(int tokens, string field) => OpenAIException.BadRequest(
        $"This model's maximum context length is {model.MaxModelLen} tokens. However, you requested {tokens} tokens in the input for score. Please reduce the length of the input.",
        field, "context_length_exceeded");

    /// <summary>Cosine similarity in double, with torch's floor on each norm.</summary>
    internal static double Cosine(ReadOnlySpan<float> a, ReadOnlySpan<float> b)
    {
        if (a.Length != b.Length)
            throw new ArgumentException($"Vectors of {a.Length} and {b.Length} values have no cosine.", nameof(b));
        double dot = 0, normA = 0, normB = 0;
        for (var i = 0; i < a.Length; i++)
        {
            dot += (double)a[i] * b[i];
            normA += (double)a[i] * a[i];
            normB += (double)b[i] * b[i];
        }
        return dot / (Math.Max(Math.Sqrt(normA), CosineEpsilon) * Math.Max(Math.Sqrt(normB), CosineEpsilon));
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Received request {RequestId}: {Pairs} pair(s), {EngineRequests} engine request(s), {PromptTokens} prompt tokens")]
    private partial void LogReceived(string requestId, int pairs, int engineRequests, int promptTokens);
}
