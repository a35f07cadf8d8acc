using System.Text.Json;
using Microsoft.AspNetCore.Http;

namespace Celer.Router;

/// <summary>A request to forward, with what routing may look at: its model, its headers, and (on demand) its prompt text.</summary>
public sealed class RouteRequest
{
    private readonly byte[] _body;
    private string? _prompt;

    public RouteRequest(string model, HttpRequest http, byte[] body)
    {
        Model = model;
        Http = http;
        _body = body;
    }

    public string Model { get; }
    public HttpRequest Http { get; }

    /// <summary>The body as the client sent it, forwarded unchanged.</summary>
    public ReadOnlyMemory<byte> Body => _body;

    /// <summary>The prompt's text (<see cref="PromptText"/>), read from the body the first time a routing logic asks.</summary>
    public string Prompt
    {
        get
        {
            if (_prompt is null)
            {
                using var json = JsonDocument.Parse(_body);
                _prompt = PromptText.Extract(json.RootElement);
            }
            return _prompt;
        }
    }

    /// <summary>
    /// Reads the body once to find its <c>model</c>. No <c>model</c> (or null) means the one model the healthy backends
    /// serve, as vLLM's server takes its only model. Null after an error answer was written: not a JSON object (400), a
    /// <c>model</c> that is not a string (400), no model named while several are served (400), none healthy (503), a model
    /// no backend serves (404).
    /// </summary>
    public static async Task<RouteRequest?> ReadAsync(HttpContext context, BackendPool pool)
    {
        byte[] body;
        using (var buffer = new MemoryStream())
        {
            await context.Request.Body.CopyToAsync(buffer, context.RequestAborted);
            body = buffer.ToArray();
        }

        string? model = null;
        try
        {
            using var json = JsonDocument.Parse(body);
            if (json.RootElement.ValueKind != JsonValueKind.Object)
            {
                await OpenAIError.BadRequestAsync(context, "The request body must be a JSON object.");
                return null;
            }
            if (json.RootElement.TryGetProperty("model", out var field) && field.ValueKind != JsonValueKind.Null)
            {
                if (field.ValueKind != JsonValueKind.String)
                {
                    await OpenAIError.BadRequestAsync(context, "`model` must be a string.", "model");
                    return null;
                }
                model = field.GetString();
            }
        }
        catch (JsonException)
        {
            await OpenAIError.BadRequestAsync(context, "The request body is not valid JSON.");
            return null;
        }

        if (model is null)
        {
            var served = pool.HealthyModels();
            if (served.Count != 1)
            {
                await (served.Count == 0
                    ? OpenAIError.UnavailableAsync(context, "No backend is healthy.")
                    : OpenAIError.BadRequestAsync(context, $"The router serves several models ({string.Join(", ", served)}); name one in `model`.", "model"));
                return null;
            }
            model = served[0];
        }
        if (!pool.AnyServes(model))
        {
            await OpenAIError.ModelNotFoundAsync(context, model);
            return null;
        }
        return new RouteRequest(model, context.Request, body);
    }
}
