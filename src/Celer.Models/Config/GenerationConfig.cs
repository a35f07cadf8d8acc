using System.Text.Json;

namespace Celer.Models.Config;

/// <summary>
/// The optional <c>generation_config.json</c> of a model directory: extra stop ids and the
/// model author's default sampling values. Like vLLM's <c>--generation-config auto</c>, the
/// sampling fields are defaults that a request's own values override. Every field is null
/// when the file or the field is absent.
/// </summary>
public sealed record GenerationConfig
{
    public const string FileName = "generation_config.json";

    public static GenerationConfig Empty { get; } = new();

    /// <summary><c>eos_token_id</c> (an int or a list in the file); Llama 3 instruct lists both <c>&lt;|eot_id|&gt;</c> and <c>&lt;|end_of_text|&gt;</c> here.</summary>
    public IReadOnlyList<int>? EosTokenIds { get; init; }
    public int? BosTokenId { get; init; }
    public int? PadTokenId { get; init; }
    public double? Temperature { get; init; }
    public double? TopP { get; init; }
    public int? TopK { get; init; }
    public double? MinP { get; init; }
    public double? RepetitionPenalty { get; init; }
    public int? MaxNewTokens { get; init; }
    public bool? DoSample { get; init; }

    /// <summary>Reads <c>generation_config.json</c> from a model directory; <see cref="Empty"/> when the file is absent.</summary>
    public static GenerationConfig Load(string modelDirectory)
    {
        string path = Path.Combine(modelDirectory, FileName);
        return File.Exists(path) ? Parse(File.ReadAllText(path)) : Empty;
    }

    public static GenerationConfig Parse(string json)
    {
        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(json);
        }
        catch (JsonException e)
        {
            throw new ModelConfigException($"{FileName} is not valid JSON: {e.Message}", e);
        }
        using (doc)
        {
            var root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
            {
                throw new ModelConfigException($"{FileName} must hold a JSON object");
            }
            const string F = FileName;
            return new GenerationConfig
            {
                EosTokenIds = JsonFields.OptionalIntOrIntList(root, "eos_token_id", F),
                BosTokenId = JsonFields.OptionalInt(root, "bos_token_id", F),
                PadTokenId = JsonFields.OptionalInt(root, "pad_token_id", F),
                Temperature = JsonFields.OptionalDouble(root, "temperature", F),
                TopP = JsonFields.OptionalDouble(root, "top_p", F),
                TopK = JsonFields.OptionalInt(root, "top_k", F),
                MinP = JsonFields.OptionalDouble(root, "min_p", F),
                RepetitionPenalty = JsonFields.OptionalDouble(root, "repetition_penalty", F),
                MaxNewTokens = JsonFields.OptionalInt(root, "max_new_tokens", F),
                DoSample = JsonFields.OptionalBool(root, "do_sample", F),
            };
        }
    }
}
