using System.Text.Json;
using System.Text.RegularExpressions;
using Celer.Models.Config;

namespace Celer.Models.Quantization;

/// <summary>How the weights of an FP8 checkpoint carry their scales.</summary>
public enum Fp8WeightScales
{
    /// <summary>One scale for the whole matrix (<c>weight_scale</c>, shape [] or [1]).</summary>
    PerTensor,

    /// <summary>One scale per output row (<c>weight_scale</c>, shape [out, 1] or [out]).</summary>
    PerChannel,

    /// <summary>One scale per block of <see cref="QuantizationConfig.BlockRows"/> × <see cref="QuantizationConfig.BlockColumns"/>.</summary>
    PerBlock,
}

/// <summary>
/// A checkpoint's quantization (config.json's <c>quantization_config</c>). Integer weight-only formats (<c>gptq</c> 4- and
/// 8-bit, <c>awq</c> 4-bit GEMM, compressed-tensors <c>pack-quantized</c> and 8-bit int weights) are described by
/// <see cref="IntWeights"/>; FP8 as vLLM reads the two formats most FP8 checkpoints come in: <c>compressed-tensors</c> (what llm-compressor writes: <c>format</c> float-quantized, weights per
/// tensor, channel or block, activations dynamic per token, static per tensor, or none) and <c>fp8</c> (DeepSeek-V3,
/// Qwen3-FP8: <c>weight_block_size</c> blocks with <c>weight_scale_inv</c>, or a per-tensor <c>weight_scale</c>; activations
/// dynamic per token group or static per tensor). Weights are E4M3 (<c>F8_E4M3</c> tensors). Anything else a format
/// allows is refused naming the field, not approximated.
/// </summary>
public sealed record QuantizationConfig
{
    private const string F = "config.json's quantization_config";

    /// <summary><c>quant_method</c>: "compressed-tensors", "fp8", "gptq", "awq" or "mxfp4".</summary>
    public required string Method { get; init; }

    /// <summary>The integer weight-only scheme; null for FP8 checkpoints, which the other properties describe.</summary>
    public IntWeightScheme? IntWeights { get; init; }

    /// <summary>How FP8 weights carry their scales (FP8 checkpoints only).</summary>
    public Fp8WeightScales WeightScales { get; init; }

    /// <summary>The scale blocks of <see cref="Fp8WeightScales.PerBlock"/> (output rows × input columns); 0 otherwise.</summary>
    public int BlockRows { get; init; }

    public int BlockColumns { get; init; }

    /// <summary>How each layer's input is quantized before the matmul; null for weight-only (W8A16) checkpoints.</summary>
    public ActivationScaling? Activations { get; init; }

    /// <summary>The group of <see cref="ActivationScaling.DynamicPerTokenGroup"/> along the input features.</summary>
    public int ActivationGroupSize { get; init; }

    /// <summary>
    /// Modules left in the model dtype (compressed-tensors' <c>ignore</c>, fp8's <c>ignored_layers</c> /
    /// <c>modules_to_not_convert</c>): exact module names, names' suffixes, or <c>re:</c> regular expressions.
    /// </summary>
    public IReadOnlyList<string> Ignore { get; init; } = [];

    /// <summary>The parsed config, or null when config.json has no <c>quantization_config</c>.</summary>
    public static QuantizationConfig? Parse(JsonElement root)
    {
        if (!JsonFields.TryGet(root, "quantization_config", out JsonElement q))
        {
            return null;
        }

        if (q.ValueKind != JsonValueKind.Object)
        {
            throw new ModelConfigException($"{F} must be an object");
        }

        string method = JsonFields.OptionalString(q, "quant_method", F) ?? throw new ModelConfigException($"{F} has no quant_method");
        return method switch
        {
            "compressed-tensors" => CompressedTensors(q),
            "fp8" => Fp8(q),
            "gptq" => Gptq(q),
            "awq" => Awq(q),
            "mxfp4" => Mxfp4(q),
            _ => throw new ModelConfigException(
                $"{F} names quant_method '{method}': Celer runs {Supported} checkpoints, not {method}; serve the unquantized checkpoint of the model"),
        };
    }

    /// <summary>
    /// The config of an unquantized checkpoint quantized at load (<see cref="OnlineFp8Source"/>) by
    /// <c>--quantization</c>: <c>fp8</c> one weight scale per matrix, as vLLM's online fp8 method; <c>ptpc_fp8</c> one per
    /// output row, as vLLM's per-token-per-channel method; the inputs dynamic per token in both (vLLM's fp8 scales them
    /// per tensor on most GPUs: a per-token scale is never coarser). Null for any other flag or none.
    /// </summary>
    public static QuantizationConfig? Online(string? requested) => requested?.ToLowerInvariant() switch
    {
        "fp8" => new QuantizationConfig { Method = "fp8", WeightScales = Fp8WeightScales.PerTensor, Activations = ActivationScaling.DynamicPerToken, IsOnline = true },
        "ptpc_fp8" => new QuantizationConfig { Method = "ptpc_fp8", WeightScales = Fp8WeightScales.PerChannel, Activations = ActivationScaling.DynamicPerToken, IsOnline = true },
        _ => null,
    };

    /// <summary>Whether the weights are quantized at load (<see cref="Online"/>) rather than stored quantized.</summary>
    public bool IsOnline { get; init; }

    /// <summary>
    /// Why <c>--quantization <paramref name="requested"/></c> cannot serve a checkpoint quantized as
    /// <paramref name="checkpoint"/> (null: none), as vLLM checks the flag against <c>quant_method</c>; null when it can.
    /// </summary>
    public static string? RequestRefusal(string? requested, QuantizationConfig? checkpoint) => (requested, checkpoint) switch
    {
        (null, _) => null,
        (_, { Method: var method }) when string.Equals(requested, method, StringComparison.OrdinalIgnoreCase) => null,
        // vLLM's names for its Marlin kernels of the same formats.
        (_, { Method: var method }) when method is "gptq" or "awq" && string.Equals(requested, method + "_marlin", StringComparison.OrdinalIgnoreCase) => null,
        (_, { Method: var method }) =>
            $"--quantization {requested} does not match the method of {F} (quant_method '{method}'): leave the flag out or pass {method}",
        (_, null) when Online(requested) is not null => null,
        _ => $"--quantization {requested}: Celer runs {Supported} checkpoints and quantizes unquantized ones at load (fp8, ptpc_fp8), not {requested}",
    };

    private const string Supported = "compressed-tensors (FP8, W4A16, W8A16), fp8, gptq (4- and 8-bit), awq (4-bit) and mxfp4 (gpt-oss's experts)";

    /// <summary>Whether <paramref name="module"/> (e.g. <c>model.layers.0.self_attn.q_proj</c>) stays unquantized.</summary>
    public bool IsIgnored(string module) => Ignore.Any(entry => entry.StartsWith("re:", StringComparison.Ordinal)
        ? Regex.IsMatch(module, entry[3..], RegexOptions.CultureInvariant, TimeSpan.FromSeconds(1))
        : module == entry || module.EndsWith("." + entry, StringComparison.Ordinal));

    private static QuantizationConfig CompressedTensors(JsonElement q)
    {
        if (!JsonFields.TryGet(q, "config_groups", out JsonElement groups) || groups.ValueKind != JsonValueKind.Object)
        {
            throw new ModelConfigException($"{F}: compressed-tensors needs config_groups");
        }

        JsonElement[] all = [.. groups.EnumerateObject().Select(g => g.Value)];
        if (all.Length != 1)
        {
            throw new ModelConfigException($"{F}: {all.Length} config_groups; Celer runs checkpoints with one scheme for every layer");
        }

        JsonElement group = all[0];
        string[] targets = JsonFields.TryGet(group, "targets", out JsonElement t) && t.ValueKind == JsonValueKind.Array
            ? [.. t.EnumerateArray().Select(e => e.GetString() ?? "")]
            : [];
        if (!targets.Contains("Linear"))
        {
            throw new ModelConfigException($"{F}: config_groups targets [{string.Join(", ", targets)}]; Celer runs schemes that target 'Linear'");
        }

        if (JsonFields.TryGet(group, "output_activations", out _))
        {
            throw new ModelConfigException($"{F}: output_activations quantization is not supported");
        }

        JsonElement weights = JsonFields.TryGet(group, "weights", out JsonElement w) ? w : throw new ModelConfigException($"{F}: the config group has no weights scheme");
        // A group may name its own format (the top level then says "mixed-precision").
        string format = JsonFields.OptionalString(group, "format", F) ?? JsonFields.OptionalString(q, "format", F) ?? "float-quantized";
        if (JsonFields.OptionalString(weights, "type", F) == "int")
        {
            return CompressedTensorsInt(q, group, weights, format);
        }

        if (format is not ("float-quantized" or "naive-quantized"))
        {
            throw new ModelConfigException($"{F}: compressed-tensors format '{format}' with float weights is not supported (FP8 'float-quantized' is)");
        }

        CheckFp8(weights, "weights");
        if (JsonFields.OptionalBool(weights, "dynamic", F) == true)
        {
            throw new ModelConfigException($"{F}: dynamic weight quantization is not supported");
        }

        string strategy = JsonFields.OptionalString(weights, "strategy", F) ?? "tensor";
        (Fp8WeightScales scales, int rows, int columns) = strategy switch
        {
            "tensor" => (Fp8WeightScales.PerTensor, 0, 0),
            "channel" => (Fp8WeightScales.PerChannel, 0, 0),
            "block" => BlockStructure(weights),
            _ => throw new ModelConfigException($"{F}: weights strategy '{strategy}' is not supported (tensor, channel, block are)"),
        };

        ActivationScaling? activations = null;
        int groupSize = 0;
        if (JsonFields.TryGet(group, "input_activations", out JsonElement input))
        {
            CheckFp8(input, "input_activations");
            string inputStrategy = JsonFields.OptionalString(input, "strategy", F) ?? "tensor";
            bool dynamic = JsonFields.OptionalBool(input, "dynamic", F) ?? false;
            (activations, groupSize) = (inputStrategy, dynamic) switch
            {
                ("token", true) => (ActivationScaling.DynamicPerToken, 0),
                ("tensor", false) => (ActivationScaling.StaticPerTensor, 0),
                ("group", true) => (ActivationScaling.DynamicPerTokenGroup, JsonFields.OptionalInt(input, "group_size", F)
                    ?? throw new ModelConfigException($"{F}: input_activations strategy 'group' needs group_size")),
                _ => throw new ModelConfigException(
                    $"{F}: input_activations strategy '{inputStrategy}' with dynamic {dynamic.ToString().ToLowerInvariant()} is not supported (token dynamic, tensor static, group dynamic are)"),
            };
        }

        return new QuantizationConfig
        {
            Method = "compressed-tensors",
            WeightScales = scales,
            BlockRows = rows,
            BlockColumns = columns,
            Activations = activations,
            ActivationGroupSize = groupSize,
            Ignore = Strings(q, "ignore"),
        };
    }

    private static QuantizationConfig Fp8(JsonElement q)
    {
        string fmt = JsonFields.OptionalString(q, "fmt", F) ?? "e4m3";
        if (fmt != "e4m3")
        {
            throw new ModelConfigException($"{F}: fp8 fmt '{fmt}' is not supported (e4m3 is)");
        }

        int[]? block = JsonFields.OptionalIntOrIntList(q, "weight_block_size", F);
        if (block is not null && (block.Length != 2 || block[0] <= 0 || block[1] <= 0))
        {
            throw new ModelConfigException($"{F}: weight_block_size must be two positive sizes, not [{string.Join(", ", block)}]");
        }

        string scheme = JsonFields.OptionalString(q, "activation_scheme", F) ?? "dynamic";
        ActivationScaling activations = (scheme, block is null) switch
        {
            ("dynamic", true) => ActivationScaling.DynamicPerToken,
            ("dynamic", false) => ActivationScaling.DynamicPerTokenGroup,
            ("static", true) => ActivationScaling.StaticPerTensor,
            ("static", false) => throw new ModelConfigException($"{F}: activation_scheme 'static' with weight_block_size is not supported (vLLM requires dynamic)"),
            _ => throw new ModelConfigException($"{F}: activation_scheme '{scheme}' is not supported (dynamic, static are)"),
        };

        return new QuantizationConfig
        {
            Method = "fp8",
            WeightScales = block is null ? Fp8WeightScales.PerTensor : Fp8WeightScales.PerBlock,
            BlockRows = block?[0] ?? 0,
            BlockColumns = block?[1] ?? 0,
            Activations = activations,
            // Block-wise checkpoints quantize each token's activations per group of one weight block's columns.
            ActivationGroupSize = block?[1] ?? 0,
            Ignore = [.. Strings(q, "ignored_layers"), .. Strings(q, "modules_to_not_convert")],
        };
    }

    /// <summary>
    /// compressed-tensors integer weights without input quantization (W4A16, W8A16): <c>pack-quantized</c> 4 or 8 bits, or
    /// 8-bit codes stored as int8 (<c>naive-quantized</c>, <c>int-quantized</c>); strategy channel or group, symmetric or
    /// not, activation order "group" (a stored g_idx) or "weight" / none (groups in column order).
    /// </summary>
    private static QuantizationConfig CompressedTensorsInt(JsonElement q, JsonElement group, JsonElement weights, string format)
    {
        int bits = JsonFields.OptionalInt(weights, "num_bits", F) ?? 8;
        if (JsonFields.TryGet(group, "input_activations", out _))
        {
            throw new ModelConfigException($"{F}: {bits}-bit int weights with quantized input_activations (W{bits}A8) are not supported yet; weight-only int schemes (W4A16, W8A16) are");
        }

        IntWeightLayout layout = (format, bits) switch
        {
            ("pack-quantized", 4 or 8) => IntWeightLayout.CompressedTensorsPacked,
            ("naive-quantized" or "int-quantized", 8) => IntWeightLayout.CompressedTensorsInt8,
            _ => throw new ModelConfigException($"{F}: compressed-tensors format '{format}' with {bits}-bit int weights is not supported (pack-quantized 4 or 8 bits, naive-quantized / int-quantized 8 bits are)"),
        };

        if (JsonFields.OptionalBool(weights, "dynamic", F) == true)
        {
            throw new ModelConfigException($"{F}: dynamic weight quantization is not supported");
        }

        string strategy = JsonFields.OptionalString(weights, "strategy", F) ?? "tensor";
        int groupSize = strategy switch
        {
            "channel" => 0,
            "group" => JsonFields.OptionalInt(weights, "group_size", F) is > 0 and var size ? size
                : throw new ModelConfigException($"{F}: weights strategy 'group' needs a positive group_size"),
            _ => throw new ModelConfigException($"{F}: int weights strategy '{strategy}' is not supported (channel, group are)"),
        };

        // llm-compressor writes actorder as "group", "weight", "dynamic" or null; older releases as a bool.
        JsonFields.TryGet(weights, "actorder", out JsonElement actorder);
        bool actOrder = actorder.ValueKind switch
        {
            JsonValueKind.Undefined or JsonValueKind.False => false,
            JsonValueKind.True => true,
            JsonValueKind.String when actorder.GetString() is "group" or "dynamic" => true,
            JsonValueKind.String when actorder.GetString() == "weight" => false,
            _ => throw new ModelConfigException($"{F}: weights actorder {actorder.GetRawText()} is not one of \"group\", \"weight\", \"dynamic\" or null"),
        };

        if (actOrder && strategy != "group")
        {
            throw new ModelConfigException($"{F}: weights actorder {actorder.GetRawText()} needs strategy 'group'");
        }

        bool symmetric = JsonFields.OptionalBool(weights, "symmetric", F) ?? true;
        return new QuantizationConfig
        {
            Method = "compressed-tensors",
            IntWeights = new IntWeightScheme(layout, bits, groupSize, actOrder, symmetric, ZerosMinusOne: false),
            Ignore = Strings(q, "ignore"),
        };
    }

    /// <summary>
    /// GPTQ as AutoGPTQ, GPTQModel and Optimum write it: <c>bits</c> 4 or 8, <c>group_size</c> (−1: per channel),
    /// <c>desc_act</c> (act-order: each column's group is stored in g_idx), <c>sym</c>, <c>checkpoint_format</c> "gptq"
    /// (zero points stored minus one) or "gptq_v2". Which modules are quantized (<c>lm_head</c>,
    /// <c>modules_in_block_to_quantize</c>) is read from the files; per-module overrides (<c>dynamic</c>) are refused.
    /// </summary>
    private static QuantizationConfig Gptq(JsonElement q)
    {
        int bits = JsonFields.RequiredInt(q, "bits", F);
        if (bits is not (4 or 8))
        {
            throw new ModelConfigException($"{F}: gptq bits {bits} is not supported (4 and 8 are)");
        }

        int groupSize = JsonFields.OptionalInt(q, "group_size", F) ?? -1;
        if (groupSize is 0 or < -1)
        {
            throw new ModelConfigException($"{F}: gptq group_size {groupSize} must be positive or -1 (per channel)");
        }

        string checkpointFormat = JsonFields.OptionalString(q, "checkpoint_format", F) ?? "gptq";
        if (checkpointFormat is not ("gptq" or "gptq_v2"))
        {
            throw new ModelConfigException($"{F}: gptq checkpoint_format '{checkpointFormat}' is not supported (gptq, gptq_v2 are)");
        }

        if (JsonFields.TryGet(q, "dynamic", out JsonElement dynamic) && dynamic.ValueKind == JsonValueKind.Object && dynamic.EnumerateObject().Any())
        {
            throw new ModelConfigException($"{F}: gptq 'dynamic' per-module overrides are not supported");
        }

        return new QuantizationConfig
        {
            Method = "gptq",
            IntWeights = new IntWeightScheme(IntWeightLayout.Gptq, bits, groupSize == -1 ? 0 : groupSize,
                ActOrder: JsonFields.OptionalBool(q, "desc_act", F) ?? false, Symmetric: JsonFields.OptionalBool(q, "sym", F) ?? true,
                ZerosMinusOne: checkpointFormat == "gptq"),
            Ignore = Strings(q, "modules_to_not_convert"),
        };
    }

    /// <summary>
    /// <c>mxfp4</c> (gpt-oss's published checkpoints): the MoE experts are stored in OCP MXFP4, E2M1 codes two to a byte
    /// (<c>experts.gate_up_proj_blocks</c>, <c>experts.down_proj_blocks</c>) with one E8M0 scale per 32 inputs
    /// (<c>*_scales</c>), read by <see cref="Architectures.GptOssExperts"/>; the rest, <c>modules_to_not_convert</c>, is
    /// stored unquantized. The CUDA backend keeps the experts packed in bf16 models and decodes them in its MoE kernels;
    /// elsewhere they are dequantized into the model dtype at load, as transformers does on GPUs without its MXFP4 kernels.
    /// </summary>
    private static QuantizationConfig Mxfp4(JsonElement q) => new()
    {
        Method = "mxfp4",
        Ignore = Strings(q, "modules_to_not_convert"),
    };

    /// <summary>
    /// AWQ as AutoAWQ writes it (<c>bits</c> or <c>w_bit</c> 4, <c>group_size</c> or <c>q_group_size</c>, <c>zero_point</c>,
    /// <c>version</c> "gemm", <c>modules_to_not_convert</c>); the GEMV layouts pack differently and are refused.
    /// </summary>
    private static QuantizationConfig Awq(JsonElement q)
    {
        int bits = JsonFields.OptionalInt(q, "bits", F) ?? JsonFields.OptionalInt(q, "w_bit", F) ?? 4;
        if (bits != 4)
        {
            throw new ModelConfigException($"{F}: awq bits {bits} is not supported (4 is)");
        }

        int groupSize = JsonFields.OptionalInt(q, "group_size", F) ?? JsonFields.OptionalInt(q, "q_group_size", F) ?? 128;
        if (groupSize is 0 or < -1)
        {
            throw new ModelConfigException($"{F}: awq group_size {groupSize} must be positive or -1 (per channel)");
        }

        string version = JsonFields.OptionalString(q, "version", F) ?? "gemm";
        if (!version.Equals("gemm", StringComparison.OrdinalIgnoreCase))
        {
            throw new ModelConfigException($"{F}: awq version '{version}' is not supported (the GEMM layout, version 'gemm', is)");
        }

        // zero_point false still stores qzeros (AutoAWQ's GEMM module always has them), and vLLM reads them either way.
        return new QuantizationConfig
        {
            Method = "awq",
            IntWeights = new IntWeightScheme(IntWeightLayout.Awq, bits, groupSize == -1 ? 0 : groupSize, ActOrder: false,
                Symmetric: !(JsonFields.OptionalBool(q, "zero_point", F) ?? true), ZerosMinusOne: false),
            Ignore = Strings(q, "modules_to_not_convert"),
        };
    }

    /// <summary>Only 8-bit floats (E4M3) are FP8; other num_bits / types are the integer and 4-bit formats.</summary>
    private static void CheckFp8(JsonElement scheme, string what)
    {
        int bits = JsonFields.OptionalInt(scheme, "num_bits", F) ?? 8;
        string type = JsonFields.OptionalString(scheme, "type", F) ?? "float";
        if (bits != 8 || type != "float")
        {
            throw new ModelConfigException($"{F}: {what} of {bits}-bit {type} are not supported yet (8-bit float, FP8, is)");
        }

        if (JsonFields.OptionalBool(scheme, "symmetric", F) == false)
        {
            throw new ModelConfigException($"{F}: asymmetric FP8 {what} are not supported");
        }
    }

    private static (Fp8WeightScales, int, int) BlockStructure(JsonElement weights)
    {
        int[] block = JsonFields.OptionalIntOrIntList(weights, "block_structure", F) ?? [];
        return block.Length == 2 && block[0] > 0 && block[1] > 0
            ? (Fp8WeightScales.PerBlock, block[0], block[1])
            : throw new ModelConfigException($"{F}: weights strategy 'block' needs block_structure [rows, columns]");
    }

    private static string[] Strings(JsonElement obj, string name) =>
        JsonFields.TryGet(obj, name, out JsonElement list) && list.ValueKind == JsonValueKind.Array
            ? [.. list.EnumerateArray().Select(e => e.GetString() ?? throw new ModelConfigException($"{F}: '{name}' must list strings"))]
            : [];
}
