using System.Text;
using Celer.Server.Protocol;
using Celer.Server.Serving;

namespace Celer.Server.Tests.Serving;

public class RequestBodyTests
{
    private static OpenAIException Fails(byte[] body) =>
        Assert.Throws<OpenAIException>(() => RequestBody.Parse(body, ServerJsonContext.Wire.CompletionRequest));

    [Theory]
    [InlineData("[1, 2]")]
    [InlineData("\"a string\"")]
    [InlineData("null")]
    [InlineData("")]
    [InlineData("{\"prompt\": ")]
    [InlineData("{'prompt': 'single quotes'}")]
    [InlineData("{\"temperature\": NaN}")]
    public void Bodies_that_are_not_a_json_object_are_400(string body)
    {
        var e = Fails(Encoding.UTF8.GetBytes(body));
        Assert.Equal(400, e.StatusCode);
        Assert.Equal("BadRequestError", e.Type);
    }

    [Fact]
    public void Invalid_utf8_is_400()
    {
        byte[] body = [.. "{\"prompt\": \""u8, 0xC3, 0x28, .. "\"}"u8];
        var e = Fails(body);
        Assert.Contains("UTF-8", e.Message);
    }

    [Fact]
    public void A_wrongly_typed_field_is_named_without_dotnet_type_names()
    {
        var e = Fails(Encoding.UTF8.GetBytes("""{"prompt": "x", "top_k": 1.5}"""));
        Assert.Equal("top_k", e.Param);
        Assert.DoesNotContain("System.", e.Message);
    }

    [Fact]
    public void Unknown_fields_are_ignored()
    {
        var request = RequestBody.Parse("""{"prompt": "x", "brand_new_openai_field": [1, {"a": null}], "max_tokens": 3}"""u8, ServerJsonContext.Wire.CompletionRequest);
        Assert.Equal(3, request.MaxTokens);
    }
}
