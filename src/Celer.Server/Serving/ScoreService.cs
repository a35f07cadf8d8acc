using System.Text.Json;
using Celer.Engine;
using Celer.Server.Protocol;

namespace Celer.Server.Serving;

/// <summary>
/// vLLM's <c>POST /score</c> and <c>POST /rerank</c> for an embedding model (vLLM's <c>ServingScores</c> on a model that is
/// not a cross-encoder): a pair's score is the cosine similarity of its two texts' vectors. Every distinct text of a
/// request is tokenized, truncated and checked once, then becomes one pooling request of the engine
/// (<c>{id}-{k}</c>), all submitted at once (<see cref="PoolingBatch"/>, as <c>/v1/embeddings</c> does): a query scored
/// against a hundred documents is embedded once. The cosine is taken in double on the vectors as the pooler gives them.
/// </summary>
internal sealed partial class ScoreService(ServingModel model, AdmissionControl admission, ILogger<ScoreService> logger, ServerOptions options)
{
    /// <summary>Most texts on one side of a request: the embeddings API's limit on inputs.</summary>
    public const int MaxTexts = EmbeddingService.MaxInputs;

    // torch.nn.CosineSimilarity's eps, which vLLM scores with: a zero vector scores 0, not NaN.
    private const double CosineEpsilon = 1e-8;

    /// <summary>One side of the pairs: the request field it came from and its texts, in order.</summary>
    private sealed record Side(string Field, IReadOnlyList<string> Texts);

    /// <summary>The vectors of a request's distinct texts, and for each side, which of them each of its texts is.</summary>
    private sealed record Embedded(float[][] Vectors, int PromptTokens, int[][] Slots)
    {
        public double Score(int side1, int index1, int side2, int index2) => Cosine(Vectors[Slots[side1][index1]], Vectors[Slots[side2][index2]]);
    }

    /// <summary>
    /// <c>/score</c>: 1 text against N scores N pairs (the one text broadcast), N against N pairs them in order; any
    /// other pair of lengths is refused, as vLLM refuses it (N against 1 too).
    /// </summary>
    public async Task<IResult> HandleScoreAsync(HttpContext context)
    {
        var request = await RequestBody.ReadAsync(context.Request, ServerJsonContext.Wire.ScoreRequest);
        var modelName = model.ResolveModelName(request.Model);
        var keepLast = PoolingBatch.TruncationLength(request.TruncatePromptTokens, model.MaxModelLen);
        var first = ReadSide(("text_1", request.Text1), ("queries", request.Queries), ("data_1", request.Data1));
        var second = ReadSide(("text_2", request.Text2), ("documents", request.Documents), ("items", request.Items), ("data_2", request.Data2));
        if (first.Texts.Count > 1 && first.Texts.Count != second.Texts.Count)
        {
            throw OpenAIException.BadRequest(
                $"Input lengths must be either 1:1, 1:N or N:N: got {first.Texts.Count} in `{first.Field}` and {second.Texts.Count} in `{second.Field}`.", first.Field);
        }

        var id = "score-" + Guid.NewGuid().ToString("N");
        var created = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
        var embedded = await EmbedAsync(id, [first, second], keepLast, request.Priority ?? 0, context.RequestAborted);
        var broadcast = first.Texts.Count == 1;
        var data = new ScoreData[second.Texts.Count];
        for (var j = 0; j < data.Length; j++)
            data[j] = new ScoreData(j, embedded.Score(0, broadcast ? 0 : j, 1, j));
        return TypedResults.Json(
            new ScoreResponse(id, created, modelName, data, new EmbeddingUsage(embedded.PromptTokens, embedded.PromptTokens)),
            ServerJsonContext.Wire.ScoreResponse);
    }

    /// <summary><c>/rerank</c>: the query against each document, best first (ties in the documents' order), cut to <c>top_n</c>.</summary>
    public async Task<IResult> HandleRerankAsync(HttpContext context)
    {
        var request = await RequestBody.ReadAsync(context.Request, ServerJsonContext.Wire.RerankRequest);
        var modelName = model.ResolveModelName(request.Model);
        if (request.TopN is < 0)
            throw OpenAIException.BadRequest($"`top_n` must be 0 (every document) or more, got {request.TopN}.", "top_n");
        var keepLast = PoolingBatch.TruncationLength(request.TruncatePromptTokens, model.MaxModelLen);
        var query = request.Query switch
        {
            null or { ValueKind: JsonValueKind.Null } => throw OpenAIException.BadRequest("`query` is required.", "query"),
            { ValueKind: JsonValueKind.String } text => new Side("query", [text.GetString()!]),
            _ => throw OpenAIException.BadRequest("`query` must be a string.", "query"),
        };
        var documents = ReadSide(("documents", request.Documents));

        var id = "rerank-" + Guid.NewGuid().ToString("N");
        var embedded = await EmbedAsync(id, [query, documents], keepLast, request.Priority ?? 0, context.RequestAborted);
        var topN = request.TopN is > 0 and var n ? Math.Min(n, documents.Texts.Count) : documents.Texts.Count;
        // OrderByDescending is stable: equal scores keep the documents' order, as vLLM's sort does.
        var results = Enumerable.Range(0, documents.Texts.Count)
            .Select(j => new RerankResult(j, new RerankDocument(documents.Texts[j]), embedded.Score(0, 0, 1, j)))
            .OrderByDescending(r => r.RelevanceScore)
            .Take(topN)
            .ToList();
        return TypedResults.Json(
            new RerankResponse(id, modelName, new EmbeddingUsage(embedded.PromptTokens, embedded.PromptTokens), results),
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
    /// Tokenizes, truncates and checks each distinct text once (the first side it appears on names it in errors), then
    /// computes all their vectors in one batch.
    /// </summary>
    private async Task<Embedded> EmbedAsync(string id, IReadOnlyList<Side> sides, int? keepLast, int priority, CancellationToken cancellationToken)
    {
        var distinct = new Dictionary<string, int>(StringComparer.Ordinal);
        var engineRequests = new List<GenerateRequest>();
        var slots = new int[sides.Count][];
        var pooling = new PoolingParams();
        var promptTokens = 0;
        for (var s = 0; s < sides.Count; s++)
        {
            var side = sides[s];
            var rules = new CompletionPrompts.Rules(side.Field, MaxTexts, AllowEmptyText: true);
            slots[s] = new int[side.Texts.Count];
            for (var i = 0; i < side.Texts.Count; i++)
            {
                var text = side.Texts[i];
                if (!distinct.TryGetValue(text, out var k))
                {
                    var ids = PoolingBatch.KeepLast(CompletionPrompts.FromText(text, model.Tokenizer, addSpecialTokens: true, rules).TokenIds, keepLast);
                    CheckLength(ids.Length, side.Field);
                    k = engineRequests.Count;
                    distinct.Add(text, k);
                    engineRequests.Add(GenerateRequest.ForPooling($"{id}-{k}", ids, pooling, priority));
                    promptTokens += ids.Length;
                }
                slots[s][i] = k;
            }
        }

        using var lease = admission.Enter(engineRequests.Count, 1, sides[^1].Field);
        if (options.EnableLogRequests && logger.IsEnabled(LogLevel.Information))
            LogReceived(id, sides[^1].Texts.Count, engineRequests.Count, promptTokens);
        var pooled = await PoolingBatch.RunAsync(model.Engine, engineRequests, cancellationToken);
        return new Embedded(pooled.Vectors, pooled.PromptTokens, slots);
    }

    /// <summary>
    /// The engine refuses an input longer than the context too, but names <c>input</c>; checked here first, with vLLM's
    /// message for a score request, so the error names the field, and nothing is submitted.
    /// </summary>
    private void CheckLength(int tokens, string field)
    {
        if (tokens > model.MaxModelLen)
        {
            throw OpenAIException.BadRequest(
                $"This model's maximum context length is {model.MaxModelLen} tokens. However, you requested {tokens} tokens in the input for score. Please reduce the length of the input.",
                field, "context_length_exceeded");
        }
    }

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

    [LoggerMessage(Level = LogLevel.Information, Message = "Received request {RequestId}: {Pairs} pair(s), {Texts} distinct text(s), {PromptTokens} prompt tokens")]
    private partial void LogReceived(string requestId, int pairs, int texts, int promptTokens);
}
