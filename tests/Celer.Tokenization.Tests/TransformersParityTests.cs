using System.Text.Json;
using Celer.TestSupport;

namespace Celer.Tokenization.Tests;

/// <summary>
/// Our tokenizers against Hugging Face transformers 5 itself (not only the tokenizers library): the ids and decodes that
/// transformers 5.17's AutoTokenizer gave for ~90 tricky texts, with and without special tokens, for each test-asset
/// tokenizer under the config.json <c>model_type</c>s it is served with (tests/fixtures/tokenizers-transformers5/, made by
/// tools/reference/tokenizer_reference.py on the GPU machine). The Llama 2 file under a Llama config is where
/// transformers rebuilds the pipeline from the class (42 of 180 cases differ from the file alone); under a Mistral
/// config it runs the file as written.
/// </summary>
public sealed class TransformersParityTests
{
    private static readonly string FixtureDirectory = Path.Combine(RepoPaths.Fixtures, "tokenizers-transformers5");

    public static TheoryData<string, string> Scenarios()
    {
        var data = new TheoryData<string, string>();
        foreach (string name in TestAssets.TokenizerNames)
        {
            using JsonDocument doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(FixtureDirectory, name + ".json")));
            foreach (JsonElement scenario in doc.RootElement.GetProperty("scenarios").EnumerateArray())
            {
                data.Add(name, scenario.GetProperty("model_type").GetString()!);
            }
        }

        return data;
    }

    [Theory]
    [MemberData(nameof(Scenarios))]
    public void Ids_and_decodes_match_transformers_5(string name, string modelType)
    {
        using JsonDocument doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(FixtureDirectory, name + ".json")));
        JsonElement scenario = doc.RootElement.GetProperty("scenarios").EnumerateArray().Single(s => s.GetProperty("model_type").GetString() == modelType);
        string dir = TestAssets.TokenizerDirectory(name);
        Tokenizer tokenizer = Tokenizer.FromFile(Path.Combine(dir, "tokenizer.json"), TokenizerConfig.Load(dir), modelType);
        var failures = new List<string>();
        foreach (JsonElement c in scenario.GetProperty("cases").EnumerateArray())
        {
            string text = c.GetProperty("text").GetString()!;
            bool special = c.GetProperty("add_special_tokens").GetBoolean();
            int[] expected = [.. c.GetProperty("ids").EnumerateArray().Select(e => e.GetInt32())];
            int[] actual = tokenizer.Encode(text, special);
            if (!actual.SequenceEqual(expected))
            {
                failures.Add($"encode {Show(text)} (special {special}): transformers [{string.Join(',', expected)}], Celer [{string.Join(',', actual)}]");
                continue;
            }

            foreach ((bool skip, string field) in new[] { (true, "decoded_skip_special"), (false, "decoded_keep_special") })
            {
                string want = c.GetProperty(field).GetString()!, got = tokenizer.Decode(expected, skip);
                if (got != want)
                {
                    failures.Add($"decode of {Show(text)} (skip special {skip}): transformers {Show(want)}, Celer {Show(got)}");
                }
            }
        }

        Assert.True(failures.Count == 0, $"{name} as {modelType}: {failures.Count} mismatches:\n{string.Join('\n', failures.Take(15))}");
    }

    private static string Show(string s) => JsonSerializer.Serialize(s.Length > 60 ? s[..60] + "…" : s);
}
