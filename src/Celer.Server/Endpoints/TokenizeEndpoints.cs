using Celer.Server.Hosting;
using Celer.Server.Protocol;
using Celer.Server.Serving;

namespace Celer.Server.Endpoints;

/// <summary>vLLM's <c>/tokenize</c> and <c>/detokenize</c>.</summary>
public static class TokenizeEndpoints
{
    public static IEndpointRouteBuilder MapTokenizeApi(this IEndpointRouteBuilder endpoints)
    {
        var group = endpoints.MapGroup("").AddEndpointFilter<ApiErrorFilter>();
        group.MapPost("/tokenize", Tokenize);
        group.MapPost("/detokenize", Detokenize);
        return endpoints;
    }

    /// <summary>
    /// With <c>messages</c>, renders the chat template (vLLM defaults: generation prompt on, no extra
    /// special tokens); with <c>prompt</c>, tokenizes the text (special tokens added by default).
    /// </summary>
    private static async Task<IResult> Tokenize(HttpContext context, ServedModels models)
    {
        var request = await RequestBody.ReadAsync(context.Request, ServerJsonContext.Wire.TokenizeRequest);
        var model = models.Resolve(request.Model).Model;
        int[] tokens;
        if (request.Messages is not null)
        {
            var prompt = ChatPromptBuilder.Render(new ChatRenderRequest(
                request.Messages, request.Tools, null,
                request.AddGenerationPrompt ?? true, request.ContinueFinalMessage ?? false,
                request.ChatTemplate, request.ChatTemplateKwargs), model);
            tokens = model.Tokenizer.Encode(prompt.Text, request.AddSpecialTokens ?? false);
        }
        else if (request.Prompt is not null)
        {
            tokens = model.Tokenizer.Encode(request.Prompt, request.AddSpecialTokens ?? true);
        }
        else
        {
            throw OpenAIException.BadRequest("Either `prompt` or `messages` is required.", "prompt");
        }

        var tokenStrs = request.ReturnTokenStrs == true
            ? tokens.Select(id => model.Tokenizer.IdToToken(id) ?? "").ToList()
            : null;
        return TypedResults.Json(new TokenizeResponse(tokens.Length, model.MaxModelLen, tokens, tokenStrs), ServerJsonContext.Wire.TokenizeResponse);
    }

    private static async Task<IResult> Detokenize(HttpContext context, ServedModels models)
    {
        var request = await RequestBody.ReadAsync(context.Request, ServerJsonContext.Wire.DetokenizeRequest);
        var model = models.Resolve(request.Model).Model;
        if (request.Tokens is not { } tokens)
            throw OpenAIException.BadRequest("`tokens` is required.", "tokens");
        foreach (var id in tokens)
        {
            if (id < 0 || id >= model.VocabSize)
                throw OpenAIException.BadRequest($"Token id {id} is out of vocabulary (vocabulary size {model.VocabSize}).", "tokens");
        }
        return TypedResults.Json(new DetokenizeResponse(model.Tokenizer.Decode(tokens.ToArray(), skipSpecialTokens: false)), ServerJsonContext.Wire.DetokenizeResponse);
    }
}
