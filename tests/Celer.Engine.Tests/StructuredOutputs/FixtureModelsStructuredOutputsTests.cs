using System.Text.Json;
using System.Text.Json.Nodes;
using Celer.Engine.Execution;
using Celer.Models.Config;
using Celer.TestSupport;
using Json.Schema;

namespace Celer.Engine.Tests.StructuredOutputs;

/// <summary>
/// Structured outputs on every fixture model (each architecture and quantization; transformers-made random weights,
/// 512-token vocabularies and no tokenizer of their own). Each runs with a byte-level BPE tokenizer.json made here for
/// its vocabulary (ids 0–7 special, so every fixture's EOS is one; 256 byte tokens; 248 merges of JSON's characters), so
/// the grammar sees multi-byte tokens too. Greedy and sampled outputs of a finite schema must end and validate.
/// </summary>
public sealed class FixtureModelsStructuredOutputsTests
{
    private const string Schema = """
        {"type":"object","properties":{"a":{"type":"integer","minimum":0,"maximum":300},
         "tags":{"type":"array","items":{"enum":["tea","ant"]},"maxItems":3},"t":{"type":"boolean"}},"required":["a","tags","t"]}
        """;

    public static TheoryData<string> Models() => new(RepoPaths.FixtureModelNames());

    [Theory]
    [MemberData(nameof(Models))]
    public void Json_schema_outputs_end_and_validate(string name)
    {
        string source = Path.Combine(RepoPaths.FixtureModels, name);
        string model = Directory.CreateTempSubdirectory("celer-so-").FullName;
        try
        {
            foreach (string file in Directory.EnumerateFiles(source))
            {
                File.Copy(file, Path.Combine(model, Path.GetFileName(file)));
            }

            File.WriteAllText(Path.Combine(model, "tokenizer.json"), ByteLevelTokenizerJson.Value);
            ModelConfig config = ModelConfig.Load(model);
            using LlmEngine engine = ModelLoader.LoadOffline(new EngineArgs
            {
                Model = model, MaxModelLen = 128, MaxNumSeqs = 4, Seed = 1, Quantization = config.Quantization?.Method,
            }).Engine;
            var validator = JsonSchema.FromText(Schema);
            var random = new Random(name.Length);
            foreach (float temperature in (float[])[0f, 1f])
            {
                var sampling = new SamplingParams
                {
                    Temperature = temperature, MaxTokens = 100,
                    StructuredOutputs = new StructuredOutputsParams { Json = Schema, DisableAnyWhitespace = true },
                };
                var requests = Enumerable.Range(0, 3).Select(i => new GenerateRequest(
                    $"{temperature}-{i}", [.. Enumerable.Range(0, 8).Select(_ => random.Next(8, 512))], sampling with { Seed = i })).ToList();
                foreach (RequestOutput output in engine.Generate(requests))
                {
                    string text = string.Concat(output.Outputs.Select(o => o.TextDelta));
                    Assert.True(output.Outputs[^1].FinishReason == FinishReason.Stop, $"{name} t={temperature}: {output.Outputs[^1].FinishReason} after {text}");
                    using var document = JsonDocument.Parse(text);
                    Assert.True(validator.Evaluate(document.RootElement).IsValid, $"{name}: {text}");
                }
            }
        }
        finally
        {
            Directory.Delete(model, recursive: true);
        }
    }

    /// <summary>A byte-level BPE tokenizer of exactly 512 ids in Hugging Face's tokenizer.json format.</summary>
    private static readonly Lazy<string> ByteLevelTokenizerJson = new(() =>
    {
        string[] bytes = ByteLevelAlphabet();
        var vocab = new JsonObject();
        var added = new JsonArray();
        for (int id = 0; id < 8; id++)
        {
            string special = $"<|s{id}|>";
            vocab[special] = id;
            added.Add(new JsonObject { ["id"] = id, ["content"] = special, ["single_word"] = false, ["lstrip"] = false, ["rstrip"] = false, ["normalized"] = false, ["special"] = true });
        }

        for (int b = 0; b < 256; b++)
        {
            vocab[bytes[b]] = 8 + b;
        }

        // Merges of two of JSON's characters (space as the byte-level Ġ), in a fixed order, up to 512 ids.
        const string Alphabet = "{}[]\":, aetn0123";
        var merges = new JsonArray();
        int next = 8 + 256;
        foreach (char x in Alphabet)
        {
            foreach (char y in Alphabet)
            {
                if (next == 512)
                {
                    break;
                }

                string left = bytes[x], right = bytes[y];
                vocab[left + right] = next++;
                merges.Add($"{left} {right}");
            }
        }

        var byteLevel = new JsonObject { ["type"] = "ByteLevel", ["add_prefix_space"] = false, ["trim_offsets"] = true, ["use_regex"] = true };
        return new JsonObject
        {
            ["version"] = "1.0",
            ["added_tokens"] = added,
            ["normalizer"] = null,
            ["pre_tokenizer"] = byteLevel.DeepClone(),
            ["post_processor"] = null,
            ["decoder"] = byteLevel.DeepClone(),
            ["model"] = new JsonObject { ["type"] = "BPE", ["vocab"] = vocab, ["merges"] = merges },
        }.ToJsonString();
    });

    // GPT-2's bytes_to_unicode: printable Latin-1 bytes stand for themselves, the rest for U+0100 upwards in order.
    private static string[] ByteLevelAlphabet()
    {
        var map = new string[256];
        int shifted = 0;
        for (int b = 0; b < 256; b++)
        {
            bool printable = b is >= '!' and <= '~' or >= 0xA1 and <= 0xAC or >= 0xAE and <= 0xFF;
            map[b] = ((char)(printable ? b : 256 + shifted++)).ToString();
        }

        return map;
    }
}
