using System.Text.Json.Nodes;
using Celer.Models.Weights;

namespace Celer.TestSupport;

/// <summary>
/// An MXFP4 encoder from the OCP Microscaling definition, for tests that write MXFP4 checkpoints: a block's E8M0 scale is
/// 2^(⌊log2 max|x|⌋ − 2) (E2M1's largest exponent is 2), each value the nearest E2M1 number of x / scale, saturated at ±6.
/// </summary>
public static class Mxfp4Packing
{
    private static readonly float[] E2M1 = [0f, 0.5f, 1f, 1.5f, 2f, 3f, 4f, 6f, -0f, -0.5f, -1f, -1.5f, -2f, -3f, -4f, -6f];

    /// <summary>The E8M0 scale byte of a block.</summary>
    public static byte Scale(ReadOnlySpan<float> block)
    {
        float max = 0;
        foreach (float x in block)
        {
            max = Math.Max(max, Math.Abs(x));
        }

        int exponent = max == 0 ? -127 : (int)Math.Floor(Math.Log2(max)) - 2;
        return (byte)Math.Clamp(exponent + 127, 0, 254);
    }

    /// <summary>The code (0–15) of the E2M1 number nearest x / 2^(scale − 127).</summary>
    public static int NearestCode(float x, byte scale)
    {
        float scaled = x / MathF.Pow(2, scale - 127);
        int best = 0;
        for (int code = 1; code < 16; code++)
        {
            if (Math.Abs(E2M1[code] - scaled) < Math.Abs(E2M1[best] - scaled))
            {
                best = code;
            }
        }

        return best;
    }

    /// <summary>What a code stands for under a scale.</summary>
    public static float Value(int code, byte scale) => E2M1[code] * MathF.Pow(2, scale - 127);

    /// <summary>
    /// Two checkpoints made from a bf16 gpt-oss checkpoint in <paramref name="dir"/>, as its published checkpoints store
    /// the experts ([experts, out, in / 32, 16] code blocks with E8M0 scales, output-major, where the bf16 layout is
    /// input-major with gate and up interleaved): in <paramref name="mxfp4Dir"/> every expert packed into MXFP4 (its config
    /// naming quant_method mxfp4), and in <paramref name="valuesDir"/> the bf16 values those codes stand for.
    /// </summary>
    public static void WriteGptOssCheckpoints(string dir, string mxfp4Dir, string valuesDir)
    {
        var config = JsonNode.Parse(File.ReadAllText(Path.Combine(dir, "config.json")))!.AsObject();
        config["quantization_config"] = JsonNode.Parse(
            """{"quant_method": "mxfp4", "modules_to_not_convert": ["model.layers.*.self_attn", "model.layers.*.mlp.router", "model.embed_tokens", "lm_head"]}""");
        File.WriteAllText(Path.Combine(mxfp4Dir, "config.json"), config.ToJsonString());
        File.Copy(Path.Combine(dir, "config.json"), Path.Combine(valuesDir, "config.json"));
        using var original = SafetensorsWeightSource.Open(dir);
        var packed = new List<(string, DType, int[], byte[])>();
        var values = new List<(string, DType, int[], byte[])>();
        foreach (string name in original.Names)
        {
            WeightTensor t = original.Get(name);
            if (!name.EndsWith("_proj", StringComparison.Ordinal) || !name.Contains(".experts.", StringComparison.Ordinal))
            {
                packed.Add((name, t.DType, t.Shape, t.Bytes.ToArray()));
                values.Add((name, t.DType, t.Shape, t.Bytes.ToArray()));
                continue;
            }

            // Stored [experts, in, out]; MXFP4 blocks run along the inputs of each output row.
            int experts = t.Shape[0], inputs = t.Shape[1], outputs = t.Shape[2];
            ushort[] stored = t.AsSpan<ushort>().ToArray();
            var blocks = new byte[experts * outputs * inputs / 2];
            var scales = new byte[experts * outputs * inputs / 32];
            var decoded = new ushort[stored.Length];
            for (int e = 0; e < experts; e++)
            {
                for (int o = 0; o < outputs; o++)
                {
                    for (int g = 0; g < inputs / 32; g++)
                    {
                        int block = ((e * outputs) + o) * (inputs / 32) + g;
                        int Index(int i) => ((e * inputs) + (32 * g) + i) * outputs + o;
                        float[] x = [.. Enumerable.Range(0, 32).Select(i => HalfConversions.Bf16ToFloat(stored[Index(i)]))];
                        scales[block] = Scale(x);
                        for (int i = 0; i < 32; i++)
                        {
                            int code = NearestCode(x[i], scales[block]);
                            blocks[(block * 16) + (i / 2)] |= (byte)(i % 2 == 0 ? code : code << 4);
                            decoded[Index(i)] = HalfConversions.FloatToBf16(Value(code, scales[block]));
                        }
                    }
                }
            }

            packed.Add((name + "_blocks", DType.U8, [experts, outputs, inputs / 32, 16], blocks));
            packed.Add((name + "_scales", DType.U8, [experts, outputs, inputs / 32], scales));
            values.Add((name, DType.BF16, t.Shape, [.. decoded.SelectMany(BitConverter.GetBytes)]));
        }

        SafetensorsWriter.Write(Path.Combine(mxfp4Dir, "model.safetensors"), packed);
        SafetensorsWriter.Write(Path.Combine(valuesDir, "model.safetensors"), values);
    }
}
