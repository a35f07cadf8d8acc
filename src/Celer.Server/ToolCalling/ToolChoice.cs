using System.Text.Json.Nodes;
using Celer.Server.Protocol;
using Celer.Server.Serving;

namespace Celer.Server.ToolCalling;

internal enum ToolChoiceMode
{
    /// <summary>No tool calls are read from the output (tools, if any, still reach the chat template, unless the server runs with <c>--exclude-tools-when-tool-choice-none</c>).</summary>
    None,

    /// <summary>The model may call tools in its own format; the server's tool-call parser finds them.</summary>
    Auto,

    /// <summary>The output is constrained to a JSON array of calls of the offered tools.</summary>
    Required,

    /// <summary>The output is constrained to the named function's arguments.</summary>
    Named,
}

/// <summary>A request's tool choice once checked: the mode, and the function for <see cref="ToolChoiceMode.Named"/>.</summary>
internal sealed record ToolChoice(ToolChoiceMode Mode, string? FunctionName = null)
{
    public static ToolChoice None { get; } = new(ToolChoiceMode.None);

    private const string CorrectUsage = "Correct usage: `{\"type\": \"function\", \"function\": {\"name\": \"my_function\"}}`";

    /// <summary>
    /// vLLM's rules (<c>check_tool_usage</c> and the chat server's check), with its messages: tools without a
    /// <c>tool_choice</c> mean <c>auto</c>; a <c>tool_choice</c> needs tools; <c>required</c> with an empty tool list is
    /// <c>none</c>; a named function must be one of the tools; and <c>auto</c> needs a server started with
    /// <c>--enable-auto-tool-choice --tool-call-parser</c>.
    /// </summary>
    public static ToolChoice Resolve(ChatCompletionRequest request, bool autoToolChoiceEnabled)
    {
        var tools = request.Tools;
        var choice = request.ToolChoice;
        ToolChoice resolved;
        if (choice is null)
        {
            resolved = tools is { Count: > 0 } ? new ToolChoice(ToolChoiceMode.Auto) : None;
        }
        else if (IsNone(choice))
        {
            return None;
        }
        else
        {
            if (tools is null)
                throw OpenAIException.BadRequest("When using `tool_choice`, `tools` must be set.", "tool_choice");
            resolved = choice switch
            {
                JsonValue v when v.TryGetValue(out string? m) && m == "auto" => new ToolChoice(ToolChoiceMode.Auto),
                JsonValue v when v.TryGetValue(out string? m) && m == "required" => tools.Count == 0 ? None : new ToolChoice(ToolChoiceMode.Required),
                JsonObject named => new ToolChoice(ToolChoiceMode.Named, NamedFunction(named, tools)),
                _ => throw OpenAIException.BadRequest(
                    $"Invalid value for `tool_choice`: {choice.ToJsonString()}! Only named tools, \"none\", \"auto\" or \"required\" are supported.", "tool_choice"),
            };
        }

        if (resolved.Mode == ToolChoiceMode.Auto && !autoToolChoiceEnabled)
            throw OpenAIException.BadRequest("\"auto\" tool choice requires --enable-auto-tool-choice and --tool-call-parser to be set", "tool_choice");
        return resolved;
    }

    /// <summary>Whether the request's <c>tool_choice</c> is the string <c>"none"</c> (given, not implied by the absence of tools).</summary>
    public static bool IsNone(JsonNode? toolChoice) =>
        toolChoice is JsonValue value && value.TryGetValue(out string? mode) && mode == "none";

    private static string NamedFunction(JsonObject choice, JsonArray tools)
    {
        if (choice["function"] is not JsonObject function)
            throw OpenAIException.BadRequest($"Invalid value for `function`: `{choice["function"]?.ToJsonString() ?? "None"}` in `tool_choice`! {CorrectUsage}", "tool_choice");
        if (!function.TryGetPropertyValue("name", out var nameNode))
            throw OpenAIException.BadRequest($"Expected field `name` in `function` in `tool_choice`! {CorrectUsage}", "tool_choice");
        if (nameNode is not JsonValue nameValue || !nameValue.TryGetValue(out string? name) || name.Length == 0)
        {
            // vLLM prints the value as Python does: a string bare, null as None.
            var shown = nameNode is JsonValue v && v.TryGetValue(out string? text) ? text : nameNode?.ToJsonString() ?? "None";
            throw OpenAIException.BadRequest($"Invalid `name` in `function`: `{shown}` in `tool_choice`! {CorrectUsage}", "tool_choice");
        }
        if (ToolSchemas.FindFunction(tools, name) is null)
            throw OpenAIException.BadRequest("The tool specified in `tool_choice` does not match any of the specified `tools`", "tool_choice");
        return name;
    }
}
