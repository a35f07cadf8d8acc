using Celer.Engine;
using Celer.Server.Protocol;

namespace Celer.Server.Serving;

/// <summary>
/// vLLM's <c>POST /classify</c> (<c>ServingClassification</c>) on a sequence classifier: every input is tokenized,
/// truncated and checked as <c>/v1/embeddings</c> checks its inputs (<see cref="PoolingInputs"/>), then becomes one
/// classification request of the engine, all submitted at once. Each answer is the engine's label probabilities (or a
/// regression model's values), the label of the most probable class (the first on a tie, as numpy's argmax) and the
/// number of classes. The engine refuses a generative model and an embedding model.
/// </summary>
internal sealed partial class ClassificationService(ServingModel model, AdmissionControl admission, ILogger<ClassificationService> logger, ServerOptions options)
{
    public async Task<IResult> HandleAsync(HttpContext context, ClassificationRequest request)
    {
        var modelName = model.PrimaryName;
        var id = "classify-" + Guid.NewGuid().ToString("N");
        var pooling = new PoolingParams
        {
            Task = PoolingTask.Classify,
            UseActivation = PoolingBatch.UseActivation(request.Softmax, request.Activation, request.UseActivation),
        };
        var engineRequests = PoolingInputs.ToEngineRequests(model, request, id, pooling, "classification");

        using var lease = admission.Enter(engineRequests.Count, 1, PoolingInputs.InputField);
        if (options.EnableLogRequests && logger.IsEnabled(LogLevel.Information))
        {
            var tokens = engineRequests.Sum(r => r.PromptTokenIds.Count);
            LogReceived(id, engineRequests.Count, tokens);
        }
        var (outputs, promptTokens) = await PoolingBatch.RunAsync(model.Engine, engineRequests, context.RequestAborted);

        // The engine only classifies on a classifier, so the labels are there once it has answered.
        var labels = model.Classifier?.Labels ?? [];
        var data = outputs.Select((probs, i) => new ClassificationData(i, Label(probs, labels), probs, probs.Length)).ToList();
        return TypedResults.Json(
            new ClassificationResponse(id, DateTimeOffset.UtcNow.ToUnixTimeSeconds(), modelName, data, new UsageInfo(promptTokens, promptTokens, 0)),
            ServerJsonContext.Wire.ClassificationResponse);
    }

    /// <summary>The name of the most probable class (vLLM's <c>id2label[argmax]</c>; null past the named labels).</summary>
    private static string? Label(float[] probs, IReadOnlyList<string> labels)
    {
        var best = 0;
        for (var i = 1; i < probs.Length; i++)
        {
            if (probs[i] > probs[best])
                best = i;
        }
        return best < labels.Count ? labels[best] : null;
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Received request {RequestId}: {Inputs} input(s) to classify, {PromptTokens} prompt tokens")]
    private partial void LogReceived(string requestId, int inputs, int promptTokens);
}
