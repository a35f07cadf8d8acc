using System.Security.Cryptography;
using System.Text.Json.Nodes;

namespace Celer.Server.ToolCalling;

/// <summary>
/// A tool-call parser, vLLM's <c>ToolParser</c> (<c>--enable-auto-tool-choice --tool-call-parser NAME</c>): finds the
/// calls a model writes in its own format in the content of a <c>tool_choice: "auto"</c> answer. One instance serves
/// every request; each choice reads through the <see cref="ToolCallExtractor"/> it creates.
/// </summary>
internal interface IToolParser
{
    /// <summary>The name given to <c>--tool-call-parser</c>.</summary>
    string Name { get; }

    /// <summary>
    /// vLLM's <c>adjust_request</c>: the format's marker is a special token (Mistral's <c>[TOOL_CALLS]</c>), so a request
    /// offered tools decodes with <c>skip_special_tokens: false</c> or the marker would vanish from the text.
    /// </summary>
    bool KeepsSpecialTokens { get; }

    /// <summary>A fresh <c>id</c> for a call, in the form the model's chat template expects back.</summary>
    string NewToolCallId();

    ToolCallExtractor CreateExtractor(ToolCallSink sink, ToolCallContext context);
}

/// <summary>What a parser may need of the request: its tools (Qwen3's XML format types parameter values by their schema).</summary>
internal sealed class ToolCallContext(JsonArray? tools)
{
    /// <summary>The <c>properties</c> of the named function's parameter schema, or null when it has none.</summary>
    public JsonObject? ParameterProperties(string functionName)
    {
        if (tools is null)
            return null;
        foreach (var tool in tools)
        {
            if (tool?["function"] is JsonObject function && function["name"] is JsonValue name
                && name.TryGetValue(out string? text) && text == functionName)
                return function["parameters"] is JsonObject parameters ? parameters["properties"] as JsonObject ?? parameters : null;
        }
        return null;
    }
}

/// <summary>Tool call ids as vLLM makes them.</summary>
internal static class ToolCallIds
{
    private const string Alphanumeric = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

    /// <summary>vLLM's <c>make_tool_call_id()</c>: <c>chatcmpl-tool-</c> and 32 hex digits.</summary>
    public static string Random() => "chatcmpl-tool-" + Guid.NewGuid().ToString("N");

    /// <summary>Mistral's: nine letters and digits (mistral-common and Mistral's templates refuse any other).</summary>
    public static string Mistral() => RandomNumberGenerator.GetString(Alphanumeric, 9);
}
