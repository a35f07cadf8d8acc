using System.Text.Json.Serialization;

namespace Celer.Server.Protocol;

/// <summary>
/// The body of vLLM's <c>POST /classify</c>: the shared pooling inputs (<c>input</c> in any of the completion prompt's
/// four forms, or <c>messages</c>), and vLLM's <c>use_activation</c> (<c>activation</c> and <c>softmax</c> before it was
/// renamed).
/// </summary>
public sealed class ClassificationRequest : PoolingInputRequest
{
    /// <summary>False: the raw logits instead of the probabilities.</summary>
    [JsonPropertyName("use_activation")] public bool? UseActivation { get; set; }

    /// <summary>vLLM's older name of <c>use_activation</c> (it wins over it, as in vLLM).</summary>
    [JsonPropertyName("activation")] public bool? Activation { get; set; }

    /// <summary>vLLM's oldest name of <c>use_activation</c> (it wins over both).</summary>
    [JsonPropertyName("softmax")] public bool? Softmax { get; set; }
}

/// <summary>One input's classification: the label of the most probable class, and every class's probability.</summary>
public sealed record ClassificationData(
    [property: JsonPropertyName("index")] int Index,
    [property: JsonPropertyName("label")] string? Label,
    [property: JsonPropertyName("probs")] IReadOnlyList<float> Probs,
    [property: JsonPropertyName("num_classes")] int NumClasses);

/// <summary>The response of <c>POST /classify</c>; <c>data</c> follows the order of the inputs.</summary>
public sealed record ClassificationResponse(
    [property: JsonPropertyName("id")] string Id,
    [property: JsonPropertyName("created")] long Created,
    [property: JsonPropertyName("model")] string Model,
    [property: JsonPropertyName("data")] IReadOnlyList<ClassificationData> Data,
    [property: JsonPropertyName("usage")] UsageInfo Usage)
{
    [JsonPropertyName("object")] public string Object => "list";
}
