using System.Text.Json;
using Celer.Engine;
using Celer.Server;

namespace Celer.Cli;

/// <summary>
/// <c>celer serve --models-file FILE</c>: the models of a multi-model server and each one's settings, as JSON:
/// <c>{"models": [{"model": "DIR", "served_model_name": "name" | ["name", …], "max_model_len": 4096, …}, …]}</c>.
/// Keys are <c>celer serve</c>'s flag names without the dashes, with <c>_</c> for <c>-</c> (vLLM's config-file
/// spelling); a key an entry leaves out takes the command line's value. Anything wrong is a <see cref="CliException"/>
/// naming the file, the entry and the key.
/// </summary>
internal static class ModelsFile
{
    /// <summary>One model of the file: its engine and its server settings.</summary>
    internal sealed record Entry(EngineArgs EngineArgs, ServerOptions Options);

    private delegate void Setter(ref EngineArgs args, ref ServerOptions options, JsonElement value, string where);

    private static readonly Dictionary<string, Setter> Keys = new(StringComparer.Ordinal)
    {
        ["served_model_name"] = (ref a, ref o, v, w) =>
        {
            var names = Names(v, w);
            a = a with { ServedModelName = names[0] };
            o = o with { ServedModelNames = names };
        },
        ["device"] = (ref a, ref o, v, w) => a = a with { Device = Choice(v, w, EngineOptions.Devices) },
        ["dtype"] = (ref a, ref o, v, w) => a = a with { Dtype = Choice(v, w, EngineOptions.Dtypes) },
        ["kv_cache_dtype"] = (ref a, ref o, v, w) => a = a with { KvCacheDtype = Choice(v, w, EngineOptions.KvCacheDtypes) },
        ["load_format"] = (ref a, ref o, v, w) => a = a with { LoadFormat = Choice(v, w, EngineOptions.LoadFormats) },
        ["runner"] = (ref a, ref o, v, w) => a = a with { Runner = Choice(v, w, EngineOptions.Runners) },
        ["convert"] = (ref a, ref o, v, w) => a = a with { Convert = Choice(v, w, EngineOptions.Converts) },
        ["preemption_mode"] = (ref a, ref o, v, w) => a = a with { PreemptionMode = Choice(v, w, EngineOptions.PreemptionModes) },
        ["quantization"] = (ref a, ref o, v, w) => a = a with { Quantization = String(v, w) },
        ["max_model_len"] = (ref a, ref o, v, w) => a = a with { MaxModelLen = Int(v, w) },
        ["max_num_seqs"] = (ref a, ref o, v, w) => a = a with { MaxNumSeqs = Int(v, w) },
        ["max_num_batched_tokens"] = (ref a, ref o, v, w) => a = a with { MaxNumBatchedTokens = Int(v, w) },
        ["block_size"] = (ref a, ref o, v, w) => a = a with { BlockSize = Int(v, w) },
        ["kv_cache_memory"] = (ref a, ref o, v, w) => a = a with { KvCacheMemoryBytes = Bytes(v, w) },
        ["gpu_memory_utilization"] = (ref a, ref o, v, w) => a = a with { GpuMemoryUtilization = (float)Number(v, w) },
        ["kv_offload_size"] = (ref a, ref o, v, w) => a = a with { KvOffloadSize = Number(v, w) },
        ["kv_offloading_size"] = (ref a, ref o, v, w) => a = a with { KvOffloadSize = Number(v, w) },
        ["enable_prefix_caching"] = (ref a, ref o, v, w) => a = a with { EnablePrefixCaching = Bool(v, w) },
        ["seed"] = (ref a, ref o, v, w) => a = a with { Seed = Int(v, w) },
        ["max_logprobs"] = (ref a, ref o, v, w) => a = a with { MaxLogprobs = Int(v, w) },
        ["enforce_eager"] = (ref a, ref o, v, w) => a = a with { EnforceEager = Bool(v, w) },
        ["enable_sleep_mode"] = (ref a, ref o, v, w) => a = a with { EnableSleepMode = Bool(v, w) },
        ["tensor_parallel_size"] = (ref a, ref o, v, w) => a = a with { TensorParallelSize = Int(v, w) },
        ["distributed_executor_backend"] = (ref a, ref o, v, w) => a = a with { DistributedExecutorBackend = String(v, w) },
        ["async_scheduling"] = (ref a, ref o, v, w) => a = a with { AsyncScheduling = Bool(v, w) },
        ["max_cudagraph_capture_size"] = (ref a, ref o, v, w) => a = a with { MaxCudaGraphCaptureSize = Int(v, w) },
        ["hf_overrides"] = (ref a, ref o, v, w) => a = a with { HfOverrides = JsonText(v, w) },
        ["speculative_config"] = (ref a, ref o, v, w) => a = a with { SpeculativeConfig = JsonText(v, w) },
        ["pooler_config"] = (ref a, ref o, v, w) => a = a with { PoolerConfig = JsonText(v, w) },
        ["chat_template"] = (ref a, ref o, v, w) => o = o with { ChatTemplate = ServeCommand.ReadChatTemplate(String(v, w)) },
        ["generation_config"] = (ref a, ref o, v, w) => o = o with { GenerationConfig = Choice(v, w, ["auto", "vllm"]) },
        ["reasoning_parser"] = (ref a, ref o, v, w) => o = o with { ReasoningParser = String(v, w) },
        ["tool_call_parser"] = (ref a, ref o, v, w) => o = o with { ToolCallParser = String(v, w) },
        ["enable_auto_tool_choice"] = (ref a, ref o, v, w) => o = o with { EnableAutoToolChoice = Bool(v, w) },
        ["max_pending_requests"] = (ref a, ref o, v, w) => o = o with { MaxPendingRequests = Int(v, w) },
    };

    /// <summary>The file's models.</summary>
    /// <param name="engineDefaults">The command line's engine flags for a model directory.</param>
    /// <param name="serverDefaults">The command line's server flags.</param>
    public static IReadOnlyList<Entry> Read(string path, Func<string, EngineArgs> engineDefaults, ServerOptions serverDefaults)
    {
        if (!File.Exists(path))
            throw new CliException($"--models-file {path}: no such file.");
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(File.ReadAllText(path), new JsonDocumentOptions { AllowTrailingCommas = true, CommentHandling = JsonCommentHandling.Skip });
        }
        catch (JsonException e)
        {
            throw new CliException($"--models-file {path}: not valid JSON: {e.Message}");
        }

        using (document)
        {
            if (document.RootElement.ValueKind != JsonValueKind.Object || !document.RootElement.TryGetProperty("models", out var models) || models.ValueKind != JsonValueKind.Array)
                throw new CliException($"--models-file {path}: expected an object with a \"models\" array, e.g. {{\"models\": [{{\"model\": \"DIR\", \"served_model_name\": \"name\"}}]}}.");
            foreach (var property in document.RootElement.EnumerateObject())
            {
                if (property.Name != "models")
                    throw new CliException($"--models-file {path}: unknown key \"{property.Name}\" (the file has one key, \"models\").");
            }

            if (models.GetArrayLength() == 0)
                throw new CliException($"--models-file {path}: \"models\" is empty; give at least one model.");
            var entries = new List<Entry>();
            var index = 0;
            foreach (var model in models.EnumerateArray())
                entries.Add(ReadEntry(model, $"--models-file {path}: models[{index++}]", engineDefaults, serverDefaults));
            return entries;
        }
    }

    private static Entry ReadEntry(JsonElement entry, string where, Func<string, EngineArgs> engineDefaults, ServerOptions serverDefaults)
    {
        if (entry.ValueKind != JsonValueKind.Object)
            throw new CliException($"{where}: expected an object with at least \"model\".");
        if (!entry.TryGetProperty("model", out var model))
            throw new CliException($"{where}: \"model\" (the model directory) is required.");
        // A name given on the command line is not inherited: each model is named by its entry or its directory.
        var args = engineDefaults(String(model, $"{where}.model")) with { ServedModelName = null };
        var options = serverDefaults with { ServedModelNames = [] };
        foreach (var property in entry.EnumerateObject())
        {
            var key = property.Name.Replace('-', '_');
            if (key == "model")
                continue;
            if (!Keys.TryGetValue(key, out var set))
                throw new CliException($"{where}: unknown key \"{property.Name}\"; known keys: model, {string.Join(", ", Keys.Keys)}.");
            set(ref args, ref options, property.Value, $"{where}.{property.Name}");
        }

        where = $"{where} ({args.Model})";
        try
        {
            args.Validate();
            options.CheckChatParsers();
        }
        catch (ArgumentException e)
        {
            throw new CliException($"{where}: {e.Message}");
        }

        return new Entry(args, options with { MaxLogprobs = args.MaxLogprobs });
    }

    private static string String(JsonElement value, string where) =>
        value.ValueKind == JsonValueKind.String && value.GetString() is { Length: > 0 } text ? text : throw Expected(where, "a non-empty string", value);

    private static string Choice(JsonElement value, string where, string[] choices)
    {
        var text = String(value, where);
        return choices.Contains(text, StringComparer.Ordinal) ? text : throw new CliException($"{where}: \"{text}\" is not one of {string.Join(", ", choices)}.");
    }

    private static string[] Names(JsonElement value, string where)
    {
        if (value.ValueKind == JsonValueKind.String)
            return [String(value, where)];
        if (value.ValueKind == JsonValueKind.Array && value.GetArrayLength() > 0)
            return [.. value.EnumerateArray().Select(name => String(name, where))];
        throw Expected(where, "a name or a non-empty list of names", value);
    }

    private static int Int(JsonElement value, string where) =>
        value.ValueKind == JsonValueKind.Number && value.TryGetInt32(out var number) ? number : throw Expected(where, "an integer", value);

    private static double Number(JsonElement value, string where) =>
        value.ValueKind == JsonValueKind.Number ? value.GetDouble() : throw Expected(where, "a number", value);

    private static bool Bool(JsonElement value, string where) => value.ValueKind switch
    {
        JsonValueKind.True => true,
        JsonValueKind.False => false,
        _ => throw Expected(where, "true or false", value),
    };

    /// <summary>A byte count as a number, or a string as <c>--kv-cache-memory</c> takes it (<c>"512MiB"</c>).</summary>
    private static long Bytes(JsonElement value, string where)
    {
        if (value.ValueKind == JsonValueKind.Number && value.TryGetInt64(out var bytes) && bytes >= 0)
            return bytes;
        if (value.ValueKind == JsonValueKind.String && ByteSize.TryParse(value.GetString()!, out bytes))
            return bytes;
        throw Expected(where, "a byte size (e.g. \"4GiB\", \"512MiB\" or a number of bytes)", value);
    }

    /// <summary>A flag whose value is JSON (<c>--hf-overrides</c>): the object itself, or its text as on the command line.</summary>
    private static string JsonText(JsonElement value, string where) => value.ValueKind switch
    {
        JsonValueKind.Object => value.GetRawText(),
        JsonValueKind.String => String(value, where),
        _ => throw Expected(where, "a JSON object", value),
    };

    private static CliException Expected(string where, string what, JsonElement value) =>
        new($"{where}: expected {what}, got {value.GetRawText()}.");
}
