using System.Text.Json;
using System.Text.Json.Nodes;
using Celer.Models.Quantization;
using Celer.Models.Rope;
using Celer.Models.Weights;

namespace Celer.Models.Config;

/// <summary>
/// The fields of a Hugging Face config.json that decoder-only models need. Parsing does not
/// refuse unknown architectures (<see cref="Architecture"/> is reported as written, and the model
/// registry decides); it refuses values no architecture could run: non-positive sizes, heads not
/// divisible by KV heads, an unknown <c>hidden_act</c>, an unsupported RoPE type.
/// </summary>
public sealed record ModelConfig
{
    public const string FileName = "config.json";

    /// <summary>First entry of <c>architectures</c>, e.g. <c>LlamaForCausalLM</c>.</summary>
    public required string Architecture { get; init; }

    /// <summary><c>model_type</c>, e.g. <c>llama</c>, <c>qwen3</c>; empty when absent.</summary>
    public string ModelType { get; init; } = "";

    public required int HiddenSize { get; init; }
    public required int IntermediateSize { get; init; }
    public required int NumHiddenLayers { get; init; }
    public required int NumAttentionHeads { get; init; }

    /// <summary><c>num_key_value_heads</c>; equals <see cref="NumAttentionHeads"/> (plain MHA) when absent.</summary>
    public required int NumKeyValueHeads { get; init; }

    /// <summary>Explicit <c>head_dim</c> when present (Qwen3, Mistral Nemo: may differ from hidden/heads), else hidden/heads.</summary>
    public required int HeadDim { get; init; }

    public required int VocabSize { get; init; }
    public double RmsNormEps { get; init; } = 1e-6;
    public required int MaxPositionEmbeddings { get; init; }

    /// <summary><c>tie_word_embeddings</c>: lm_head reuses embed_tokens (small Llama 3.2 / Qwen models).</summary>
    public bool TieWordEmbeddings { get; init; }

    /// <summary>
    /// <c>attention_bias</c> exactly as written (default false). Which projections carry a bias is
    /// architecture-specific; see <see cref="HasQkvBias"/> and <see cref="HasOutputProjectionBias"/>.
    /// </summary>
    public bool AttentionBias { get; init; }

    /// <summary>
    /// Whether q/k/v projections have a bias: always for Qwen2 (its modeling code hard-codes it and
    /// has no <c>attention_bias</c> field), never for Mistral (hard-coded false), else <see cref="AttentionBias"/>.
    /// </summary>
    public bool HasQkvBias => Architecture switch
    {
        "Qwen2ForCausalLM" => true,
        "Qwen2MoeForCausalLM" => QkvBias ?? true,
        "MistralForCausalLM" => false,
        _ => AttentionBias,
    };

    /// <summary>Whether o_proj has a bias: never for Qwen2 and Mistral, else <see cref="AttentionBias"/> (Llama, Qwen3 apply it to all four).</summary>
    public bool HasOutputProjectionBias => Architecture switch
    {
        "Qwen2ForCausalLM" or "Qwen2MoeForCausalLM" or "MistralForCausalLM" => false,
        _ => AttentionBias,
    };

    /// <summary>Qwen2-MoE's <c>qkv_bias</c> (transformers 5; default true, which 4.x hard-coded); null where absent.</summary>
    public bool? QkvBias { get; init; }

    /// <summary>A BERT-family encoder's settings (BERT, RoBERTa, XLM-RoBERTa); null for decoders.</summary>
    public EncoderConfig? Encoder { get; init; }

    /// <summary>A vision-language checkpoint's tower and projector (the rest of this config is its language model's); null otherwise.</summary>
    public VisionLanguageConfig? Vision { get; init; }

    /// <summary>A sequence classifier's labels and activations (<c>…ForSequenceClassification</c>); null for other heads.</summary>
    public ClassifierConfig? Classifier { get; init; }

    /// <summary>The sparse mixture-of-experts MLP of Mixtral and Qwen-MoE models; null for dense models.</summary>
    public MoeConfig? Moe { get; init; }

    /// <summary>The checkpoint's FP8 quantization (<c>quantization_config</c>); null for an unquantized checkpoint.</summary>
    public QuantizationConfig? Quantization { get; init; }

    /// <summary><c>mlp_bias</c> (Llama), default false: gate/up/down projections carry a bias.</summary>
    public bool MlpBias { get; init; }

    public HiddenActivation HiddenAct { get; init; } = HiddenActivation.Silu;

    /// <summary>
    /// Attention window in tokens, or null for full attention: Mistral's <c>sliding_window</c>; for
    /// configs with a <c>use_sliding_window</c> switch (Qwen2, Qwen3) only when it is true. Which layers use it is
    /// <see cref="SlidingLayers"/>.
    /// </summary>
    public int? SlidingWindow { get; init; }

    /// <summary>
    /// Gemma 3's <c>use_bidirectional_attention</c> (EmbeddingGemma): every layer attends in both directions, the
    /// sliding layers to the tokens within <see cref="SlidingWindow"/> − 1 positions either side (the window then
    /// holds transformers' radius, <c>sliding_window // 2 + 1</c> of the file's); or a decoder's <c>is_causal</c> false
    /// (gte-Qwen2, Qodo-Embed: no window). Such a model only pools: a token's state depends on the tokens after it.
    /// </summary>
    public bool BidirectionalAttention { get; init; }

    /// <summary>
    /// Per layer, whether it attends through <see cref="SlidingWindow"/>: transformers 5's <c>layer_types</c>
    /// (<c>sliding_attention</c> or <c>full_attention</c>), or for a Qwen2/Qwen3 config that turns sliding on without
    /// it, the layers from <c>max_window_layers</c> on (as transformers derives them). Null: every layer slides when
    /// there is a window.
    /// </summary>
    public IReadOnlyList<bool>? SlidingLayers { get; init; }

    /// <summary><c>torch_dtype</c> (transformers 4.x) or <c>dtype</c> (5.x): the checkpoint's compute dtype; null when absent.</summary>
    public DType? TorchDtype { get; init; }

    public int? BosTokenId { get; init; }

    /// <summary><c>eos_token_id</c> as a list (config.json writes an int or a list); empty when absent.</summary>
    public IReadOnlyList<int> EosTokenIds { get; init; } = [];

    public RopeParameters Rope { get; init; } = new();

    /// <summary>Granite's <c>embedding_multiplier</c> (default 1): the embeddings are scaled by it.</summary>
    public float EmbeddingMultiplier { get; init; } = 1f;

    /// <summary>Granite's <c>residual_multiplier</c> (default 1): each sublayer's output is scaled by it before the residual add.</summary>
    public float ResidualMultiplier { get; init; } = 1f;

    /// <summary>Granite's <c>attention_multiplier</c>: the attention scale in place of 1/√head_dim; null when absent.</summary>
    public float? AttentionMultiplier { get; init; }

    /// <summary>Granite's <c>logits_scaling</c> (default 1): the logits are divided by it.</summary>
    public float LogitsScaling { get; init; } = 1f;

    /// <summary>
    /// SmolLM3's <c>no_rope_layers</c>, one flag per layer: whether the layer applies RoPE (1 in the file; 0 leaves
    /// queries and keys unrotated). Null when absent: every layer rotates.
    /// </summary>
    public IReadOnlyList<bool>? RopeLayers { get; init; }

    /// <summary>
    /// Gemma 2/3's <c>query_pre_attn_scalar</c>: the attention scale is its inverse square root (default 256 for Gemma, as
    /// transformers'); null for other architectures.
    /// </summary>
    public float? QueryPreAttnScalar { get; init; }

    /// <summary>
    /// <c>attn_logit_softcapping</c>: attention scores become cap · tanh(score / cap). Gemma 2 defaults to 50 when the field
    /// is absent (null turns it off). Gemma 3 configs carry the field but transformers' Gemma 3 attention never applies
    /// it, so it is read as null there.
    /// </summary>
    public float? AttnLogitSoftcapping { get; init; }

    /// <summary><c>final_logit_softcapping</c>: logits become cap · tanh(logit / cap); Gemma 2 defaults to 30 when absent, Gemma 3 to none.</summary>
    public float? FinalLogitSoftcapping { get; init; }

    /// <summary>
    /// Gemma 3's RoPE of its sliding-window layers: default RoPE with base <c>rope_local_base_freq</c> (default 10000),
    /// or transformers 5's <c>rope_parameters.sliding_attention</c>; <see cref="Rope"/> is then that of its full-attention
    /// layers (<c>rope_theta</c> with <c>rope_scaling</c>, or <c>rope_parameters.full_attention</c>). Null for the others.
    /// </summary>
    public RopeParameters? LocalRope { get; init; }

    private const string Gemma2 = "Gemma2ForCausalLM", Gemma3 = "Gemma3ForCausalLM", GptOss = "GptOssForCausalLM";

    private static bool IsGemma(string architecture) => architecture is Gemma2 or Gemma3;

    /// <summary>Architectures whose MLP is SwiGLU; any other <c>hidden_act</c> is a broken config.</summary>
    private static readonly HashSet<string> SiluArchitectures =
        ["LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM", "Qwen3ForCausalLM", "GraniteForCausalLM", "SmolLM3ForCausalLM", "Phi3ForCausalLM", "Olmo2ForCausalLM",
         "MixtralForCausalLM", "Qwen2MoeForCausalLM", "Qwen3MoeForCausalLM"];

    /// <summary>Qwen's families, whose <c>use_sliding_window</c> defaults to off and whose windows start at <c>max_window_layers</c>.</summary>
    private static bool IsQwen(string architecture) =>
        architecture is "Qwen2ForCausalLM" or "Qwen3ForCausalLM" or "Qwen2MoeForCausalLM" or "Qwen3MoeForCausalLM";

    /// <summary>Reads <c>config.json</c> from a model directory, with <paramref name="overrides"/> applied (see <see cref="Parse"/>).</summary>
    public static ModelConfig Load(string modelDirectory, JsonObject? overrides = null)
    {
        string path = Path.Combine(modelDirectory, FileName);
        if (!File.Exists(path))
        {
            throw new ModelConfigException($"{FileName} not found in model directory '{modelDirectory}'");
        }
        return Parse(File.ReadAllText(path), overrides);
    }

    /// <summary>
    /// Parses the text of a config.json. <paramref name="overrides"/> (vLLM's <c>--hf-overrides</c>) replace the file's
    /// top-level fields of the same name before anything is read, as transformers' <c>config.update</c> does: e.g.
    /// <c>{"architectures": ["LlamaForCausalLM"]}</c> runs a Llama clone published under another name.
    /// </summary>
    public static ModelConfig Parse(string json, JsonObject? overrides = null)
    {
        JsonObject obj;
        try
        {
            obj = JsonNode.Parse(json) as JsonObject ?? throw new ModelConfigException($"{FileName} must hold a JSON object");
            foreach ((string name, JsonNode? value) in overrides ?? [])
            {
                obj[name] = value?.DeepClone();
            }
        }
        catch (JsonException e)
        {
            throw new ModelConfigException($"{FileName} is not valid JSON: {e.Message}", e);
        }
        catch (ArgumentException e)
        {
            // Overriding a field the file writes twice: which one it meant is not defined by the format.
            throw new ModelConfigException($"{FileName} is not a valid config: {e.Message}", e);
        }

        using JsonDocument doc = JsonDocument.Parse(obj.ToJsonString());
        string architecture = doc.RootElement.TryGetProperty("architectures", out JsonElement names) && names.ValueKind == JsonValueKind.Array
            && names.GetArrayLength() > 0 && names[0].ValueKind == JsonValueKind.String ? names[0].GetString()! : "";
        if (!VisionLanguageConfig.IsVisionLanguage(architecture))
        {
            return FromRoot(doc.RootElement);
        }

        // A vision-language checkpoint: its language model is read from text_config, the tower and projector beside it.
        VisionLanguageConfig vision = VisionLanguageConfig.Parse(doc.RootElement, architecture);
        using JsonDocument text = JsonDocument.Parse(VisionLanguageConfig.TextRoot(obj).ToJsonString());
        return FromRoot(text.RootElement) with { Vision = vision };
    }

    private static ModelConfig FromRoot(JsonElement root)
    {
        const string F = FileName;
        string written = FirstArchitecture(root);
        // The architecture-specific defaults below are those of the layers the checkpoint runs: a bare base model's
        // (Qwen2Model) and a decoder classifier's (Qwen3ForSequenceClassification) are their causal LM's.
        string architecture = LayersArchitecture(written);
        // Read first: a format Celer cannot run is refused naming its method before any other field matters.
        QuantizationConfig? quantization = QuantizationConfig.Parse(root);
        if (quantization is { Method: "mxfp4" } && architecture != GptOss)
        {
            throw new ModelConfigException($"{F}'s quantization_config names quant_method 'mxfp4', which Celer reads for gpt-oss's experts (GptOssForCausalLM) only, not {architecture}");
        }

        int hidden = Positive(root, "hidden_size");
        int heads = Positive(root, "num_attention_heads");
        int kvHeads = JsonFields.OptionalInt(root, "num_key_value_heads", F) ?? heads;
        if (kvHeads <= 0 || heads % kvHeads != 0)
        {
            throw new ModelConfigException(
                $"{F}: field 'num_key_value_heads' ({kvHeads}) must be positive and divide 'num_attention_heads' ({heads})");
        }

        int? explicitHeadDim = JsonFields.OptionalInt(root, "head_dim", F);
        if (explicitHeadDim is <= 0)
        {
            throw new ModelConfigException($"{F}: field 'head_dim' must be positive, got {explicitHeadDim}");
        }
        // GptOssConfig defaults head_dim to 64 (gpt-oss's 2880 / 64 heads would give 45).
        int? defaultHeadDim = architecture == GptOss ? 64 : null;
        if (explicitHeadDim is null && defaultHeadDim is null && hidden % heads != 0)
        {
            throw new ModelConfigException(
                $"{F}: field 'hidden_size' ({hidden}) is not divisible by 'num_attention_heads' ({heads}) and no 'head_dim' is given");
        }

        double eps = JsonFields.OptionalDouble(root, "rms_norm_eps", F) ?? (architecture == GptOss ? 1e-5 : 1e-6);
        if (eps <= 0)
        {
            throw new ModelConfigException($"{F}: field 'rms_norm_eps' must be positive, got {eps}");
        }

        int maxPositions = Positive(root, "max_position_embeddings");
        int layers = Positive(root, "num_hidden_layers");
        bool gemma = IsGemma(architecture);
        // Gemma3TextConfig's switch (EmbeddingGemma); Gemma2Config has none, so the field there is a broken config.
        bool bidirectional = JsonFields.OptionalBool(root, "use_bidirectional_attention", F) == true;
        if (bidirectional && architecture != Gemma3)
        {
            throw new ModelConfigException(
                $"{F}: field 'use_bidirectional_attention' is true, which Celer reads for Gemma 3 text models (EmbeddingGemma) only, not {architecture}");
        }

        // Decoder embedders trained with bidirectional attention (gte-Qwen2, Qodo-Embed) say so with is_causal false, which
        // their remote modeling code and vLLM honour (an encoder-only attention); set by --hf-overrides for a checkpoint
        // that does not. An encoder attends both ways already.
        bool notCausal = JsonFields.OptionalBool(root, "is_causal", F) == false && !EncoderConfig.IsEncoder(architecture);

        int intermediate = Positive(root, "intermediate_size");
        (RopeParameters rope, RopeParameters? localRope) = architecture == Gemma3
            ? Gemma3Ropes(root, maxPositions)
            : (RopeParameters.Parse(root, maxPositions, F), null);
        return new ModelConfig
        {
            Architecture = written,
            Encoder = EncoderConfig.Parse(root, written, maxPositions),
            Classifier = ClassifierConfig.Parse(root, written),
            Quantization = quantization,
            ModelType = JsonFields.OptionalString(root, "model_type", F) ?? "",
            HiddenSize = hidden,
            IntermediateSize = intermediate,
            Moe = MoeConfig.Parse(root, architecture, layers, intermediate),
            QkvBias = JsonFields.OptionalBool(root, "qkv_bias", F),
            NumHiddenLayers = layers,
            NumAttentionHeads = heads,
            NumKeyValueHeads = kvHeads,
            HeadDim = explicitHeadDim ?? defaultHeadDim ?? hidden / heads,
            VocabSize = Positive(root, "vocab_size"),
            RmsNormEps = eps,
            MaxPositionEmbeddings = maxPositions,
            TieWordEmbeddings = JsonFields.OptionalBool(root, "tie_word_embeddings", F) ?? false,
            AttentionBias = JsonFields.OptionalBool(root, "attention_bias", F) ?? architecture == GptOss,
            MlpBias = JsonFields.OptionalBool(root, "mlp_bias", F) ?? false,
            HiddenAct = Activation(root, architecture),
            BidirectionalAttention = bidirectional || notCausal,
            SlidingWindow = SlidingWindowOf(root, architecture, bidirectional, notCausal),
            SlidingLayers = SlidingLayersOf(root, architecture, layers),
            TorchDtype = TorchDtypeOf(root),
            BosTokenId = JsonFields.OptionalInt(root, "bos_token_id", F),
            EosTokenIds = JsonFields.OptionalIntOrIntList(root, "eos_token_id", F) ?? [],
            Rope = rope,
            LocalRope = localRope,
            EmbeddingMultiplier = PositiveFloat(root, "embedding_multiplier") ?? 1f,
            ResidualMultiplier = PositiveFloat(root, "residual_multiplier") ?? 1f,
            AttentionMultiplier = PositiveFloat(root, "attention_multiplier"),
            LogitsScaling = PositiveFloat(root, "logits_scaling") ?? 1f,
            RopeLayers = RopeLayersOf(root, layers),
            QueryPreAttnScalar = gemma ? PositiveFloat(root, "query_pre_attn_scalar") ?? 256f : null,
            AttnLogitSoftcapping = architecture == Gemma2 ? Softcap(root, "attn_logit_softcapping", 50f) : null,
            FinalLogitSoftcapping = gemma ? Softcap(root, "final_logit_softcapping", architecture == Gemma2 ? 30f : null) : null,
        };
    }

    /// <summary>
    /// The causal LM whose layers <paramref name="architecture"/> runs: <c>Qwen3Model</c> and
    /// <c>Qwen3ForSequenceClassification</c> are <c>Qwen3ForCausalLM</c>'s layers; encoders and causal LMs are themselves.
    /// </summary>
    public static string LayersArchitecture(string architecture) =>
        EncoderConfig.IsEncoder(architecture) ? architecture
        : ClassifierConfig.IsClassifier(architecture) ? ClassifierConfig.CausalLmOf(architecture)
        // transformers names Gemma 3's bare text model (gemma3_text, EmbeddingGemma's) after its text-only config.
        : architecture == "Gemma3TextModel" ? Gemma3
        : architecture.EndsWith("Model", StringComparison.Ordinal) ? architecture[..^"Model".Length] + "ForCausalLM"
        : architecture;

    /// <summary>A soft-capping field: absent gives the architecture's default, null turns it off, else it must be positive.</summary>
    private static float? Softcap(JsonElement root, string name, float? absent)
    {
        // JsonFields reads an explicit null as absent; here the two differ.
        if (!root.TryGetProperty(name, out JsonElement value))
        {
            return absent;
        }

        return value.ValueKind == JsonValueKind.Null ? null : PositiveFloat(root, name);
    }

    /// <summary>
    /// Gemma 3's two RoPEs, as transformers 5's <c>Gemma3TextConfig.convert_rope_params_to_dict</c> builds them: one dict per
    /// layer type in <c>rope_parameters</c>, or from the 4.x fields (<c>rope_scaling</c> and <c>rope_theta</c>, default 1e6,
    /// for the full-attention layers; <c>rope_local_base_freq</c>, default 1e4, for the sliding ones). A
    /// <c>rope_scaling</c> next to per-type <c>rope_parameters</c> updates the full-attention dict.
    /// </summary>
    private static (RopeParameters Full, RopeParameters Local) Gemma3Ropes(JsonElement root, int maxPositions)
    {
        const string F = FileName;
        JsonObject full = [], local = [];
        if (JsonFields.TryGet(root, "rope_parameters", out JsonElement parameters) && parameters.ValueKind != JsonValueKind.Null)
        {
            if (parameters.ValueKind != JsonValueKind.Object
                || parameters.EnumerateObject().Any(p => p.Name is not ("full_attention" or "sliding_attention")
                    || p.Value.ValueKind is not (JsonValueKind.Object or JsonValueKind.Null)))
            {
                throw new ModelConfigException(
                    $"{F}: field 'rope_parameters' of a Gemma 3 config must hold one dict per layer type ('full_attention', 'sliding_attention')");
            }

            if (JsonFields.TryGet(parameters, "full_attention", out JsonElement f) && f.ValueKind == JsonValueKind.Object)
            {
                full = (JsonObject)JsonNode.Parse(f.GetRawText())!;
            }

            if (JsonFields.TryGet(parameters, "sliding_attention", out JsonElement l) && l.ValueKind == JsonValueKind.Object)
            {
                local = (JsonObject)JsonNode.Parse(l.GetRawText())!;
            }
        }

        if (JsonFields.TryGet(root, "rope_scaling", out JsonElement scaling) && scaling.ValueKind != JsonValueKind.Null)
        {
            if (scaling.ValueKind != JsonValueKind.Object)
            {
                throw new ModelConfigException($"{F}: field 'rope_scaling' must be an object");
            }

            foreach (JsonProperty p in scaling.EnumerateObject())
            {
                full[p.Name] = JsonNode.Parse(p.Value.GetRawText());
            }
        }

        if (!full.ContainsKey("rope_theta"))
        {
            full["rope_theta"] = JsonFields.OptionalDouble(root, "rope_theta", F) ?? 1_000_000.0;
        }

        if (!local.ContainsKey("rope_theta"))
        {
            local["rope_theta"] = JsonFields.OptionalDouble(root, "rope_local_base_freq", F) ?? 10_000.0;
        }

        return (ParseRopeDict(full, "full_attention"), ParseRopeDict(local, "sliding_attention"));

        RopeParameters ParseRopeDict(JsonObject dict, string layerType)
        {
            // The dict alone, as the one rope_parameters of a config: nothing at the top level leaks in.
            var alone = new JsonObject { ["rope_parameters"] = dict };
            using JsonDocument doc = JsonDocument.Parse(alone.ToJsonString());
            try
            {
                return RopeParameters.Parse(doc.RootElement, maxPositions, F);
            }
            catch (ModelConfigException e)
            {
                throw new ModelConfigException($"{e.Message} (the RoPE of the {layerType} layers)", e);
            }
        }
    }

    private static float? PositiveFloat(JsonElement root, string name)
    {
        double? value = JsonFields.OptionalDouble(root, name, FileName);
        return value is null or (> 0 and < double.PositiveInfinity)
            ? (float?)value
            : throw new ModelConfigException($"{FileName}: field '{name}' must be positive, got {value}");
    }

    private static bool[]? RopeLayersOf(JsonElement root, int layers)
    {
        if (!JsonFields.TryGet(root, "no_rope_layers", out JsonElement list) || list.ValueKind == JsonValueKind.Null)
        {
            return null;
        }

        if (list.ValueKind != JsonValueKind.Array || list.GetArrayLength() != layers
            || list.EnumerateArray().Any(e => e.ValueKind != JsonValueKind.Number || !e.TryGetInt32(out int v) || v is not (0 or 1)))
        {
            throw new ModelConfigException($"{FileName}: field 'no_rope_layers' must list 0 or 1 for each of the {layers} layers");
        }

        return [.. list.EnumerateArray().Select(e => e.GetInt32() == 1)];
    }

    private static string FirstArchitecture(JsonElement root)
    {
        if (JsonFields.TryGet(root, "architectures", out var list) && list.ValueKind == JsonValueKind.Array
            && list.GetArrayLength() > 0 && list[0].ValueKind == JsonValueKind.String
            && list[0].GetString() is { Length: > 0 } name)
        {
            return name;
        }
        throw new ModelConfigException($"{FileName}: field 'architectures' must be a non-empty list of names");
    }

    private static int Positive(JsonElement root, string name)
    {
        int value = JsonFields.RequiredInt(root, name, FileName);
        return value > 0 ? value : throw new ModelConfigException($"{FileName}: field '{name}' must be positive, got {value}");
    }

    private static HiddenActivation Activation(JsonElement root, string architecture)
    {
        if (IsGemma(architecture))
        {
            // Gemma 2/3 read hidden_activation (default gelu_pytorch_tanh) and ignore hidden_act, which their configs
            // also carry (sometimes as a different name).
            string gemmaName = JsonFields.OptionalString(root, "hidden_activation", FileName) ?? "gelu_pytorch_tanh";
            return HiddenActivationNames.TryParse(gemmaName, out var gemmaActivation) && gemmaActivation == HiddenActivation.GeluTanh
                ? gemmaActivation
                : throw new ModelConfigException(
                    $"{FileName}: field 'hidden_activation' must be 'gelu_pytorch_tanh' (or 'gelu_new') for {architecture}, got '{gemmaName}'");
        }

        string name = JsonFields.OptionalString(root, "hidden_act", FileName) ?? "silu";
        if (!HiddenActivationNames.TryParse(name, out var activation))
        {
            throw new ModelConfigException($"{FileName}: field 'hidden_act' value '{name}' is not supported (silu, gelu, gelu_pytorch_tanh)");
        }
        if (activation != HiddenActivation.Silu && SiluArchitectures.Contains(architecture))
        {
            throw new ModelConfigException($"{FileName}: field 'hidden_act' must be 'silu' for {architecture}, got '{name}'");
        }
        return activation;
    }

    private static int? SlidingWindowOf(JsonElement root, string architecture, bool bidirectional, bool notCausal = false)
    {
        // Qwen configs carry a sliding_window value even when sliding is off; their switch
        // defaults to off in transformers. Mistral has no switch: a window present is a window used.
        bool defaultOn = !IsQwen(architecture);
        bool useSlidingWindow = JsonFields.OptionalBool(root, "use_sliding_window", FileName) ?? defaultOn;
        // Gemma 2/3 default to a 4096-token window when the field is absent, gpt-oss to 128 (an explicit null is full attention).
        bool absent = !root.TryGetProperty("sliding_window", out _);
        int? window = absent && IsGemma(architecture) ? 4096
            : absent && architecture == GptOss ? 128
            : JsonFields.OptionalInt(root, "sliding_window", FileName);
        if (!useSlidingWindow || window is null)
        {
            return null;
        }
        if (window <= 0)
        {
            throw new ModelConfigException($"{FileName}: field 'sliding_window' must be positive, got {window}");
        }

        if (notCausal && !bidirectional)
        {
            // Whether a window then looks one way or both is defined for EmbeddingGemma's switch only.
            throw new ModelConfigException($"{FileName}: field 'is_causal' is false with a sliding window of {window}, whose bidirectional extent is not defined; turn the window off (use_sliding_window false)");
        }

        // Gemma3TextConfig turns the window's width into the radius of the bidirectional mask (|q − k| < radius), as
        // sliding_window // 2 + 1, whenever the config is built from the file.
        return bidirectional ? (window / 2) + 1 : window;
    }

    private static bool[]? SlidingLayersOf(JsonElement root, string architecture, int layers)
    {
        if (JsonFields.TryGet(root, "layer_types", out JsonElement types) && types.ValueKind != JsonValueKind.Null)
        {
            if (types.ValueKind != JsonValueKind.Array || types.GetArrayLength() != layers)
            {
                throw new ModelConfigException($"{FileName}: field 'layer_types' must list the type of each of the {layers} layers");
            }

            return [.. types.EnumerateArray().Select(t => t.ValueKind == JsonValueKind.String ? t.GetString() : null).Select(t => t switch
            {
                "sliding_attention" => true,
                "full_attention" => false,
                _ => throw new ModelConfigException(
                    $"{FileName}: layer type '{t}' in 'layer_types' is not supported (full_attention, sliding_attention)"),
            })];
        }

        if (architecture is Gemma2 or GptOss)
        {
            // transformers 5's Gemma2Config and GptOssConfig: layers 0, 2, 4, … slide, the others attend to everything.
            return [.. Enumerable.Range(0, layers).Select(i => (i + 1) % 2 != 0)];
        }

        if (architecture == Gemma3)
        {
            // Gemma3TextConfig: the 4.x sliding_window_pattern (default 6): every pattern-th layer is global.
            int pattern = JsonFields.OptionalInt(root, "sliding_window_pattern", FileName) ?? 6;
            if (pattern <= 0)
            {
                throw new ModelConfigException($"{FileName}: field 'sliding_window_pattern' must be positive, got {pattern}");
            }

            return [.. Enumerable.Range(0, layers).Select(i => (i + 1) % pattern != 0)];
        }

        if (IsQwen(architecture) && SlidingWindowOf(root, architecture, bidirectional: false) is not null)
        {
            // transformers (4.x and 5.x alike): layer i slides when i >= max_window_layers (default 28).
            int first = JsonFields.OptionalInt(root, "max_window_layers", FileName) ?? 28;
            return [.. Enumerable.Range(0, layers).Select(i => i >= first)];
        }

        return null;
    }

    private static DType? TorchDtypeOf(JsonElement root)
    {
        string field = JsonFields.TryGet(root, "dtype", out _) ? "dtype" : "torch_dtype";
        string? name = JsonFields.OptionalString(root, field, FileName);
        if (name is null)
        {
            return null;
        }
        return DTypeExtensions.TryParseTorch(name, out var dtype)
            ? dtype
            : throw new ModelConfigException($"{FileName}: field '{field}' value '{name}' is not supported (bfloat16, float16, float32)");
    }
}
