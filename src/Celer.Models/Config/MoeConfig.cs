using System.Text.Json;

namespace Celer.Models.Config;

/// <summary>
/// The sparse mixture-of-experts MLP of Mixtral, Qwen-MoE and gpt-oss models, from config.json. Each token's router picks
/// <see cref="TopK"/> of <see cref="NumExperts"/> SwiGLU experts of width <see cref="IntermediateSize"/>; Qwen2-MoE adds
/// a shared expert of width <see cref="SharedExpertIntermediateSize"/> that every token goes through, scaled by a sigmoid
/// gate. Qwen's layers may also be dense (<c>mlp_only_layers</c>, <c>decoder_sparse_step</c>): <see cref="SparseLayers"/>.
/// </summary>
public sealed record MoeConfig(
    int NumExperts, int TopK, int IntermediateSize, bool NormalizeTopK, int SharedExpertIntermediateSize, IReadOnlyList<bool> SparseLayers)
{
    private const string F = ModelConfig.FileName;

    /// <summary>gpt-oss's <c>swiglu_limit</c> (default 7): the clamp of its experts' SwiGLU; null for the SiLU·mul experts.</summary>
    public float? SwigluLimit { get; init; }

    /// <summary>The MoE settings of a MoE architecture (null for the dense ones), with transformers' defaults.</summary>
    internal static MoeConfig? Parse(JsonElement root, string architecture, int layers, int intermediateSize)
    {
        switch (architecture)
        {
            case "MixtralForCausalLM":
                // MixtralConfig: 8 experts, top 2, each of intermediate_size; the top-k weights always renormalized.
                return Validated(
                    JsonFields.OptionalInt(root, "num_local_experts", F) ?? 8, "num_local_experts",
                    JsonFields.OptionalInt(root, "num_experts_per_tok", F) ?? 2,
                    intermediateSize, normalize: true, shared: 0, [.. Enumerable.Repeat(true, layers)]);
            case "Qwen2MoeForCausalLM":
                return Validated(
                    JsonFields.OptionalInt(root, "num_experts", F) ?? 60, "num_experts",
                    JsonFields.OptionalInt(root, "num_experts_per_tok", F) ?? 4,
                    JsonFields.OptionalInt(root, "moe_intermediate_size", F) ?? 1408,
                    JsonFields.OptionalBool(root, "norm_topk_prob", F) ?? false,
                    JsonFields.OptionalInt(root, "shared_expert_intermediate_size", F) ?? 5632,
                    QwenSparseLayers(root, layers));
            case "Qwen3MoeForCausalLM":
                return Validated(
                    JsonFields.OptionalInt(root, "num_experts", F) ?? 128, "num_experts",
                    JsonFields.OptionalInt(root, "num_experts_per_tok", F) ?? 8,
                    JsonFields.OptionalInt(root, "moe_intermediate_size", F) ?? 768,
                    JsonFields.OptionalBool(root, "norm_topk_prob", F) ?? false,
                    shared: 0, QwenSparseLayers(root, layers));
            case "GptOssForCausalLM":
            {
                // GptOssConfig: every layer is sparse; the router takes the top-k logits and softmaxes them, which is the
                // softmax over all experts renormalized over the top k. Older configs name top-k experts_per_token.
                int experts = JsonFields.OptionalInt(root, "num_local_experts", F) ?? 128;
                int topK = JsonFields.OptionalInt(root, "num_experts_per_tok", F) ?? JsonFields.OptionalInt(root, "experts_per_token", F) ?? 4;
                double limit = JsonFields.OptionalDouble(root, "swiglu_limit", F) ?? 7.0;
                if (!(limit > 0) || double.IsInfinity(limit))
                {
                    throw new ModelConfigException($"{F}: field 'swiglu_limit' must be positive and finite, got {limit}");
                }

                return Validated(experts, "num_local_experts", topK, intermediateSize, normalize: true, shared: 0, [.. Enumerable.Repeat(true, layers)])
                    with { SwigluLimit = (float)limit };
            }
            default:
                return null;
        }
    }

    private static MoeConfig Validated(int experts, string expertsField, int topK, int intermediate, bool normalize, int shared, bool[] sparse)
    {
        if (experts <= 0)
        {
            throw new ModelConfigException($"{F}: field '{expertsField}' must be positive, got {experts}");
        }

        if (topK <= 0 || topK > experts)
        {
            throw new ModelConfigException($"{F}: field 'num_experts_per_tok' must be between 1 and '{expertsField}' ({experts}), got {topK}");
        }

        if (intermediate <= 0)
        {
            throw new ModelConfigException($"{F}: the experts' intermediate size must be positive, got {intermediate}");
        }

        if (shared < 0)
        {
            throw new ModelConfigException($"{F}: field 'shared_expert_intermediate_size' must not be negative, got {shared}");
        }

        return new MoeConfig(experts, topK, intermediate, normalize, shared, sparse);
    }

    /// <summary>
    /// Qwen-MoE's sparse layers, as its modeling code decides them: layer i is a MoE layer unless it is listed in
    /// <c>mlp_only_layers</c> or (i + 1) is not a multiple of <c>decoder_sparse_step</c>; the others are dense MLPs of
    /// <c>intermediate_size</c>.
    /// </summary>
    private static bool[] QwenSparseLayers(JsonElement root, int layers)
    {
        int step = JsonFields.OptionalInt(root, "decoder_sparse_step", F) ?? 1;
        if (step <= 0)
        {
            throw new ModelConfigException($"{F}: field 'decoder_sparse_step' must be positive, got {step}");
        }

        var dense = new HashSet<int>();
        if (JsonFields.TryGet(root, "mlp_only_layers", out JsonElement list) && list.ValueKind != JsonValueKind.Null)
        {
            if (list.ValueKind != JsonValueKind.Array
                || list.EnumerateArray().Any(e => e.ValueKind != JsonValueKind.Number || !e.TryGetInt32(out int i) || i < 0 || i >= layers))
            {
                throw new ModelConfigException($"{F}: field 'mlp_only_layers' must list layer indices between 0 and {layers - 1}");
            }

            dense.UnionWith(list.EnumerateArray().Select(e => e.GetInt32()));
        }

        return [.. Enumerable.Range(0, layers).Select(i => !dense.Contains(i) && (i + 1) % step == 0)];
    }
}
