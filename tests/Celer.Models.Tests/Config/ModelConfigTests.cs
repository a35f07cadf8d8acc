using Celer.Models.Architectures;
using Xunit;
using Celer.Models.Config;
using Celer.Models.Rope;
using Celer.Models.Weights;

namespace Celer.Models.Tests.Config;

public class ModelConfigTests
{
    [Fact]
    public void Llama31_in_both_generations_reads_the_same()
    {
        foreach (string json in new[] { ConfigSamples.Llama31V4, ConfigSamples.Llama31V5 })
        {
            var c = ModelConfig.Parse(json);
            Assert.Equal("LlamaForCausalLM", c.Architecture);
            Assert.Equal("llama", c.ModelType);
            Assert.Equal(4096, c.HiddenSize);
            Assert.Equal(14336, c.IntermediateSize);
            Assert.Equal(32, c.NumHiddenLayers);
            Assert.Equal(32, c.NumAttentionHeads);
            Assert.Equal(8, c.NumKeyValueHeads);
            Assert.Equal(128, c.HeadDim);
            Assert.Equal(128256, c.VocabSize);
            Assert.Equal(1e-5, c.RmsNormEps);
            Assert.Equal(131072, c.MaxPositionEmbeddings);
            Assert.False(c.TieWordEmbeddings);
            Assert.False(c.AttentionBias);
            Assert.False(c.HasQkvBias);
            Assert.False(c.MlpBias);
            Assert.Equal(HiddenActivation.Silu, c.HiddenAct);
            Assert.Null(c.SlidingWindow);
            Assert.Equal(DType.BF16, c.TorchDtype);
            Assert.Equal(128000, c.BosTokenId);
            Assert.Equal([128001, 128008, 128009], c.EosTokenIds);
            Assert.Equal(new RopeParameters
            {
                RopeType = RopeType.Llama3, Theta = 500000, Factor = 8, LowFreqFactor = 1, HighFreqFactor = 4,
                OriginalMaxPositionEmbeddings = 8192,
            }, c.Rope);
        }
    }

    [Fact]
    public void Qwen3_explicit_head_dim_differs_from_hidden_over_heads()
    {
        var c = ModelConfig.Parse(ConfigSamples.Qwen3);
        Assert.Equal("Qwen3ForCausalLM", c.Architecture);
        Assert.Equal(128, c.HeadDim);
        Assert.Equal(8, c.NumKeyValueHeads);
        Assert.True(c.TieWordEmbeddings);
        Assert.Equal([151645], c.EosTokenIds);
        Assert.Null(c.SlidingWindow); // use_sliding_window false
        Assert.Equal(new RopeParameters { Theta = 1_000_000 }, c.Rope);
        Assert.False(c.HasQkvBias);
    }

    [Fact]
    public void Mistral_sliding_window_is_read()
    {
        var c = ModelConfig.Parse(ConfigSamples.Mistral);
        Assert.Equal(4096, c.SlidingWindow);
        Assert.Equal(128, c.HeadDim);
        Assert.Equal(10000, c.Rope.Theta);
        Assert.Equal([2], c.EosTokenIds);
        Assert.False(c.HasQkvBias);
    }

    [Fact]
    public void Granite_multipliers_and_smollm3_rope_layers_are_read_and_checked()
    {
        var granite = ModelConfig.Parse(ConfigSamples.Minimal("GraniteForCausalLM",
            "\"embedding_multiplier\": 12.0, \"residual_multiplier\": 0.22, \"attention_multiplier\": 0.0078125, \"logits_scaling\": 8.0"));
        Assert.Equal((12f, 0.22f, 0.0078125f, 8f), (granite.EmbeddingMultiplier, granite.ResidualMultiplier, granite.AttentionMultiplier!.Value, granite.LogitsScaling));
        var llama = ModelConfig.Parse(ConfigSamples.Minimal());
        Assert.Equal((1f, 1f, null, 1f), (llama.EmbeddingMultiplier, llama.ResidualMultiplier, llama.AttentionMultiplier, llama.LogitsScaling));
        Assert.Contains("logits_scaling", Assert.Throws<ModelConfigException>(() => ModelConfig.Parse(ConfigSamples.Minimal("GraniteForCausalLM", "\"logits_scaling\": 0"))).Message, StringComparison.Ordinal);

        int layers = ModelConfig.Parse(ConfigSamples.Minimal()).NumHiddenLayers;
        string flags = string.Join(", ", Enumerable.Range(0, layers).Select(i => i % 4 == 3 ? 0 : 1));
        var smol = ModelConfig.Parse(ConfigSamples.Minimal("SmolLM3ForCausalLM", $"\"no_rope_layers\": [{flags}]"));
        Assert.Equal(Enumerable.Range(0, layers).Select(i => i % 4 != 3), smol.RopeLayers!);
        Assert.Null(llama.RopeLayers);
        Assert.Contains("no_rope_layers", Assert.Throws<ModelConfigException>(() => ModelConfig.Parse(ConfigSamples.Minimal("SmolLM3ForCausalLM", "\"no_rope_layers\": [1, 2, 1]"))).Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Layer_specs_follow_layer_types_max_window_layers_and_no_rope_layers()
    {
        // transformers 5's layer_types: only the sliding layers get the window.
        var typed = ModelConfig.Parse(ConfigSamples.Minimal("MistralForCausalLM",
            "\"sliding_window\": 12, \"layer_types\": [\"sliding_attention\", \"full_attention\"]"));
        ArchitectureSpec mistral = ModelRegistry.Resolve(typed);
        Assert.Equal([new LayerSpec(true, 12, typed.Rope), new LayerSpec(true, 0, typed.Rope)], [mistral.Layer(typed, 0), mistral.Layer(typed, 1)]);
        Assert.Contains("'chunked_attention'", Assert.Throws<ModelConfigException>(() => ModelConfig.Parse(ConfigSamples.Minimal("MistralForCausalLM",
            "\"sliding_window\": 12, \"layer_types\": [\"chunked_attention\", \"full_attention\"]"))).Message, StringComparison.Ordinal);

        // A Qwen2 config that turns sliding on without layer_types: the layers from max_window_layers on slide.
        var qwen = ModelConfig.Parse(ConfigSamples.Minimal("Qwen2ForCausalLM",
            "\"use_sliding_window\": true, \"sliding_window\": 32, \"max_window_layers\": 1"));
        ArchitectureSpec qwen2 = ModelRegistry.Resolve(qwen);
        Assert.Equal([0, 32], new[] { qwen2.Layer(qwen, 0).SlidingWindow, qwen2.Layer(qwen, 1).SlidingWindow });

        // Mistral without layer_types: every layer slides; SmolLM3's flag 0 turns RoPE off for that layer only.
        var plain = ModelConfig.Parse(ConfigSamples.Minimal("MistralForCausalLM", "\"sliding_window\": 12"));
        Assert.Equal(12, ModelRegistry.Resolve(plain).Layer(plain, 1).SlidingWindow);
        var smol = ModelConfig.Parse(ConfigSamples.Minimal("SmolLM3ForCausalLM", "\"no_rope_layers\": [1, 0]"));
        ArchitectureSpec smolSpec = ModelRegistry.Resolve(smol);
        Assert.Equal([true, false], new[] { smolSpec.Layer(smol, 0).Rope, smolSpec.Layer(smol, 1).Rope });
    }

    [Fact]
    public void Gemma2_defaults_are_transformers_when_fields_are_absent_and_null_turns_capping_off()
    {
        var c = ModelConfig.Parse(ConfigSamples.Minimal("Gemma2ForCausalLM", "\"num_hidden_layers\": 3, \"hidden_act\": \"silu\""));
        // hidden_act is not Gemma's field: hidden_activation (default gelu_pytorch_tanh) is.
        Assert.Equal(HiddenActivation.GeluTanh, c.HiddenAct);
        Assert.Equal((50f, 30f, 256f), (c.AttnLogitSoftcapping, c.FinalLogitSoftcapping, c.QueryPreAttnScalar));
        Assert.Equal(4096, c.SlidingWindow);
        Assert.Equal([true, false, true], c.SlidingLayers!);
        Assert.Null(c.LocalRope);

        var off = ModelConfig.Parse(ConfigSamples.Minimal("Gemma2ForCausalLM",
            "\"attn_logit_softcapping\": null, \"final_logit_softcapping\": null, \"sliding_window\": null, \"query_pre_attn_scalar\": 24"));
        Assert.Equal((null, null, 24f, null), (off.AttnLogitSoftcapping, off.FinalLogitSoftcapping, off.QueryPreAttnScalar, off.SlidingWindow));

        // Other architectures never read Gemma's fields.
        var llama = ModelConfig.Parse(ConfigSamples.Minimal(extra: "\"query_pre_attn_scalar\": 24, \"final_logit_softcapping\": 30.0"));
        Assert.Equal((null, null, null), (llama.QueryPreAttnScalar, llama.AttnLogitSoftcapping, llama.FinalLogitSoftcapping));
    }

    [Fact]
    public void Gemma3_layers_follow_the_pattern_and_sliding_layers_rotate_with_the_local_base()
    {
        const string legacy = "\"num_hidden_layers\": 4, \"sliding_window\": 12, \"sliding_window_pattern\": 2, \"rope_theta\": 1000000.0, " +
            "\"rope_local_base_freq\": 10000.0, \"rope_scaling\": {\"rope_type\": \"linear\", \"factor\": 8.0}, " +
            "\"attn_logit_softcapping\": 50.0, \"final_logit_softcapping\": null";
        const string v5 = "\"num_hidden_layers\": 4, \"sliding_window\": 12, " +
            "\"layer_types\": [\"sliding_attention\", \"full_attention\", \"sliding_attention\", \"full_attention\"], " +
            "\"rope_parameters\": {\"full_attention\": {\"rope_type\": \"linear\", \"factor\": 8.0, \"rope_theta\": 1000000.0}, " +
            "\"sliding_attention\": {\"rope_type\": \"default\", \"rope_theta\": 10000.0}}";
        foreach (string extra in new[] { legacy, v5 })
        {
            var c = ModelConfig.Parse(ConfigSamples.Minimal("Gemma3ForCausalLM", extra));
            Assert.Equal(new RopeParameters { RopeType = RopeType.Linear, Theta = 1_000_000, Factor = 8 }, c.Rope);
            Assert.Equal(new RopeParameters { Theta = 10_000 }, c.LocalRope);
            Assert.Equal([true, false, true, false], c.SlidingLayers!);
            // transformers' Gemma 3 attention never applies attn_logit_softcapping; no final capping by default.
            Assert.Equal((null, null), (c.AttnLogitSoftcapping, c.FinalLogitSoftcapping));

            ArchitectureSpec spec = ModelRegistry.Resolve(c);
            Assert.Equal(new LayerSpec(true, 12, c.LocalRope!), spec.Layer(c, 0));
            Assert.Equal(new LayerSpec(true, 0, c.Rope), spec.Layer(c, 1));
        }

        // Absent fields: the default pattern of 6, transformers' default bases 1e6 and 1e4, a 4096-token window.
        var defaults = ModelConfig.Parse(ConfigSamples.Minimal("Gemma3ForCausalLM", "\"num_hidden_layers\": 7"));
        Assert.Equal([true, true, true, true, true, false, true], defaults.SlidingLayers!);
        Assert.Equal((1_000_000.0, 10_000.0, 4096), (defaults.Rope.Theta, defaults.LocalRope!.Theta, defaults.SlidingWindow!.Value));
        Assert.Equal((256f, HiddenActivation.GeluTanh), (defaults.QueryPreAttnScalar, defaults.HiddenAct));
    }

    /// <summary>
    /// EmbeddingGemma's config.json (Gemma3TextModel, model_type gemma3_text): Gemma 3's layers, bidirectional, and the
    /// window that Gemma3TextConfig makes of sliding_window 512: the radius 512 // 2 + 1 = 257 of |q − k| &lt; 257.
    /// </summary>
    [Fact]
    public void EmbeddingGemma_is_gemma3_with_bidirectional_attention_and_a_halved_window()
    {
        var c = ModelConfig.Parse(ConfigSamples.Minimal("Gemma3TextModel", "\"use_bidirectional_attention\": true, \"sliding_window\": 512, \"num_hidden_layers\": 6"));
        Assert.Equal("Gemma3ForCausalLM", ModelConfig.LayersArchitecture(c.Architecture));
        Assert.True(c.BidirectionalAttention);
        Assert.Equal(257, c.SlidingWindow);
        Assert.Equal([true, true, true, true, true, false], c.SlidingLayers!);
        ModelConfig layers = c with { Architecture = "Gemma3ForCausalLM" };   // as the pooling runner builds it
        Assert.Equal(new LayerSpec(true, 257, c.LocalRope!), ModelRegistry.Resolve(layers).Layer(layers, 0));

        // An odd width rounds down first (as Python's //); without the switch the window is the file's.
        Assert.Equal(9, ModelConfig.Parse(ConfigSamples.Minimal("Gemma3TextModel", "\"use_bidirectional_attention\": true, \"sliding_window\": 17")).SlidingWindow);
        var causal = ModelConfig.Parse(ConfigSamples.Minimal("Gemma3TextModel", "\"use_bidirectional_attention\": false, \"sliding_window\": 512"));
        Assert.Equal((false, 512), (causal.BidirectionalAttention, causal.SlidingWindow));
    }

    /// <summary>
    /// is_causal false (gte-Qwen2's and Qodo-Embed's config.json, on a bare Qwen2Model): bidirectional attention without a
    /// window, on any decoder; true or absent changes nothing; with a sliding window left on it is refused.
    /// </summary>
    [Fact]
    public void Is_causal_false_makes_a_decoder_attend_both_ways()
    {
        var qodo = ModelConfig.Parse(ConfigSamples.Minimal("Qwen2Model", "\"is_causal\": false, \"use_sliding_window\": false, \"sliding_window\": 131072"));
        Assert.Equal((true, null), (qodo.BidirectionalAttention, qodo.SlidingWindow));
        Assert.True(ModelConfig.Parse(ConfigSamples.Minimal("LlamaForCausalLM", "\"is_causal\": false")).BidirectionalAttention);
        Assert.False(ModelConfig.Parse(ConfigSamples.Minimal("Qwen2Model", "\"is_causal\": true")).BidirectionalAttention);
        Assert.False(ModelConfig.Parse(ConfigSamples.Minimal("Qwen2Model")).BidirectionalAttention);
        var e = Assert.Throws<ModelConfigException>(() => ModelConfig.Parse(ConfigSamples.Minimal("MistralForCausalLM", "\"is_causal\": false, \"sliding_window\": 4096")));
        Assert.Contains("'is_causal' is false with a sliding window of 4096", e.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("Gemma2ForCausalLM", "\"hidden_activation\": \"silu\"", "'hidden_activation' must be 'gelu_pytorch_tanh'")]
    [InlineData("Gemma2ForCausalLM", "\"attn_logit_softcapping\": 0", "'attn_logit_softcapping' must be positive")]
    [InlineData("Gemma2ForCausalLM", "\"final_logit_softcapping\": -30.0", "'final_logit_softcapping' must be positive")]
    [InlineData("Gemma2ForCausalLM", "\"query_pre_attn_scalar\": 0", "'query_pre_attn_scalar' must be positive")]
    [InlineData("Gemma2ForCausalLM", "\"use_bidirectional_attention\": true", "'use_bidirectional_attention' is true, which Celer reads for Gemma 3 text models")]
    [InlineData("LlamaForCausalLM", "\"use_bidirectional_attention\": true", "'use_bidirectional_attention' is true")]
    [InlineData("Gemma3ForCausalLM", "\"sliding_window_pattern\": 0", "'sliding_window_pattern' must be positive")]
    [InlineData("Gemma3ForCausalLM", "\"rope_parameters\": {\"rope_type\": \"default\", \"rope_theta\": 10000.0}", "one dict per layer type")]
    [InlineData("Gemma3ForCausalLM", "\"rope_parameters\": {\"full_attention\": {\"rope_type\": \"linear\"}}", "the full_attention layers")]
    [InlineData("Gemma3ForCausalLM", "\"rope_local_base_freq\": -1", "'rope_theta' must be positive")]
    public void Gemma_bad_values_name_the_field(string architecture, string extra, string expected)
    {
        var e = Assert.Throws<ModelConfigException>(() => ModelConfig.Parse(ConfigSamples.Minimal(architecture, extra)));
        Assert.Contains(expected, e.Message, StringComparison.Ordinal);
    }

    // quantization_config of formats Celer does not run yet, as 3-bit GPTQ and llm-compressor's NVFP4 write it; MXFP4 outside gpt-oss.
    [Theory]
    [InlineData("{\"quant_method\": \"gptq\", \"bits\": 3, \"group_size\": 128, \"desc_act\": false}", "gptq bits 3")]
    [InlineData("{\"quant_method\": \"compressed-tensors\", \"format\": \"nvfp4-pack-quantized\", \"config_groups\": {\"group_0\": {\"targets\": [\"Linear\"], \"weights\": {\"num_bits\": 4, \"type\": \"float\", \"strategy\": \"tensor_group\", \"group_size\": 16}}}}", "format 'nvfp4-pack-quantized'")]
    [InlineData("{\"quant_method\": \"mxfp4\", \"modules_to_not_convert\": [\"lm_head\"]}", "'mxfp4', which Celer reads for gpt-oss's experts (GptOssForCausalLM) only, not LlamaForCausalLM")]
    [InlineData("{\"bits\": 4}", "no quant_method")]
    public void An_unsupported_quantization_is_refused_naming_it(string quantization, string expected)
    {
        var e = Assert.Throws<ModelConfigException>(() => ModelConfig.Parse(ConfigSamples.Minimal("LlamaForCausalLM", $"\"quantization_config\": {quantization}")));
        Assert.Contains(expected, e.Message, StringComparison.Ordinal);
        Assert.Null(ModelConfig.Parse(ConfigSamples.Minimal("LlamaForCausalLM", "\"quantization_config\": null")).Quantization);
    }

    [Fact]
    public void Moe_fields_and_transformers_defaults_per_architecture()
    {
        // Mixtral-8x7B's config: 8 experts of intermediate_size, top 2, always renormalized, every layer sparse.
        var mixtral = ModelConfig.Parse(ConfigSamples.Minimal("MixtralForCausalLM", "\"num_local_experts\": 8, \"num_experts_per_tok\": 2")).Moe!;
        Assert.Equal((8, 2, 128, true, 0), (mixtral.NumExperts, mixtral.TopK, mixtral.IntermediateSize, mixtral.NormalizeTopK, mixtral.SharedExpertIntermediateSize));
        Assert.Equal([true, true], mixtral.SparseLayers);

        // Qwen1.5-MoE-A2.7B's defaults: 60 experts, top 4, 1408 wide, a 5632-wide shared expert, no renormalization.
        var qwen2 = ModelConfig.Parse(ConfigSamples.Minimal("Qwen2MoeForCausalLM", "\"num_hidden_layers\": 4"));
        Assert.Equal((60, 4, 1408, false, 5632), (qwen2.Moe!.NumExperts, qwen2.Moe.TopK, qwen2.Moe.IntermediateSize, qwen2.Moe.NormalizeTopK, qwen2.Moe.SharedExpertIntermediateSize));
        Assert.True(qwen2.HasQkvBias);
        Assert.False(qwen2.HasOutputProjectionBias);
        Assert.False(ModelConfig.Parse(ConfigSamples.Minimal("Qwen2MoeForCausalLM", "\"qkv_bias\": false")).HasQkvBias);

        // Qwen3-30B-A3B-like: dense layers from mlp_only_layers and decoder_sparse_step.
        var qwen3 = ModelConfig.Parse(ConfigSamples.Minimal("Qwen3MoeForCausalLM",
            "\"num_hidden_layers\": 6, \"num_experts\": 128, \"num_experts_per_tok\": 8, \"moe_intermediate_size\": 768, \"norm_topk_prob\": true, \"decoder_sparse_step\": 2, \"mlp_only_layers\": [3]")).Moe!;
        Assert.Equal((128, 8, 768, true, 0), (qwen3.NumExperts, qwen3.TopK, qwen3.IntermediateSize, qwen3.NormalizeTopK, qwen3.SharedExpertIntermediateSize));
        Assert.Equal([false, true, false, false, false, true], qwen3.SparseLayers);

        // Dense architectures never read MoE fields.
        Assert.Null(ModelConfig.Parse(ConfigSamples.Minimal("LlamaForCausalLM", "\"num_experts\": 8")).Moe);
    }

    [Fact]
    public void Gpt_oss_defaults_are_transformers_when_fields_are_absent()
    {
        // GptOssConfig: head_dim 64 (not hidden / heads), a 128-token window on layers 0, 2, 4, …, biases on all four
        // attention projections, eps 1e-5, 128 experts of intermediate_size, top 4 softmaxed (= renormalized), limit 7.
        var c = ModelConfig.Parse(ConfigSamples.Minimal("GptOssForCausalLM", "\"num_hidden_layers\": 3, \"hidden_size\": 90"));
        Assert.Equal((64, 128, 1e-5), (c.HeadDim, c.SlidingWindow, c.RmsNormEps));
        Assert.Equal([true, false, true], c.SlidingLayers);
        Assert.True(c.HasQkvBias && c.HasOutputProjectionBias);
        Assert.Equal((128, 4, 128, true, 7f), (c.Moe!.NumExperts, c.Moe.TopK, c.Moe.IntermediateSize, c.Moe.NormalizeTopK, c.Moe.SwigluLimit));
        Assert.Equal([true, true, true], c.Moe.SparseLayers);

        // gpt-oss-20b's fields as published (experts_per_token is the older name of num_experts_per_tok).
        var oss = ModelConfig.Parse(ConfigSamples.Minimal("GptOssForCausalLM",
            "\"head_dim\": 16, \"sliding_window\": 12, \"num_local_experts\": 32, \"experts_per_token\": 2, \"swiglu_limit\": 3.5, \"attention_bias\": false, " +
            "\"layer_types\": [\"full_attention\", \"sliding_attention\"]"));
        Assert.Equal((16, 12, 32, 2, 3.5f), (oss.HeadDim, oss.SlidingWindow, oss.Moe!.NumExperts, oss.Moe.TopK, oss.Moe.SwigluLimit));
        Assert.Equal([false, true], oss.SlidingLayers);
        Assert.False(oss.HasQkvBias || oss.HasOutputProjectionBias);
        Assert.Equal(4, ModelConfig.Parse(ConfigSamples.Minimal("GptOssForCausalLM", "\"num_experts_per_tok\": 4, \"experts_per_token\": 2")).Moe!.TopK);

        Assert.Null(ModelConfig.Parse(ConfigSamples.Minimal("MixtralForCausalLM")).Moe!.SwigluLimit);
    }

    [Theory]
    [InlineData("MixtralForCausalLM", "\"num_local_experts\": 0", "'num_local_experts' must be positive")]
    [InlineData("MixtralForCausalLM", "\"num_experts_per_tok\": 9", "'num_experts_per_tok' must be between 1 and 'num_local_experts' (8)")]
    [InlineData("Qwen3MoeForCausalLM", "\"num_experts_per_tok\": 0", "'num_experts_per_tok' must be between 1")]
    [InlineData("Qwen3MoeForCausalLM", "\"moe_intermediate_size\": -1", "intermediate size must be positive")]
    [InlineData("Qwen2MoeForCausalLM", "\"shared_expert_intermediate_size\": -5", "'shared_expert_intermediate_size' must not be negative")]
    [InlineData("Qwen2MoeForCausalLM", "\"decoder_sparse_step\": 0", "'decoder_sparse_step' must be positive")]
    [InlineData("Qwen2MoeForCausalLM", "\"mlp_only_layers\": [2]", "'mlp_only_layers' must list layer indices between 0 and 1")]
    [InlineData("Qwen2MoeForCausalLM", "\"mlp_only_layers\": \"0\"", "'mlp_only_layers' must list")]
    [InlineData("MixtralForCausalLM", "\"hidden_act\": \"gelu\"", "'hidden_act' must be 'silu' for MixtralForCausalLM")]
    [InlineData("GptOssForCausalLM", "\"swiglu_limit\": 0", "'swiglu_limit' must be positive and finite")]
    [InlineData("GptOssForCausalLM", "\"num_local_experts\": 2", "'num_experts_per_tok' must be between 1 and 'num_local_experts' (2)")]
    public void Moe_bad_values_name_the_field(string architecture, string extra, string expected)
    {
        var e = Assert.Throws<ModelConfigException>(() => ModelConfig.Parse(ConfigSamples.Minimal(architecture, extra)));
        Assert.Contains(expected, e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Hf_overrides_replace_top_level_fields_before_anything_is_read()
    {
        var overrides = (System.Text.Json.Nodes.JsonObject)System.Text.Json.Nodes.JsonNode.Parse(
            "{\"architectures\": [\"LlamaForCausalLM\"], \"max_position_embeddings\": 512, \"rope_scaling\": {\"rope_type\": \"linear\", \"factor\": 2.0}}")!;
        var c = ModelConfig.Parse(ConfigSamples.Minimal("MyCompanyLlamaClone"), overrides);
        Assert.Equal(("LlamaForCausalLM", 512), (c.Architecture, c.MaxPositionEmbeddings));
        Assert.Equal(2.0, c.Rope.Factor);
        Assert.Equal("MyCompanyLlamaClone", ModelConfig.Parse(ConfigSamples.Minimal("MyCompanyLlamaClone")).Architecture);

        // Overriding a config that writes a field twice: refused with the config error, not an unhandled exception.
        Assert.Throws<ModelConfigException>(() => ModelConfig.Parse(ConfigSamples.Minimal(extra: "\"vocab_size\": 7"), overrides));
    }

    [Fact]
    public void Qwen2_has_qkv_bias_and_slides_only_when_switched_on()
    {
        var c = ModelConfig.Parse(ConfigSamples.Qwen25Yarn);
        Assert.True(c.HasQkvBias);
        Assert.False(c.HasOutputProjectionBias);
        Assert.Null(c.SlidingWindow);
        Assert.Equal(128, c.HeadDim);

        var sliding = ModelConfig.Parse(ConfigSamples.Qwen25Yarn.Replace("\"use_sliding_window\": false", "\"use_sliding_window\": true"));
        Assert.Equal(131072, sliding.SlidingWindow);
    }

    [Fact]
    public void Llama_attention_bias_applies_to_all_projections()
    {
        var c = ModelConfig.Parse(ConfigSamples.Minimal(extra: "\"attention_bias\": true, \"mlp_bias\": true"));
        Assert.True(c.AttentionBias);
        Assert.True(c.HasQkvBias);
        Assert.True(c.HasOutputProjectionBias);
        Assert.True(c.MlpBias);
    }

    [Fact]
    public void Defaults_apply_when_optional_fields_are_absent_or_null()
    {
        var c = ModelConfig.Parse(ConfigSamples.Minimal(extra: "\"num_key_value_heads\": null, \"head_dim\": null"));
        Assert.Equal(4, c.NumKeyValueHeads);
        Assert.Equal(16, c.HeadDim);
        Assert.Equal(1e-6, c.RmsNormEps);
        Assert.False(c.TieWordEmbeddings);
        Assert.Equal(HiddenActivation.Silu, c.HiddenAct);
        Assert.Null(c.TorchDtype);
        Assert.Null(c.BosTokenId);
        Assert.Empty(c.EosTokenIds);
        Assert.Equal(new RopeParameters(), c.Rope);
    }

    [Fact]
    public void Unknown_architecture_is_parsed_for_the_registry_to_judge()
    {
        var c = ModelConfig.Parse(ConfigSamples.Minimal("Gemma2ForCausalLM", "\"hidden_act\": \"gelu_pytorch_tanh\", \"torch_dtype\": \"float16\""));
        Assert.Equal("Gemma2ForCausalLM", c.Architecture);
        Assert.Equal(HiddenActivation.GeluTanh, c.HiddenAct);
        Assert.Equal(DType.F16, c.TorchDtype);
    }

    [Theory]
    [InlineData("\"num_key_value_heads\": 3", "'num_key_value_heads'")]
    [InlineData("\"num_key_value_heads\": 0", "'num_key_value_heads'")]
    [InlineData("\"hidden_act\": \"gelu\"", "'hidden_act' must be 'silu' for LlamaForCausalLM")]
    [InlineData("\"hidden_act\": \"relu2\"", "'hidden_act' value 'relu2' is not supported")]
    [InlineData("\"head_dim\": -8", "'head_dim'")]
    [InlineData("\"rms_norm_eps\": 0", "'rms_norm_eps'")]
    [InlineData("\"sliding_window\": 0", "'sliding_window'")]
    [InlineData("\"torch_dtype\": \"float8_e4m3fn\"", "'torch_dtype' value 'float8_e4m3fn'")]
    [InlineData("\"dtype\": \"int8\"", "'dtype' value 'int8'")]
    [InlineData("\"eos_token_id\": \"</s>\"", "'eos_token_id' must be an integer")]
    [InlineData("\"tie_word_embeddings\": \"yes\"", "'tie_word_embeddings' must be true or false")]
    public void Invalid_values_name_the_field(string extra, string expected)
    {
        var e = Assert.Throws<ModelConfigException>(() => ModelConfig.Parse(ConfigSamples.Minimal(extra: extra)));
        Assert.Contains(expected, e.Message);
    }

    [Theory]
    [InlineData("\"hidden_size\": 64", "\"hidden_size\": -64", "'hidden_size' must be positive")]
    [InlineData("\"hidden_size\": 64", "\"hidden_size\": \"64\"", "'hidden_size' must be an integer")]
    [InlineData("\"hidden_size\": 64", "\"hidden_size\": 64.5", "'hidden_size' must be an integer")]
    [InlineData("\"hidden_size\": 64", "\"hidden_size\": 66", "'hidden_size' (66) is not divisible by 'num_attention_heads' (4)")]
    [InlineData("\"vocab_size\": 100,", "", "required field 'vocab_size' is missing")]
    [InlineData("\"architectures\": [\"LlamaForCausalLM\"],", "\"architectures\": [],", "'architectures'")]
    public void Broken_required_fields_name_the_field(string find, string replace, string expected)
    {
        var e = Assert.Throws<ModelConfigException>(() => ModelConfig.Parse(ConfigSamples.Minimal().Replace(find, replace)));
        Assert.Contains(expected, e.Message);
    }

    [Fact]
    public void Integral_floats_are_accepted_for_integer_fields()
    {
        var c = ModelConfig.Parse(ConfigSamples.Minimal().Replace("\"hidden_size\": 64", "\"hidden_size\": 64.0"));
        Assert.Equal(64, c.HiddenSize);
    }

    [Theory]
    [InlineData("{\"architectures\": ")]
    [InlineData("[1, 2]")]
    public void Non_object_json_is_a_config_error(string json)
    {
        var e = Assert.Throws<ModelConfigException>(() => ModelConfig.Parse(json));
        Assert.Contains("config.json", e.Message);
    }

    [Fact]
    public void Load_reads_config_json_from_the_directory()
    {
        string dir = Path.Combine(Path.GetTempPath(), "celer-config-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(dir);
        try
        {
            var missing = Assert.Throws<ModelConfigException>(() => ModelConfig.Load(dir));
            Assert.Contains("config.json not found", missing.Message);

            File.WriteAllText(Path.Combine(dir, "config.json"), ConfigSamples.Mistral);
            Assert.Equal("MistralForCausalLM", ModelConfig.Load(dir).Architecture);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }
}
