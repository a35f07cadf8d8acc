using Celer.Engine;
using Celer.Engine.Execution;
using Celer.TestSupport;
using Celer.Tokenization;

namespace Celer.Backends.Cuda.Tests;

/// <summary>
/// Encoders and classifiers on the GPU against sentence-transformers and transformers (tests/fixtures/encoders, fp32
/// references; see Celer.Engine.Tests' EncoderParityTests for the CPU): bidirectional attention through the tensor-core
/// kernels, LayerNorm, GELU and the encoder embeddings. Embeddings: cosine ≥ 0.9999 in fp32, ≥ 0.999 in bf16 (issue 15's
/// bars); scores and probabilities within 1e-3 in fp32 (measured: ≤ 1e-6) and 3e-2 in bf16. The bf16 bound follows from
/// the embeddings: a bf16 hidden state sits at cosine ≥ 0.9999 of the fp32 one (measured 0.99989–0.99998), a relative
/// error of up to √(2·(1 − 0.9999)) ≈ 1.4 %, which the classifier head turns into logits off by ~1 % of their spread and
/// sigmoid/softmax outputs off by up to ~2e-2 (measured on the H200: at most 1.75e-2, qwen3-seq-cls's 150-token case).
/// </summary>
public sealed class EncodersOnGpuTests
{
    public static TheoryData<string, string> Cases() => new(
        Directory.GetDirectories(EncoderFixture.Root).Select(Path.GetFileName).Order(StringComparer.Ordinal)
            .SelectMany(name => new[] { (name!, "float32"), (name!, "bfloat16") }));

    [Theory]
    [MemberData(nameof(Cases))]
    public void Outputs_match_the_references_on_the_gpu(string name, string dtype)
    {
        Gpu.Require();
        EncoderFixture fixture = EncoderFixture.Load(name);
        (LlmEngine engine, Tokenizer? tokenizer, _) = ModelLoader.LoadOffline(new EngineArgs
        {
            Model = fixture.Directory, Device = "cuda", Dtype = dtype, MaxNumSeqs = 8, KvCacheMemoryBytes = 16L << 20,
            // The decoder classifier also runs in 16-token chunks; the encoders read their inputs whole.
            MaxNumBatchedTokens = name.StartsWith("qwen3", StringComparison.Ordinal) ? 16 : null,
        });
        using (engine)
        {
            bool fp32 = dtype == "float32";
            double floor = fp32 ? 0.9999 : 0.999, tolerance = fp32 ? 1e-3 : 3e-2;
            var requests = new List<(GenerateRequest Request, float[] Expected, bool Cosine)>();
            foreach (EncoderFixture.Input c in fixture.Cases.Concat(fixture.TextCases))
            {
                PoolingParams p = c.Embedding is null ? new PoolingParams { Task = PoolingTask.Classify } : new PoolingParams();
                requests.Add((GenerateRequest.ForPooling($"r{requests.Count}", c.PromptTokenIds, p), c.Embedding ?? c.Probs ?? EncoderFixture.Softmax(c.Logits!), c.Embedding is not null));
            }

            foreach (EncoderFixture.Pair pair in fixture.Pairs)
            {
                EncodedInput encoded = tokenizer!.EncodeWithTypes(pair.Query, pair.Document);
                var p = new PoolingParams { Task = PoolingTask.Score, TokenTypeIds = engine.Pooler!.TokenTypes > 1 ? encoded.TokenTypeIds : null };
                requests.Add((GenerateRequest.ForPooling($"r{requests.Count}", encoded.InputIds, p), [pair.Score], false));
            }

            IReadOnlyList<RequestOutput> outputs = engine.Generate([.. requests.Select(r => r.Request)]);
            foreach (RequestOutput output in outputs)
            {
                var (request, expected, cosine) = requests[int.Parse(output.RequestId[1..], System.Globalization.CultureInfo.InvariantCulture)];
                float[] actual = output.PoolerOutput!;
                string what = $"{name} {dtype} {output.RequestId} ({request.PromptTokenIds.Count} tokens)";
                if (cosine)
                {
                    double value = PoolingFixture.Cosine(expected, actual);
                    TestContext.Current.SendDiagnosticMessage($"{what}: cosine {value:F6}");
                    Assert.True(value >= floor, $"{what}: cosine {value}");
                    continue;
                }

                double error = expected.Zip(actual, (e, a) => Math.Abs(e - a)).Max();
                TestContext.Current.SendDiagnosticMessage($"{what}: largest difference {error:E2}");
                Assert.Equal(expected.Length, actual.Length);
                Assert.True(error <= tolerance, $"{what}: {string.Join(", ", actual)} against {string.Join(", ", expected)}");
            }
        }
    }
}
