using System.Text.Json.Nodes;
using Celer.Engine.Execution;
using Celer.Models.Weights;
using Celer.TestSupport;
using Xunit;

namespace Celer.Engine.Tests.Pooling;

/// <summary>
/// sentence-transformers' Dense modules (LaBSE, sentence-T5, GTR, EmbeddingGemma): the llama-embed-mean fixture with
/// a Dense projection (64 → 48, tanh; then 48 → 40, identity, no bias) and a Normalize module added after its Pooling
/// module, in the folder layout and file names sentence-transformers saves. The expected vector is the fixture's
/// sentence-transformers mean through the same projections in double, then normalized; and the refusals of what Celer
/// cannot apply.
/// </summary>
public sealed class DenseModuleTests : IDisposable
{
    private const int Hidden = 64, Middle = 48, Out = 40;
    private readonly string _dir = Directory.CreateTempSubdirectory("celer-dense-").FullName;
    private readonly float[] _w1, _b1, _w2;

    public DenseModuleTests()
    {
        string source = Path.Combine(PoolingFixture.Root, "llama-embed-mean");
        foreach (string file in Directory.GetFiles(source, "*", SearchOption.AllDirectories))
        {
            string target = Path.Combine(_dir, Path.GetRelativePath(source, file));
            Directory.CreateDirectory(Path.GetDirectoryName(target)!);
            File.Copy(file, target);
        }

        var random = new Random(5);
        float[] Random(int n, float scale) => [.. Enumerable.Range(0, n).Select(_ => (random.NextSingle() - 0.5f) * scale)];
        _w1 = Random(Middle * Hidden, 0.5f);
        _b1 = Random(Middle, 0.2f);
        _w2 = Random(Out * Middle, 0.5f);
        WriteDense("2_Dense", Hidden, Middle, "torch.nn.modules.activation.Tanh", _w1, _b1);
        WriteDense("3_Dense", Middle, Out, "torch.nn.modules.linear.Identity", _w2, null);
        Directory.CreateDirectory(Path.Combine(_dir, "4_Normalize"));
        WriteModules("2_Dense", "3_Dense", "4_Normalize");
    }

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private void WriteDense(string folder, int inFeatures, int outFeatures, string activation, float[] weight, float[]? bias)
    {
        string path = Path.Combine(_dir, folder);
        Directory.CreateDirectory(path);
        var config = new JsonObject { ["in_features"] = inFeatures, ["out_features"] = outFeatures, ["bias"] = bias is not null, ["activation_function"] = activation };
        File.WriteAllText(Path.Combine(path, "config.json"), config.ToJsonString());
        var tensors = new List<(string, DType, int[], byte[])> { ("linear.weight", DType.F32, [outFeatures, inFeatures], Bytes(weight)) };
        if (bias is not null)
        {
            tensors.Add(("linear.bias", DType.F32, [outFeatures], Bytes(bias)));
        }

        SafetensorsWriter.Write(Path.Combine(path, "model.safetensors"), tensors);
    }

    private static byte[] Bytes(float[] values) => [.. values.SelectMany(BitConverter.GetBytes)];

    /// <summary>modules.json: the fixture's Transformer and Pooling, then <paramref name="folders"/> as sentence-transformers names their types.</summary>
    private void WriteModules(params string[] folders)
    {
        var modules = JsonNode.Parse(File.ReadAllText(Path.Combine(PoolingFixture.Root, "llama-embed-mean", "modules.json")))!.AsArray();
        foreach (string folder in folders)
        {
            string kind = folder[(folder.IndexOf('_') + 1)..];
            modules.Add(new JsonObject
            {
                ["idx"] = modules.Count, ["name"] = $"{modules.Count}", ["path"] = folder,
                ["type"] = $"sentence_transformers.sentence_transformer.modules.{kind.ToLowerInvariant()}.{kind}",
            });
        }

        File.WriteAllText(Path.Combine(_dir, "modules.json"), modules.ToJsonString());
    }

    private EngineArgs Args => new() { Model = _dir, MaxNumBatchedTokens = 16, MaxNumSeqs = 8, KvCacheMemoryBytes = 16L << 20 };

    [Fact]
    public void Dense_modules_project_the_pooled_vector_before_it_is_normalized()
    {
        PoolingFixture fixture = PoolingFixture.Load("llama-embed-mean");
        using LlmEngine engine = ModelLoader.LoadOffline(Args).Engine;
        Assert.Equal(Out, engine.Pooler!.EmbeddingSize);
        Assert.True(engine.Pooler.Normalize);
        IReadOnlyList<RequestOutput> outputs = engine.Generate([.. fixture.Cases.Select((c, i) => GenerateRequest.ForPooling($"d{i}", c.PromptTokenIds, new PoolingParams()))]);
        foreach (RequestOutput output in outputs)
        {
            float[] mean = fixture.Cases[output.RequestId[1] - '0'].Embedding;
            double[] middle = [.. Enumerable.Range(0, Middle).Select(o => Math.Tanh(_b1[o] + Enumerable.Range(0, Hidden).Sum(i => (double)_w1[(o * Hidden) + i] * mean[i])))];
            double[] last = [.. Enumerable.Range(0, Out).Select(o => Enumerable.Range(0, Middle).Sum(i => _w2[(o * Middle) + i] * middle[i]))];
            double norm = Math.Sqrt(last.Sum(v => v * v));
            float[] expected = [.. last.Select(v => (float)(v / norm))];
            float[] actual = output.PoolerOutput!;
            Assert.Equal(Out, actual.Length);
            Assert.True(PoolingFixture.Cosine(expected, actual) >= 0.9999, $"{output.RequestId}: cosine {PoolingFixture.Cosine(expected, actual)}");
            Assert.True(Math.Abs(PoolingFixture.Norm(actual) - 1) < 1e-5);
        }
    }

    [Fact]
    public void What_Celer_cannot_apply_is_refused_naming_it()
    {
        WriteDense("2_Dense", Hidden, Middle, "torch.nn.modules.activation.GELU", _w1, _b1);
        Assert.Contains("activation_function 'torch.nn.modules.activation.GELU' is not supported", Refusal(), StringComparison.Ordinal);

        WriteDense("2_Dense", Hidden, Middle, "torch.nn.modules.activation.Tanh", _w1, _b1);
        File.Move(Path.Combine(_dir, "2_Dense", "model.safetensors"), Path.Combine(_dir, "2_Dense", "pytorch_model.bin"));
        Assert.Contains("stores its weights as pytorch_model.bin", Refusal(), StringComparison.Ordinal);

        WriteDense("2_Dense", Hidden + 1, Middle, "torch.nn.modules.activation.Tanh", [.. _w1, .. new float[Middle]], _b1);
        Assert.Contains("the first Dense module takes 65 values, but the model's hidden size is 64", Refusal(), StringComparison.Ordinal);

        WriteDense("2_Dense", Hidden, Middle, "torch.nn.modules.activation.Tanh", _w1, _b1);
        WriteModules("4_Normalize", "2_Dense", "3_Dense");
        Assert.Contains("is not between the Pooling and the Normalize module", Refusal(), StringComparison.Ordinal);
    }

    private string Refusal() => Assert.Throws<ModelLoadException>(() => ModelLoader.LoadOffline(Args)).Message;
}
