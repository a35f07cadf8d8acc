using System.Text.Json;
using Celer.Server.Serving;
using Microsoft.AspNetCore.Http;

namespace Celer.Server.Tests.Serving;

public class OpenAIErrorResultTests
{
    private static async Task<(HttpContext Context, JsonElement Body)> ExecuteAsync(OpenAIException error)
    {
        var context = new DefaultHttpContext();
        context.Response.Body = new MemoryStream();
        await OpenAIErrorResult.From(error).ExecuteAsync(context);
        context.Response.Body.Position = 0;
        using var body = await JsonDocument.ParseAsync(context.Response.Body);
        return (context, body.RootElement.Clone());
    }

    [Fact]
    public async Task Writes_openais_envelope_with_all_four_fields()
    {
        var (context, body) = await ExecuteAsync(OpenAIException.BadRequest("too long", "max_tokens", "context_length_exceeded"));
        Assert.Equal(400, context.Response.StatusCode);
        Assert.Equal("application/json", context.Response.ContentType);
        var error = body.GetProperty("error");
        Assert.Equal("too long", error.GetProperty("message").GetString());
        Assert.Equal("BadRequestError", error.GetProperty("type").GetString());
        Assert.Equal("max_tokens", error.GetProperty("param").GetString());
        Assert.Equal("context_length_exceeded", error.GetProperty("code").GetString());
    }

    [Fact]
    public async Task Unknown_model_is_404_with_param_model()
    {
        var (context, body) = await ExecuteAsync(OpenAIException.ModelNotFound("gpt-9"));
        Assert.Equal(404, context.Response.StatusCode);
        Assert.Equal("NotFoundError", body.GetProperty("error").GetProperty("type").GetString());
        Assert.Equal("model", body.GetProperty("error").GetProperty("param").GetString());
        Assert.Contains("gpt-9", body.GetProperty("error").GetProperty("message").GetString());
    }

    [Fact]
    public async Task Overload_is_503_with_retry_after_and_null_param()
    {
        var (context, body) = await ExecuteAsync(OpenAIException.Unavailable("busy", 2));
        Assert.Equal(503, context.Response.StatusCode);
        Assert.Equal("2", context.Response.Headers.RetryAfter.ToString());
        Assert.Equal(JsonValueKind.Null, body.GetProperty("error").GetProperty("param").ValueKind);
    }

    [Fact]
    public void Unexpected_exceptions_become_a_generic_500_without_details()
    {
        var logger = Microsoft.Extensions.Logging.Abstractions.NullLogger.Instance;
        var e = ErrorMapping.ToOpenAIException(new InvalidOperationException("/secret/path/model.bin at 0x7fff"), logger);
        Assert.Equal(500, e.StatusCode);
        Assert.Equal(ErrorMapping.InternalErrorMessage, e.Message);
        Assert.DoesNotContain("secret", e.Message);
    }

    [Fact]
    public void Engine_and_sampling_errors_keep_param_and_code()
    {
        var logger = Microsoft.Extensions.Logging.Abstractions.NullLogger.Instance;
        var sampling = ErrorMapping.ToOpenAIException(new Celer.Engine.SamplingParamsException("top_p", "top_p must be in (0, 1], got 0."), logger);
        Assert.Equal((400, "top_p"), (sampling.StatusCode, sampling.Param));
        var admission = ErrorMapping.ToOpenAIException(new Celer.Engine.EngineRequestException("too long", "prompt", "context_length_exceeded"), logger);
        Assert.Equal((400, "prompt", "context_length_exceeded", "too long"), (admission.StatusCode, admission.Param, admission.Code, admission.Message));
    }
}
