using System.Text.Json;

namespace Celer.Models.Weights;

/// <summary>
/// The safetensors weights of a model directory, found the way transformers and vLLM find them:
/// <c>model.safetensors.index.json</c> (its <c>weight_map</c> names the shard of every tensor)
/// when present; else <c>model.safetensors</c>; else every <c>*.safetensors</c> file. Every file is
/// opened and its header validated up front, so a broken checkpoint fails before any memory is
/// allocated for the model.
/// </summary>
public sealed class SafetensorsWeightSource : IWeightSource
{
    public const string SingleFileName = "model.safetensors";
    public const string IndexFileName = "model.safetensors.index.json";

    // Read-ahead requests cover this much at a time, so stopping (Dispose) waits for one at most.
    private const long ReadAheadPiece = 64L << 20;

    private readonly SafetensorsFile[] _files;
    private readonly Dictionary<string, SafetensorsFile> _byTensor;
    private readonly CancellationTokenSource _stopReadAhead = new();
    private Task? _readAhead;

    private SafetensorsWeightSource(SafetensorsFile[] files, Dictionary<string, SafetensorsFile> byTensor)
    {
        _files = files;
        _byTensor = byTensor;
    }

    public IEnumerable<string> Names => _byTensor.Keys;

    /// <summary>The opened files, in shard order.</summary>
    public IReadOnlyList<SafetensorsFile> Files => _files;

    public static SafetensorsWeightSource Open(string modelDirectory)
    {
        string indexPath = Path.Combine(modelDirectory, IndexFileName);
        if (File.Exists(indexPath))
        {
            return OpenSharded(modelDirectory, ReadWeightMap(indexPath));
        }
        string singlePath = Path.Combine(modelDirectory, SingleFileName);
        string[] paths = File.Exists(singlePath)
            ? [singlePath]
            : Directory.Exists(modelDirectory)
                ? Directory.GetFiles(modelDirectory, "*.safetensors").Order(StringComparer.Ordinal).ToArray()
                : [];
        if (paths.Length == 0)
        {
            throw new ModelLoadException(
                $"no safetensors weights in '{modelDirectory}' (expected {SingleFileName} or {IndexFileName})");
        }
        return OpenFiles(paths, files =>
        {
            var byTensor = new Dictionary<string, SafetensorsFile>(StringComparer.Ordinal);
            foreach (var file in files)
            {
                foreach (string name in file.Names)
                {
                    if (!byTensor.TryAdd(name, file))
                    {
                        throw new SafetensorsException(
                            $"tensor '{name}' is stored in both '{Path.GetFileName(byTensor[name].Path)}' and '{Path.GetFileName(file.Path)}'");
                    }
                }
            }
            return byTensor;
        });
    }

    public bool Contains(string name) => _byTensor.ContainsKey(name);

    /// <summary>
    /// Starts reading every file from the disk in the background, in file order, as far ahead of the loader as the disk
    /// goes, when the checkpoint takes at most half of this machine's memory (else the pages read early would push out
    /// the ones the loader is using). A loader that reads every tensor once (a GPU's upload, a sleeping model's
    /// reload) then waits on the disk's sequential rate rather than on one tensor's read-ahead at a time: its own
    /// order (layer by layer) is not the files' (safetensors writers sort tensors by dtype and name), so per-tensor
    /// requests leave the disk idle between tensors and seek. Returns false, reading nothing, when the checkpoint is too large.
    /// </summary>
    public bool ReadAheadInBackground()
    {
        long bytes = _files.Sum(f => f.DataBytes);
        if (bytes > GC.GetGCMemoryInfo().TotalAvailableMemoryBytes / 2 || _readAhead is not null)
        {
            return false;
        }

        CancellationToken stop = _stopReadAhead.Token;
        _readAhead = Task.Run(() =>
        {
            foreach (SafetensorsFile file in _files)
            {
                for (long offset = 0; offset < file.DataBytes && !stop.IsCancellationRequested; offset += ReadAheadPiece)
                {
                    file.RequestRead(offset, ReadAheadPiece);
                }
            }
        }, stop);
        return true;
    }

    public WeightTensor Get(string name, params int[] expectedShape)
    {
        if (!_byTensor.TryGetValue(name, out var file))
        {
            throw WeightShapes.Missing(name);
        }
        var tensor = file.Get(name);
        WeightShapes.Check(name, tensor.Shape, expectedShape);
        return tensor;
    }

    public void Dispose()
    {
        // The read-ahead requests ranges of the mappings: it stops before they go.
        _stopReadAhead.Cancel();
        try
        {
            _readAhead?.Wait();
        }
        catch (AggregateException e) when (e.InnerException is TaskCanceledException)
        {
        }

        _stopReadAhead.Dispose();
        foreach (var file in _files)
        {
            file.Dispose();
        }
    }

    private static SafetensorsWeightSource OpenSharded(string modelDirectory, Dictionary<string, string> weightMap)
    {
        var shardNames = weightMap.Values.Distinct(StringComparer.Ordinal).Order(StringComparer.Ordinal).ToArray();
        var paths = new string[shardNames.Length];
        for (int i = 0; i < shardNames.Length; i++)
        {
            paths[i] = Path.Combine(modelDirectory, shardNames[i]);
            if (!File.Exists(paths[i]))
            {
                string example = weightMap.First(kv => kv.Value == shardNames[i]).Key;
                throw new SafetensorsException(
                    $"'{IndexFileName}' maps tensor '{example}' to '{shardNames[i]}', which is not in the model directory");
            }
        }
        return OpenFiles(paths, files =>
        {
            var byName = files.ToDictionary(f => Path.GetFileName(f.Path), StringComparer.Ordinal);
            var byTensor = new Dictionary<string, SafetensorsFile>(weightMap.Count, StringComparer.Ordinal);
            foreach (var (tensor, shard) in weightMap)
            {
                var file = byName[shard];
                if (!file.Contains(tensor))
                {
                    throw new SafetensorsException($"'{IndexFileName}' maps tensor '{tensor}' to '{shard}', which does not contain it");
                }
                byTensor[tensor] = file;
            }
            return byTensor;
        });
    }

    /// <summary>Opens every file, then indexes them; on any failure the files opened so far are closed.</summary>
    private static SafetensorsWeightSource OpenFiles(string[] paths, Func<SafetensorsFile[], Dictionary<string, SafetensorsFile>> index)
    {
        var opened = new List<SafetensorsFile>(paths.Length);
        try
        {
            foreach (string path in paths)
            {
                opened.Add(SafetensorsFile.Open(path));
            }
            var files = opened.ToArray();
            return new SafetensorsWeightSource(files, index(files));
        }
        catch
        {
            foreach (var file in opened)
            {
                file.Dispose();
            }
            throw;
        }
    }

    private static Dictionary<string, string> ReadWeightMap(string indexPath)
    {
        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(File.ReadAllBytes(indexPath));
        }
        catch (JsonException e)
        {
            throw new SafetensorsException($"'{IndexFileName}' is not valid JSON ({e.Message})", e);
        }
        using (doc)
        {
            if (doc.RootElement.ValueKind != JsonValueKind.Object
                || !doc.RootElement.TryGetProperty("weight_map", out var map) || map.ValueKind != JsonValueKind.Object)
            {
                throw new SafetensorsException($"'{IndexFileName}' has no 'weight_map' object");
            }
            var weightMap = new Dictionary<string, string>(StringComparer.Ordinal);
            foreach (var entry in map.EnumerateObject())
            {
                string? shard = entry.Value.ValueKind == JsonValueKind.String ? entry.Value.GetString() : null;
                // Shards are plain file names next to the index; anything else could read outside the model directory.
                if (string.IsNullOrEmpty(shard) || shard != Path.GetFileName(shard) || shard is "." or ".."
                    || shard.Contains('/') || shard.Contains('\\'))
                {
                    throw new SafetensorsException(
                        $"'{IndexFileName}': tensor '{entry.Name}' maps to {entry.Value.GetRawText()}, not a file name in the model directory");
                }
                weightMap[entry.Name] = shard;
            }
            return weightMap;
        }
    }
}
