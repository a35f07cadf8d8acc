using System.Text.Json.Nodes;
using Celer.Models.Config;
using Celer.Models.Weights;

namespace Celer.Engine.Tests.Support;

/// <summary>
/// Writes an EAGLE or EAGLE-3 head with random fp32 weights for a target model, in the public checkpoint layouts (EAGLE-3:
/// SpecForge's <c>midlayer.</c> names, a draft vocabulary of every other target id with its <c>d2t</c>, explicit auxiliary
/// layers; EAGLE-1: <c>layers.0.</c> without an input norm, <c>fc</c> with a bias), with a config.json whose
/// max_position_embeddings is below what the tests serve, so the head's RoPE must reach past it.
/// </summary>
internal static class RandomEagleHead
{
    public static string Write(string targetDir, EagleKind kind, int seed = 11)
    {
        ModelConfig target = ModelConfig.Load(targetDir);
        string dir = Directory.CreateTempSubdirectory("celer-eagle-").FullName;
        int hidden = target.HiddenSize, heads = target.NumAttentionHeads, kvHeads = target.NumKeyValueHeads, headDim = target.HeadDim;
        int intermediate = 2 * hidden, qDim = heads * headDim, kvDim = kvHeads * headDim;
        int draftVocab = kind == EagleKind.Eagle3 ? target.VocabSize / 2 : target.VocabSize;
        int layers = target.NumHiddenLayers;
        int[] aux = [.. new[] { 0, layers / 2, layers - 1 }.Distinct()];
        var random = new Random(seed);
        var tensors = new List<(string, DType, int[], byte[])>();

        void Matrix(string name, int rows, int cols)
        {
            float bound = 1f / MathF.Sqrt(cols);
            Add(name, [rows, cols], () => (float)(random.NextDouble() * 2 - 1) * bound);
        }

        void Norm(string name) => Add(name, [hidden], () => 1f + (float)(random.NextDouble() * 0.2 - 0.1));

        void Add(string name, int[] shape, Func<float> value)
        {
            float[] values = new float[shape.Aggregate(1, (a, b) => a * b)];
            for (int i = 0; i < values.Length; i++)
            {
                values[i] = value();
            }

            tensors.Add((name, DType.F32, shape, System.Runtime.InteropServices.MemoryMarshal.AsBytes(values.AsSpan()).ToArray()));
        }

        string layer = kind == EagleKind.Eagle3 ? "midlayer." : "layers.0.";
        int attentionInput = kind == EagleKind.Eagle3 ? 2 * hidden : hidden;
        Matrix(layer + "self_attn.q_proj.weight", qDim, attentionInput);
        Matrix(layer + "self_attn.k_proj.weight", kvDim, attentionInput);
        Matrix(layer + "self_attn.v_proj.weight", kvDim, attentionInput);
        Matrix(layer + "self_attn.o_proj.weight", hidden, qDim);
        Norm(layer + "post_attention_layernorm.weight");
        Matrix(layer + "mlp.gate_proj.weight", intermediate, hidden);
        Matrix(layer + "mlp.up_proj.weight", intermediate, hidden);
        Matrix(layer + "mlp.down_proj.weight", hidden, intermediate);
        if (kind == EagleKind.Eagle3)
        {
            Matrix("fc.weight", hidden, aux.Length * hidden);
            Norm(layer + "input_layernorm.weight");
            Norm(layer + "hidden_norm.weight");
            Norm("norm.weight");
            Matrix("lm_head.weight", draftVocab, hidden);
            long[] d2t = [.. Enumerable.Range(0, draftVocab).Select(i => (long)i)];   // draft id i is target id 2i
            tensors.Add(("d2t", DType.I64, [draftVocab], System.Runtime.InteropServices.MemoryMarshal.AsBytes(d2t.AsSpan()).ToArray()));
        }
        else
        {
            Matrix("fc.weight", hidden, 2 * hidden);
            Add("fc.bias", [hidden], () => (float)(random.NextDouble() * 0.2 - 0.1));
        }

        SafetensorsWriter.Write(Path.Combine(dir, "model.safetensors"), tensors);
        var config = new JsonObject
        {
            ["architectures"] = new JsonArray(kind == EagleKind.Eagle3 ? "LlamaForCausalLMEagle3" : "LlamaForCausalLM"),
            ["model_type"] = "llama",
            ["hidden_size"] = hidden,
            ["intermediate_size"] = intermediate,
            ["num_attention_heads"] = heads,
            ["num_key_value_heads"] = kvHeads,
            ["head_dim"] = headDim,
            ["num_hidden_layers"] = 1,
            ["rms_norm_eps"] = 1e-5,
            ["max_position_embeddings"] = 32,
            ["rope_theta"] = 10000.0,
            ["vocab_size"] = target.VocabSize,
            ["torch_dtype"] = "float32",
        };
        if (kind == EagleKind.Eagle3)
        {
            config["draft_vocab_size"] = draftVocab;
            config["eagle_config"] = new JsonObject { ["eagle_aux_hidden_state_layer_ids"] = new JsonArray([.. aux.Select(l => (JsonNode)l)]) };
        }

        File.WriteAllText(Path.Combine(dir, "config.json"), config.ToJsonString());
        return dir;
    }
}
