namespace Celer.Engine;

/// <summary>
/// A sampling parameter is out of range. <see cref="Param"/> is the OpenAI request field name
/// (e.g. "temperature"); the server maps this exception to HTTP 400 with that <c>param</c>.
/// </summary>
public sealed class SamplingParamsException : ArgumentException
{
    public SamplingParamsException(string param, string message)
        : base(message) => Param = param;

    /// <summary>The OpenAI field name of the offending parameter.</summary>
    public string Param { get; }

    // ArgumentException appends " (Parameter '...')" to Message when ParamName is set; we keep
    // ParamName empty so the client sees exactly vLLM's wording.
    public override string Message => base.Message;
}
