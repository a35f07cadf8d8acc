using System.Text.Json;

namespace Celer.Models.Config;

/// <summary>
/// What a BERT-family encoder (BERT, RoBERTa, XLM-RoBERTa) adds to <see cref="ModelConfig"/>: the LayerNorm epsilon,
/// the token type table's size, and where its absolute positions start. RoBERTa numbers positions from its padding index
/// + 1 (transformers' <c>create_position_ids_from_input_ids</c>), so a RoBERTa with 514 position embeddings reads 512
/// tokens; BERT numbers them from 0.
/// </summary>
public sealed record EncoderConfig(double LayerNormEps, int TypeVocabSize, int PositionOffset)
{
    private static readonly string[] Bert = ["BertModel", "BertForSequenceClassification"];
    private static readonly string[] Roberta =
        ["RobertaModel", "RobertaForSequenceClassification", "XLMRobertaModel", "XLMRobertaForSequenceClassification"];

    /// <summary>The encoder families Celer runs, by the <c>architectures</c> entries of their checkpoints.</summary>
    public static IReadOnlyList<string> Architectures { get; } = [.. Bert, .. Roberta];

    public static bool IsEncoder(string architecture) => IsBert(architecture) || IsRoberta(architecture);

    public static bool IsBert(string architecture) => Bert.Contains(architecture);

    public static bool IsRoberta(string architecture) => Roberta.Contains(architecture);

    /// <summary>The tokens an encoder reads at most: its position embeddings past the offset.</summary>
    public int ContextLength(int maxPositionEmbeddings) => maxPositionEmbeddings - PositionOffset;

    internal static EncoderConfig? Parse(JsonElement root, string architecture, int maxPositions)
    {
        const string F = ModelConfig.FileName;
        if (!IsEncoder(architecture))
        {
            return null;
        }

        // transformers' absolute position embeddings only: the relative ones add learned distance terms to the scores.
        string positions = JsonFields.OptionalString(root, "position_embedding_type", F) ?? "absolute";
        if (positions != "absolute")
        {
            throw new ModelConfigException($"{F}: field 'position_embedding_type' is '{positions}'; Celer runs encoders with absolute position embeddings only");
        }

        if (JsonFields.OptionalBool(root, "is_decoder", F) == true || JsonFields.OptionalBool(root, "add_cross_attention", F) == true)
        {
            throw new ModelConfigException($"{F}: {architecture} is configured as a decoder ('is_decoder' or 'add_cross_attention'); Celer runs it as an encoder only");
        }

        double eps = JsonFields.OptionalDouble(root, "layer_norm_eps", F) ?? 1e-12;   // BertConfig's and RobertaConfig's default
        if (!(eps > 0))
        {
            throw new ModelConfigException($"{F}: field 'layer_norm_eps' must be positive, got {eps}");
        }

        int types = JsonFields.OptionalInt(root, "type_vocab_size", F) ?? 2;
        if (types < 0)
        {
            throw new ModelConfigException($"{F}: field 'type_vocab_size' must not be negative, got {types}");
        }

        int offset = 0;
        if (IsRoberta(architecture))
        {
            // RobertaConfig's default pad_token_id is 1; position ids start at padding_idx + 1.
            int pad = JsonFields.OptionalInt(root, "pad_token_id", F) ?? 1;
            offset = pad + 1;
            if (pad < 0 || offset >= maxPositions)
            {
                throw new ModelConfigException($"{F}: field 'pad_token_id' ({pad}) leaves no position embeddings of the {maxPositions} for tokens");
            }
        }

        return new EncoderConfig(eps, types, offset);
    }
}
