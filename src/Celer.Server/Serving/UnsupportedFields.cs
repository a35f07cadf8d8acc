using Celer.Server.Protocol;

namespace Celer.Server.Serving;

/// <summary>
/// Combinations of fields refused with a 400 that names them rather than accepted and ignored (BAD_INPUT.md #15):
/// vLLM's rule for <c>stream_options</c>. (Output constraints are read by <see cref="StructuredOutputsRequest"/>;
/// <c>tool_choice</c> by <see cref="ToolCalling.ToolChoice.Resolve"/>: <c>required</c> and a named function constrain
/// the output to a JSON schema through <c>SamplingParams.StructuredOutputs</c>.)
/// </summary>
internal static class UnsupportedFields
{
    public static void Check(SamplingRequest request)
    {
        if (request.StreamOptions is not null && request.Stream != true)
            throw OpenAIException.BadRequest("Stream options can only be defined when `stream=True`.", "stream_options");
    }
}
