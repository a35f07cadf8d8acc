using Celer.Server.ToolCalling;

namespace Celer.Server.Serving;

/// <summary>
/// One served model with its own request handlers: its engine (KV cache, scheduler), its gate in front of that engine
/// and its chat parsers, so requests for one model never wait in, or count against, another's queue.
/// </summary>
internal sealed class ServedModel
{
    public ServedModel(ServingModel model, AdmissionControl admission, ChatParsers parsers, ServerOptions options, ILoggerFactory loggers)
    {
        Model = model;
        Admission = admission;
        Completions = new CompletionService(model, admission, loggers.CreateLogger<CompletionService>(), options);
        Chat = new ChatService(model, admission, loggers.CreateLogger<ChatService>(), options, parsers);
        Embeddings = new EmbeddingService(model, admission, loggers.CreateLogger<EmbeddingService>(), options);
        Scores = new ScoreService(model, admission, loggers.CreateLogger<ScoreService>(), options);
        Classification = new ClassificationService(model, admission, loggers.CreateLogger<ClassificationService>(), options);
    }

    public ServingModel Model { get; }
    public AdmissionControl Admission { get; }
    public CompletionService Completions { get; }
    public ChatService Chat { get; }
    public EmbeddingService Embeddings { get; }
    public ScoreService Scores { get; }
    public ClassificationService Classification { get; }
}

/// <summary>
/// The models a server serves, which the endpoints resolve a request's <c>model</c> through. Every served name
/// belongs to one model; a request without <c>model</c> means the only one, or is refused when there are several.
/// </summary>
internal sealed class ServedModels
{
    private readonly Dictionary<string, ServedModel> _byName = new(StringComparer.Ordinal);

    /// <param name="models">Models whose names <see cref="CheckNames"/> has passed.</param>
    public ServedModels(IReadOnlyList<ServedModel> models)
    {
        All = models;
        foreach (var served in models)
        {
            foreach (var name in served.Model.ServedModelNames)
                _byName.Add(name, served);
        }
    }

    /// <summary>Checked before the server is built: a name two models answer to could reach either.</summary>
    /// <exception cref="ArgumentException">A served name given to two models.</exception>
    public static void CheckNames(IEnumerable<ServingModel> models)
    {
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (var name in models.SelectMany(m => m.ServedModelNames))
        {
            if (!seen.Add(name))
                throw new ArgumentException($"The served model name `{name}` is given to two models; each name must belong to one.", nameof(models));
        }
    }

    /// <summary>In the order they were given; the first is the default of a single-model server.</summary>
    public IReadOnlyList<ServedModel> All { get; }

    /// <summary>The model a request names.</summary>
    /// <exception cref="OpenAIException">
    /// 404 <c>model_not_found</c> for a name not served here; 400 for a missing <c>model</c> while several are served
    /// (the router's answer to the same request).
    /// </exception>
    public ServedModel Resolve(string? requested)
    {
        if (string.IsNullOrEmpty(requested))
        {
            return All.Count == 1
                ? All[0]
                : throw OpenAIException.BadRequest(
                    $"The server serves several models ({string.Join(", ", All.Select(m => m.Model.PrimaryName))}); name one in `model`.", "model");
        }

        return _byName.TryGetValue(requested, out var served) ? served : throw OpenAIException.ModelNotFound(requested);
    }

    public bool AnyEngineDead => All.Any(m => m.Model.Engine.IsDead);

    public bool IsDraining => All.Any(m => m.Admission.IsDraining);

    public int InFlight => All.Sum(m => m.Admission.InFlight);

    public void BeginDraining()
    {
        foreach (var served in All)
            served.Admission.BeginDraining();
    }

    /// <summary>Completes once draining has begun and every model's admitted requests have finished.</summary>
    public Task WaitForDrainedAsync(CancellationToken cancellationToken) =>
        Task.WhenAll(All.Select(m => m.Admission.WaitForDrainedAsync(cancellationToken)));
}
