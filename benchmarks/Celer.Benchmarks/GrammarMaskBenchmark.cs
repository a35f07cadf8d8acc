using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Text.Json;
using System.Text.Json.Nodes;
using Celer.Grammars;
using Celer.Grammars.Json;
using Celer.Tokenization;

namespace Celer.Benchmarks;

/// <summary>
/// Structured outputs' host cost on real vocabularies (issue 14's targets: mask work ≤ 40 µs per token median with a
/// 128k vocabulary, compile ≤ 50 ms for typical schemas). For each tokenizer and each JSON schema of the test corpus
/// (tests/Celer.Grammars.Tests/Schemas): the compile time (schema → grammar → automaton → the masks of the start
/// states), then random walks through the grammar, timing per token what the engine does per step (the next-token
/// bitmask, then accepting the token drawn). A walk draws uniformly among the allowed tokens, which wanders further
/// through the grammar than a model does, so the cache sees fewer repeats than in serving. Writes
/// benchmarks/results/cpu-grammar-masks-&lt;date&gt;.json.
/// </summary>
internal static class GrammarMaskBenchmark
{
    public static string Run(IReadOnlyList<string> tokenizers, int walks, int maxTokens)
    {
        string root = ResultsWriter.RepositoryRoot();
        var schemas = Directory.GetFiles(Path.Combine(root, "tests", "Celer.Grammars.Tests", "Schemas"), "*.json").Order(StringComparer.Ordinal).ToArray();
        var results = new JsonArray();
        foreach (string name in tokenizers)
        {
            var tokenizer = Tokenizer.FromFile(Path.Combine(root, ".cache", "test-assets", "tokenizers", name, "tokenizer.json"));
            var clock = Stopwatch.StartNew();
            int eos = Enumerable.Range(0, tokenizer.VocabSize).First(tokenizer.IsSpecialToken);
            var vocabulary = new TokenVocabulary(tokenizer.TokenBytesInText(), [eos]);
            double vocabularyMs = clock.Elapsed.TotalMilliseconds;
            var perToken = new List<double>();
            var compiles = new List<double>();
            var perSchema = new JsonArray();
            foreach (string file in schemas)
            {
                var schema = JsonNode.Parse(File.ReadAllText(file))!;
                clock.Restart();
                CompiledGrammar grammar;
                try
                {
                    grammar = new CompiledGrammar(GrammarAutomaton.Compile(JsonSchemaGrammar.Compile(schema, new JsonGrammarOptions())), vocabulary);
                    grammar.Warm();
                }
                catch (GrammarException e)
                {
                    perSchema.Add(new JsonObject { ["schema"] = Path.GetFileName(file), ["refused"] = e.Message });
                    continue;
                }

                double compileMs = clock.Elapsed.TotalMilliseconds;
                compiles.Add(compileMs);
                var times = Walk(grammar, walks, maxTokens);
                perToken.AddRange(times);
                perSchema.Add(new JsonObject
                {
                    ["schema"] = Path.GetFileName(file),
                    ["compileMs"] = Math.Round(compileMs, 2),
                    ["tokens"] = times.Count,
                    ["maskMedianMicroseconds"] = Math.Round(Percentile(times, 0.5), 2),
                    ["maskP99Microseconds"] = Math.Round(Percentile(times, 0.99), 2),
                });
                Console.WriteLine($"{name} {Path.GetFileName(file)}: compile {compileMs:F1} ms, mask median {Percentile(times, 0.5):F1} µs, p99 {Percentile(times, 0.99):F1} µs over {times.Count} tokens");
            }

            results.Add(new JsonObject
            {
                ["tokenizer"] = name,
                ["vocabSize"] = vocabulary.VocabSize,
                ["vocabularyBuildMs"] = Math.Round(vocabularyMs, 1),
                ["tokens"] = perToken.Count,
                ["maskMedianMicroseconds"] = Math.Round(Percentile(perToken, 0.5), 2),
                ["maskP99Microseconds"] = Math.Round(Percentile(perToken, 0.99), 2),
                ["compileMedianMs"] = Math.Round(Percentile(compiles, 0.5), 2),
                ["compileMaxMs"] = Math.Round(compiles.DefaultIfEmpty(double.NaN).Max(), 2),
                ["schemas"] = perSchema,
            });
            Console.WriteLine($"{name}: mask median {Percentile(perToken, 0.5):F1} µs, p99 {Percentile(perToken, 0.99):F1} µs; compile median {Percentile(compiles, 0.5):F1} ms");
        }

        var document = new JsonObject
        {
            ["benchmark"] = "grammar-masks",
            ["processor"] = RuntimeInformation.ProcessArchitecture.ToString(),
            ["processorCount"] = Environment.ProcessorCount,
            ["runtime"] = RuntimeInformation.FrameworkDescription,
            ["commit"] = ResultsWriter.GitCommit() ?? "unknown",
            ["date"] = DateTime.UtcNow.ToString("O"),
            ["walksPerSchema"] = walks,
            ["maxTokensPerWalk"] = maxTokens,
            ["results"] = results,
        };
        string path = Path.Combine(root, "benchmarks", "results", $"cpu-grammar-masks-{DateTime.UtcNow:yyyy-MM-dd-HHmmss}.json");
        File.WriteAllText(path, document.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
        return path;
    }

    private static List<double> Walk(CompiledGrammar grammar, int walks, int maxTokens)
    {
        var random = new Random(1234);
        var bitmask = new uint[grammar.Vocabulary.BitmaskWords];
        var allowed = new List<int>();
        var times = new List<double>();
        for (int w = 0; w < walks; w++)
        {
            var matcher = new GrammarMatcher(grammar);
            long start = Stopwatch.GetTimestamp();
            matcher.FillNextTokenBitmask(bitmask);
            for (int t = 0; t < maxTokens; t++)
            {
                allowed.Clear();
                for (int i = 0; i < bitmask.Length; i++)
                {
                    for (uint bits = bitmask[i]; bits != 0; bits &= bits - 1)
                    {
                        allowed.Add(i * 32 + System.Numerics.BitOperations.TrailingZeroCount(bits));
                    }
                }

                if (allowed.Count == 0)
                {
                    break;
                }

                int pick = allowed[random.Next(allowed.Count)];
                long resume = Stopwatch.GetTimestamp();
                matcher.TryAccept(pick);
                if (matcher.IsTerminated)
                {
                    break;
                }

                matcher.FillNextTokenBitmask(bitmask);
                times.Add(Stopwatch.GetElapsedTime(resume).TotalMicroseconds + (t == 0 ? Stopwatch.GetElapsedTime(start).TotalMicroseconds : 0));
            }
        }

        return times;
    }

    private static double Percentile(List<double> values, double p)
    {
        if (values.Count == 0)
        {
            return double.NaN;
        }

        var sorted = values.Order().ToArray();
        return sorted[Math.Min(sorted.Length - 1, (int)(p * sorted.Length))];
    }
}
