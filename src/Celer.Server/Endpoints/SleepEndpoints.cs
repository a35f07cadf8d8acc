using System.Globalization;
using Celer.Engine;
using Celer.Server.Hosting;
using Celer.Server.Protocol;
using Celer.Server.Serving;

namespace Celer.Server.Endpoints;

/// <summary>
/// vLLM's sleep mode endpoints: <c>POST /sleep?level=1|2</c>, <c>POST /wake_up[?tags=weights&amp;tags=kv_cache]</c> and
/// <c>GET /is_sleeping</c>, for a model served with <c>--enable-sleep-mode</c>. With several models served, the query's
/// <c>model</c> names the one meant, as a request body's <c>model</c> does.
/// </summary>
public static class SleepEndpoints
{
    private static readonly string[] WakeTags = ["weights", "kv_cache"];

    public static IEndpointRouteBuilder MapSleepApi(this IEndpointRouteBuilder endpoints)
    {
        var group = endpoints.MapGroup("").AddEndpointFilter<ApiErrorFilter>();
        group.MapPost("/sleep", SleepAsync);
        group.MapPost("/wake_up", WakeUpAsync);
        group.MapGet("/is_sleeping", IsSleeping);
        return endpoints;
    }

    /// <summary>Answers once the model sleeps: after the requests it was running finished.</summary>
    private static async Task<IResult> SleepAsync(HttpContext context, ServedModels models)
    {
        AsyncLlmEngine engine = SleepingEngine(context, models);
        string? text = context.Request.Query["level"];
        int level = 1;
        if (text is not null && (!int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out level) || level is not (1 or 2)))
        {
            throw OpenAIException.BadRequest($"`level` must be 1 (weights kept in host memory) or 2 (weights discarded); got '{text}'.", "level");
        }

        await engine.SleepAsync(level);
        return TypedResults.Ok();
    }

    /// <summary>Wakes the model once the device has room for it (<see cref="SleepPolicy"/>), else a 503 that says why.</summary>
    private static async Task<IResult> WakeUpAsync(HttpContext context, ServedModels models, SleepPolicy policy)
    {
        AsyncLlmEngine engine = SleepingEngine(context, models);
        string?[] tags = context.Request.Query["tags"].ToArray();
        if (tags.FirstOrDefault(tag => !WakeTags.Contains(tag)) is { } unknown)
        {
            throw OpenAIException.BadRequest($"Unknown wake-up tag '{unknown}': the tags are weights and kv_cache.", "tags");
        }

        if (!policy.MakeRoom(engine))
        {
            throw OpenAIException.Unavailable(
                $"The device has {engine.DeviceFreeBytes / (double)(1L << 30):F2} GiB free and the model needs {engine.BytesToWake / (double)(1L << 30):F2} GiB to wake; "
                + "the other models holding memory are serving requests.", AdmissionControl.RetryAfterSeconds);
        }

        await engine.WakeUpAsync(weights: tags.Length == 0 || tags.Contains("weights"), kvCache: tags.Length == 0 || tags.Contains("kv_cache"));
        return TypedResults.Ok();
    }

    private static IResult IsSleeping(HttpContext context, ServedModels models) =>
        TypedResults.Json(new IsSleepingResponse(SleepingEngine(context, models).IsSleeping), ServerJsonContext.Wire.IsSleepingResponse);

    /// <summary>The engine of the model the query names (or the only one), which must have been served with sleep mode.</summary>
    private static AsyncLlmEngine SleepingEngine(HttpContext context, ServedModels models)
    {
        ServingModel model = models.Resolve(context.Request.Query["model"]).Model;
        if (!model.Engine.SupportsSleep)
        {
            throw OpenAIException.BadRequest($"The model `{model.PrimaryName}` is served without sleep mode: start it with --enable-sleep-mode.");
        }

        return model.Engine;
    }
}
