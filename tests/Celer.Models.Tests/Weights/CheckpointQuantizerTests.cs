using Celer.Models.Config;
using Celer.Models.Quantization;
using Celer.Models.Weights;
using Celer.TestSupport;
using Xunit;

namespace Celer.Models.Tests.Weights;

/// <summary>
/// <c>celer quantize</c>'s checkpoints read back through the same readers as any checkpoint of their format: the config
/// names the scheme, every projection dequantizes to within half a quantization step of the original weight (a code,
/// zero point or scale stored in the wrong place is off by the weight's whole range), and every other tensor is the
/// original byte for byte.
/// </summary>
public sealed class CheckpointQuantizerTests
{
    private const string Model = "llama-gqa-bf16-v4config";   // hidden 64, intermediate 176, bf16

    [Theory]
    [InlineData("fp8", "compressed-tensors", 16f)]      // E4M3 spacing at its top (32 at 448): 1/16 of the row's absmax at worst
    [InlineData("int8", "compressed-tensors", 254f)]    // half a step of 2·absmax / 255, with bf16 scale rounding
    [InlineData("gptq-rtn", "gptq", 14.5f)]             // half a step of 2·absmax / 15, with fp16 scale rounding
    [InlineData("awq-rtn", "awq", 14.5f)]               // half a step of (max − min) / 15 ≤ 2·absmax / 15
    public void Each_projection_is_within_half_a_step_and_the_rest_is_copied(string method, string quantMethod, float absMaxPerError)
    {
        string source = Path.Combine(RepoPaths.FixtureModels, Model);
        using var output = new TempDirectory();
        int count = CheckpointQuantizer.Run(source, output.Path, CheckpointQuantizer.ParseMethod(method), groupSize: 16);

        ModelConfig config = ModelConfig.Load(output.Path);
        Assert.Equal(quantMethod, config.Quantization!.Method);
        Assert.Equal(7 * config.NumHiddenLayers, count);
        Assert.True(File.Exists(Path.Combine(output.Path, "generation_config.json")));

        using var original = SafetensorsWeightSource.Open(source);
        using var stored = SafetensorsWeightSource.Open(output.Path);
#pragma warning disable CA2000 // the quantized source owns the file source and disposes it
        using IWeightSource read = QuantizedWeights.Wrap(SafetensorsWeightSource.Open(output.Path), config.Quantization);
#pragma warning restore CA2000
        foreach (string name in original.Names)
        {
            WeightTensor before = original.Get(name);
            bool projection = name.EndsWith("_proj.weight", StringComparison.Ordinal);
            if (!projection)
            {
                Assert.Equal(before.Bytes.ToArray(), stored.Get(name).Bytes.ToArray());
                continue;
            }

            int rows = before.Shape[0], columns = before.Shape[1];
            var expected = new float[rows * columns];
            HalfConversions.ToFloat(before.DType, before.Bytes, expected);
            float[] actual = read.Get(name, rows, columns).AsSpan<float>().ToArray();
            for (int r = 0; r < rows; r++)
            {
                float absMax = Enumerable.Range(0, columns).Max(c => MathF.Abs(expected[(r * columns) + c]));
                for (int c = 0; c < columns; c++)
                {
                    float error = MathF.Abs(actual[(r * columns) + c] - expected[(r * columns) + c]);
                    Assert.True(error <= absMax / absMaxPerError, $"{method} {name}[{r}, {c}]: {actual[(r * columns) + c]} for {expected[(r * columns) + c]} (row absmax {absMax})");
                }
            }
        }
    }

    [Fact]
    public void Shapes_the_format_cannot_pack_are_refused_before_anything_is_written()
    {
        string source = Path.Combine(RepoPaths.FixtureModels, Model);
        string output = Path.Combine(Path.GetTempPath(), "celer-quantize-" + Guid.NewGuid().ToString("N"));
        var e = Assert.Throws<ModelLoadException>(() => CheckpointQuantizer.Run(source, output, QuantizeMethod.GptqRtn, groupSize: 128));
        Assert.Contains("'model.layers.0.mlp.down_proj.weight' has 176 input columns, not a multiple of 128: --group-size 128 must divide them", e.Message, StringComparison.Ordinal);
        Assert.False(Directory.Exists(output));

        string quantized = Path.Combine(RepoPaths.FixtureModels, "llama-gptq-int4-g16-actorder");
        Assert.Contains("already quantized (gptq)", Assert.Throws<ModelLoadException>(() => CheckpointQuantizer.Run(quantized, output, QuantizeMethod.Fp8)).Message, StringComparison.Ordinal);
        Assert.Throws<ArgumentException>(() => CheckpointQuantizer.ParseMethod("nf4"));
    }
}
