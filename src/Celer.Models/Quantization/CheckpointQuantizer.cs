using System.Text.Json;
using System.Text.Json.Nodes;
using Celer.Models.Config;
using Celer.Models.Weights;

namespace Celer.Models.Quantization;

/// <summary>The formats <c>celer quantize</c> writes.</summary>
public enum QuantizeMethod
{
    /// <summary>compressed-tensors FP8: E4M3 weights with one scale per output row, inputs dynamic per token (llm-compressor's FP8_DYNAMIC).</summary>
    Fp8,

    /// <summary>compressed-tensors W8A16: 8-bit integer weights, one symmetric scale per output row (pack-quantized).</summary>
    Int8,

    /// <summary>GPTQ 4-bit, symmetric, desc_act false, round to nearest (no calibration).</summary>
    GptqRtn,

    /// <summary>AWQ 4-bit GEMM layout with zero points, round to nearest (no activation-aware scaling).</summary>
    AwqRtn,
}

/// <summary>
/// Writes a quantized copy of an unquantized checkpoint (<c>celer quantize</c>): each projection's weight (q/k/v/o,
/// gate/up/down and their fused forms, MoE experts stored per expert included; embeddings, norms, lm_head, routers and
/// experts stored fused as 3-D tensors stay as stored) in the method's
/// format, every other tensor copied, in safetensors shards of at most 5 GB with an index as transformers writes them,
/// config.json with the method's <c>quantization_config</c>, and the directory's other files (tokenizer, generation
/// config, chat template) copied. The output is what the tools that make such checkpoints write, so Celer, vLLM and
/// transformers read it as theirs.
/// </summary>
public static class CheckpointQuantizer
{
    private const long ShardBytes = 5_000_000_000;

    /// <summary>The method of <c>--method</c>: fp8, int8, gptq-rtn, awq-rtn.</summary>
    public static QuantizeMethod ParseMethod(string name) => name.ToLowerInvariant() switch
    {
        "fp8" => QuantizeMethod.Fp8,
        "int8" => QuantizeMethod.Int8,
        "gptq-rtn" => QuantizeMethod.GptqRtn,
        "awq-rtn" => QuantizeMethod.AwqRtn,
        _ => throw new ArgumentException($"--method {name}: expected fp8, int8, gptq-rtn or awq-rtn", nameof(name)),
    };

    /// <summary>Quantizes <paramref name="modelDir"/> into <paramref name="outputDir"/>; returns the number of weights quantized.</summary>
    /// <param name="groupSize">Input columns per scale of gptq-rtn and awq-rtn (vLLM's kernels take 32, 64, 128; -1: per channel for gptq).</param>
    public static int Run(string modelDir, string outputDir, QuantizeMethod method, int groupSize = 128, Action<string>? log = null)
    {
        ModelConfig config = ModelConfig.Load(modelDir);
        if (config.Quantization is { } existing)
        {
            throw new ModelLoadException($"'{modelDir}' is already quantized ({existing.Method}); celer quantize takes an unquantized checkpoint");
        }

        if (method is QuantizeMethod.GptqRtn or QuantizeMethod.AwqRtn && (groupSize == 0 || groupSize < -1 || (method == QuantizeMethod.AwqRtn && groupSize == -1)))
        {
            throw new ArgumentException($"--group-size {groupSize}: a positive number of input columns per scale" + (method == QuantizeMethod.GptqRtn ? ", or -1 for one per output row" : ""), nameof(groupSize));
        }

        if (Path.GetFullPath(modelDir) == Path.GetFullPath(outputDir))
        {
            throw new ArgumentException("the output directory must not be the model directory", nameof(outputDir));
        }

        // The model dtype the checkpoint is stored in: compressed-tensors keeps its scales in it.
        DType modelDType = config.TorchDtype ?? DType.BF16;
        using var source = SafetensorsWeightSource.Open(modelDir);
        // FP8 reads the weights through the online quantizer (the codes and scales --quantization fp8 serves), over a
        // second mapping of the files that it owns.
#pragma warning disable CA2000 // the OnlineFp8Source owns and disposes its source
        using var fp8 = method == QuantizeMethod.Fp8 ? new OnlineFp8Source(SafetensorsWeightSource.Open(modelDir), Fp8WeightScales.PerChannel) : null;
#pragma warning restore CA2000

        var shards = new List<(string TempPath, List<string> Names)>();
        var pending = new List<SafetensorsWriter.TensorData>();
        long pendingBytes = 0;
        int quantized = 0;

        void Flush()
        {
            if (pending.Count == 0)
            {
                return;
            }

            string temp = Path.Combine(outputDir, $"shard-{shards.Count:D5}.tmp");
            SafetensorsWriter.Write(temp, pending, new Dictionary<string, string> { ["format"] = "pt" });
            shards.Add((temp, [.. pending.Select(t => t.Name)]));
            log?.Invoke($"wrote shard {shards.Count} ({pendingBytes / (double)(1L << 30):F2} GiB, {pending.Count} tensors)");
            pending.Clear();
            pendingBytes = 0;
        }

        void Add(SafetensorsWriter.TensorData tensor)
        {
            if (pendingBytes > 0 && pendingBytes + tensor.ByteLength > ShardBytes)
            {
                Flush();
            }

            pending.Add(tensor);
            pendingBytes += tensor.ByteLength;
        }

        string[] names = [.. source.Names.Order(StringComparer.Ordinal)];
        bool Quantized(WeightTensor t) => t.Name.EndsWith(".weight", StringComparison.Ordinal) && OnlineFp8Source.IsProjection(t.Name[..^".weight".Length])
            && t.Shape.Length == 2 && t.DType is DType.F32 or DType.BF16 or DType.F16;

        // Every shape is checked before anything is written.
        foreach (WeightTensor t in names.Select(n => source.Get(n)).Where(Quantized))
        {
            CheckShape(t, method, groupSize);
        }

        Directory.CreateDirectory(outputDir);

        foreach (string name in names)
        {
            WeightTensor stored = source.Get(name);
            string module = name.EndsWith(".weight", StringComparison.Ordinal) ? name[..^".weight".Length] : "";
            if (!Quantized(stored))
            {
                Add(Copy(stored));
                continue;
            }

            quantized++;
            if (fp8 is not null)
            {
                Add(Copy(fp8.Get(name)));
                Add(Copy(fp8.Get(module + ".weight_scale")));
                continue;
            }

            foreach (IntWeightWriter.Stored part in QuantizeInt(stored, method, groupSize, modelDType))
            {
                Add(new SafetensorsWriter.TensorData($"{module}.{part.Suffix}", part.DType, part.Shape, part.Data.Length, s => s.Write(part.Data)));
            }
        }

        Flush();
        WriteShardNames(outputDir, shards);
        WriteConfig(modelDir, outputDir, QuantizationConfigJson(method, groupSize));
        foreach (string file in Directory.EnumerateFiles(modelDir))
        {
            string fileName = Path.GetFileName(file);
            if (fileName != "config.json" && fileName != "model.safetensors.index.json" && !fileName.EndsWith(".safetensors", StringComparison.Ordinal))
            {
                File.Copy(file, Path.Combine(outputDir, fileName), overwrite: true);
            }
        }

        return quantized;
    }

    private static IntWeightWriter.Stored[] QuantizeInt(WeightTensor stored, QuantizeMethod method, int groupSize, DType modelDType)
    {
        int rows = stored.Shape[0], columns = stored.Shape[1];
        var values = new float[(long)rows * columns];
        HalfConversions.ToFloat(stored.DType, stored.Bytes, values);
        static float ToHalf(float v) => (float)(Half)v;
        switch (method)
        {
            case QuantizeMethod.GptqRtn:
                return IntWeightWriter.Gptq(IntWeightWriter.Quantize(values, rows, columns, 4, groupSize == -1 ? 0 : groupSize, symmetric: true, ToHalf), zerosMinusOne: true);
            case QuantizeMethod.AwqRtn:
                return IntWeightWriter.Awq(IntWeightWriter.Quantize(values, rows, columns, 4, groupSize, symmetric: false, ToHalf));
            default:
                DType scaleType = modelDType;
                Func<float, float> round = scaleType switch
                {
                    DType.BF16 => v => HalfConversions.Bf16ToFloat(HalfConversions.FloatToBf16(v)),
                    DType.F16 => ToHalf,
                    _ => v => v,
                };
                return IntWeightWriter.CompressedTensorsPacked(IntWeightWriter.Quantize(values, rows, columns, 8, 0, symmetric: true, round), scaleType);
        }
    }

    /// <summary>What the 4-bit formats' packing needs of a weight's shape (as vLLM's kernels do: whole groups).</summary>
    private static void CheckShape(WeightTensor t, QuantizeMethod method, int groupSize)
    {
        int rows = t.Shape[0], columns = t.Shape[1];
        if (method == QuantizeMethod.GptqRtn)
        {
            RequireDivisible(t, columns, 8, "input columns", "GPTQ packs 8 codes per 32-bit word along the input");
        }

        if (method == QuantizeMethod.AwqRtn)
        {
            RequireDivisible(t, rows, 8, "output rows", "AWQ packs 8 codes per 32-bit word along the output");
        }

        if (method is QuantizeMethod.GptqRtn or QuantizeMethod.AwqRtn && groupSize > 0)
        {
            RequireDivisible(t, columns, groupSize, "input columns", $"--group-size {groupSize} must divide them");
        }
    }

    private static void RequireDivisible(WeightTensor t, int count, int divisor, string what, string why)
    {
        if (count % divisor != 0)
        {
            throw new ModelLoadException($"'{t.Name}' has {count} {what}, not a multiple of {divisor}: {why}");
        }
    }

    /// <summary>A stored tensor copied as it is, straight from its mapped file.</summary>
    private static unsafe SafetensorsWriter.TensorData Copy(WeightTensor t) => new(t.Name, t.DType, t.Shape, t.ByteLength, stream =>
    {
        const int Chunk = 1 << 26;
        for (long offset = 0; offset < t.ByteLength; offset += Chunk)
        {
            stream.Write(new ReadOnlySpan<byte>((byte*)t.Data + offset, (int)Math.Min(Chunk, t.ByteLength - offset)));
        }
    });

    /// <summary>One shard: model.safetensors; more: model-0000i-of-0000n.safetensors and the index transformers writes.</summary>
    private static void WriteShardNames(string outputDir, List<(string TempPath, List<string> Names)> shards)
    {
        if (shards.Count == 1)
        {
            File.Move(shards[0].TempPath, Path.Combine(outputDir, "model.safetensors"), overwrite: true);
            return;
        }

        var weightMap = new JsonObject();
        long total = 0;
        for (int i = 0; i < shards.Count; i++)
        {
            string file = $"model-{i + 1:D5}-of-{shards.Count:D5}.safetensors";
            string path = Path.Combine(outputDir, file);
            File.Move(shards[i].TempPath, path, overwrite: true);
            total += new FileInfo(path).Length;
            foreach (string name in shards[i].Names)
            {
                weightMap[name] = file;
            }
        }

        var index = new JsonObject { ["metadata"] = new JsonObject { ["total_size"] = total }, ["weight_map"] = weightMap };
        File.WriteAllText(Path.Combine(outputDir, "model.safetensors.index.json"), index.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
    }

    private static void WriteConfig(string modelDir, string outputDir, JsonObject quantization)
    {
        JsonObject config = JsonNode.Parse(File.ReadAllText(Path.Combine(modelDir, "config.json")))?.AsObject()
            ?? throw new ModelConfigException("config.json is not a JSON object");
        config["quantization_config"] = quantization;
        File.WriteAllText(Path.Combine(outputDir, "config.json"), config.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
    }

    /// <summary>quantization_config as the tools that write each format put it in config.json.</summary>
    private static JsonObject QuantizationConfigJson(QuantizeMethod method, int groupSize)
    {
        JsonObject Scheme(int bits, string type, string strategy) => new()
        {
            ["num_bits"] = bits, ["type"] = type, ["symmetric"] = true, ["strategy"] = strategy, ["dynamic"] = false,
            ["group_size"] = null, ["block_structure"] = null, ["actorder"] = null, ["observer"] = "minmax",
        };
        JsonObject CompressedTensors(string format, JsonObject weights, JsonObject? inputs) => new()
        {
            ["quant_method"] = "compressed-tensors",
            ["format"] = format,
            ["quantization_status"] = "compressed",
            ["config_groups"] = new JsonObject
            {
                ["group_0"] = new JsonObject
                {
                    ["targets"] = new JsonArray("Linear"), ["weights"] = weights, ["input_activations"] = inputs,
                    ["output_activations"] = null, ["format"] = format,
                },
            },
            ["ignore"] = new JsonArray("lm_head"),
        };

        switch (method)
        {
            case QuantizeMethod.Fp8:
                JsonObject inputs = Scheme(8, "float", "token");
                inputs["dynamic"] = true;
                inputs["observer"] = null;
                return CompressedTensors("float-quantized", Scheme(8, "float", "channel"), inputs);
            case QuantizeMethod.Int8:
                return CompressedTensors("pack-quantized", Scheme(8, "int", "channel"), null);
            case QuantizeMethod.GptqRtn:
                return new JsonObject
                {
                    ["quant_method"] = "gptq", ["bits"] = 4, ["group_size"] = groupSize, ["desc_act"] = false, ["sym"] = true,
                    ["checkpoint_format"] = "gptq", ["lm_head"] = false, ["meta"] = new JsonObject { ["quantizer"] = new JsonArray("celer quantize (round to nearest)") },
                };
            default:
                return new JsonObject
                {
                    ["quant_method"] = "awq", ["bits"] = 4, ["group_size"] = groupSize, ["zero_point"] = true, ["version"] = "gemm",
                    ["modules_to_not_convert"] = null,
                };
        }
    }
}
