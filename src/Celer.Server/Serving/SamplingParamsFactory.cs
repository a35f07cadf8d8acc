using System.Globalization;
using System.Text.Json;
using Celer.Engine;
using Celer.Server.Protocol;

namespace Celer.Server.Serving;

/// <summary>
/// Maps a request's sampling fields to <see cref="SamplingParams"/> the way vLLM's
/// <c>to_sampling_params</c> does: a field the request leaves unset falls back to the model's
/// generation config, then to vLLM's default. Shape errors (a <c>stop</c> that is neither string nor
/// list, a <c>logit_bias</c> key that is not an integer) are reported here; range errors by
/// <see cref="SamplingParams.Validate"/>.
/// </summary>
internal static class SamplingParamsFactory
{
    /// <summary>The legacy completions API's default <c>max_tokens</c> (OpenAI's and vLLM's).</summary>
    public const int CompletionsDefaultMaxTokens = 16;

    public static SamplingParams ForCompletion(CompletionRequest request, GenerationDefaults defaults, int promptLength, int maxModelLen)
    {
        var echo = request.Echo == true;
        return Common(request, defaults) with
        {
            MaxTokens = ResolveMaxTokens(request.MaxTokens ?? CompletionsDefaultMaxTokens, defaults, promptLength, maxModelLen),
            Logprobs = request.Logprobs,
            // vLLM: echo with logprobs reports the prompt's logprobs too, at the same depth.
            PromptLogprobs = request.PromptLogprobs ?? (echo ? request.Logprobs : null),
        };
    }

    public static SamplingParams ForChat(ChatCompletionRequest request, GenerationDefaults defaults, int promptLength, int maxModelLen)
    {
        if (request.TopLogprobs is { } top)
        {
            if (top < 0)
                throw OpenAIException.BadRequest("`top_logprobs` must be a non-negative value.", "top_logprobs");
            if (top > 0 && request.Logprobs != true)
                throw OpenAIException.BadRequest("when using `top_logprobs`, `logprobs` must be set to true.", "top_logprobs");
        }
        if (request.Stream == true && request.PromptLogprobs is not null)
            throw OpenAIException.BadRequest("`prompt_logprobs` are not available when `stream=True`.", "prompt_logprobs");

        // max_completion_tokens replaced max_tokens in OpenAI's chat API; vLLM takes whichever is set.
        var requested = request.MaxCompletionTokens ?? request.MaxTokens;
        return Common(request, defaults) with
        {
            MaxTokens = ResolveMaxTokens(requested, defaults, promptLength, maxModelLen),
            Logprobs = request.Logprobs == true ? request.TopLogprobs ?? 0 : null,
            PromptLogprobs = request.PromptLogprobs,
        };
    }

    private static SamplingParams Common(SamplingRequest request, GenerationDefaults defaults) => new()
    {
        N = request.N ?? 1,
        BestOf = request.BestOf,
        Temperature = request.Temperature ?? defaults.Temperature ?? 1f,
        TopP = request.TopP ?? defaults.TopP ?? 1f,
        TopK = request.TopK ?? defaults.TopK ?? 0,
        MinP = request.MinP ?? defaults.MinP ?? 0f,
        RepetitionPenalty = request.RepetitionPenalty ?? defaults.RepetitionPenalty ?? 1f,
        PresencePenalty = request.PresencePenalty ?? 0f,
        FrequencyPenalty = request.FrequencyPenalty ?? 0f,
        Seed = request.Seed,
        Stop = ParseStop(request.Stop),
        StopTokenIds = request.StopTokenIds ?? [],
        IncludeStopStrInOutput = request.IncludeStopStrInOutput ?? false,
        IgnoreEos = request.IgnoreEos ?? false,
        MinTokens = request.MinTokens ?? 0,
        LogitBias = ParseLogitBias(request.LogitBias),
        AllowedTokenIds = request.AllowedTokenIds,
        BadWords = request.BadWords,
        SkipSpecialTokens = request.SkipSpecialTokens ?? true,
        SpacesBetweenSpecialTokens = request.SpacesBetweenSpecialTokens ?? true,
        StructuredOutputs = StructuredOutputsRequest.From(request),
    };

    /// <summary>
    /// vLLM's <c>get_max_tokens</c> without the silent clamp: an explicit <c>max_tokens</c> is kept
    /// (admission rejects it if prompt + max_tokens exceeds the context); an unset one means the rest
    /// of the context, capped by generation_config's <c>max_new_tokens</c>.
    /// </summary>
    internal static int? ResolveMaxTokens(int? requested, GenerationDefaults defaults, int promptLength, int maxModelLen)
    {
        if (requested is not null)
            return requested;
        if (defaults.MaxNewTokens is { } maxNew)
            return Math.Max(1, Math.Min(maxNew, maxModelLen - promptLength));
        return null;
    }

    /// <summary><c>stop</c>: null, a string, or a list of strings.</summary>
    internal static IReadOnlyList<string> ParseStop(JsonElement? stop)
    {
        if (stop is not { } element || element.ValueKind == JsonValueKind.Null)
            return [];
        if (element.ValueKind == JsonValueKind.String)
            return [element.GetString()!];
        if (element.ValueKind != JsonValueKind.Array)
            throw OpenAIException.BadRequest("`stop` must be a string or a list of strings.", "stop");
        var list = new List<string>(element.GetArrayLength());
        foreach (var item in element.EnumerateArray())
        {
            if (item.ValueKind != JsonValueKind.String)
                throw OpenAIException.BadRequest("`stop` must be a string or a list of strings.", "stop");
            list.Add(item.GetString()!);
        }
        return list;
    }

    /// <summary>
    /// <c>logit_bias</c>: an object from token id (a JSON string key, as OpenAI sends it) to a number.
    /// Values are clamped to ±100 (OpenAI's range); out-of-vocabulary ids are left to Validate.
    /// </summary>
    internal static IReadOnlyDictionary<int, float>? ParseLogitBias(JsonElement? logitBias)
    {
        if (logitBias is not { } element || element.ValueKind == JsonValueKind.Null)
            return null;
        if (element.ValueKind != JsonValueKind.Object)
            throw OpenAIException.BadRequest("`logit_bias` must be an object mapping token ids to numbers.", "logit_bias");

        var bias = new Dictionary<int, float>();
        List<string>? badKeys = null;
        List<string>? badValues = null;
        foreach (var property in element.EnumerateObject())
        {
            if (!int.TryParse(property.Name, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var tokenId))
            {
                (badKeys ??= []).Add(property.Name);
                continue;
            }
            if (property.Value.ValueKind != JsonValueKind.Number || !property.Value.TryGetDouble(out var value))
            {
                (badValues ??= []).Add(property.Name);
                continue;
            }
            bias[tokenId] = (float)Math.Clamp(value, -SamplingParams.MaxLogitBias, SamplingParams.MaxLogitBias);
        }
        if (badKeys is not null)
            throw OpenAIException.BadRequest($"logit_bias keys must be integer token ids; invalid keys: {string.Join(", ", badKeys)}", "logit_bias");
        if (badValues is not null)
            throw OpenAIException.BadRequest($"logit_bias values must be numbers; invalid values for keys: {string.Join(", ", badValues)}", "logit_bias");
        return bias;
    }
}
