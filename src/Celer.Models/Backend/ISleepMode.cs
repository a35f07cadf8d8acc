namespace Celer.Models.Backend;

/// <summary>
/// Sleep mode (vLLM's <c>--enable-sleep-mode</c>): a backend that gives the memory of its weights and KV cache back while
/// the model does not serve, and takes it again at the same addresses, so the model, its tensors and its recorded graphs
/// run on unchanged after waking. The caller releases only between steps, with no request holding a KV block.
/// </summary>
public interface ISleepMode
{
    /// <summary>Device bytes the weights take; 0 where they are host memory already (the CPU reads them from the checkpoint).</summary>
    long WeightBytes { get; }

    /// <summary>Bytes the KV cache takes.</summary>
    long KvCacheBytes { get; }

    /// <summary>Free memory on the device now (other processes and models count); null where memory is the host's (the CPU).</summary>
    long? DeviceFreeBytes { get; }

    /// <summary>Gives the KV cache's memory back, after the work queued on it (steps, host-tier copies); its contents are lost.</summary>
    void ReleaseKvCache();

    /// <summary>Takes the KV cache's memory again, its contents as after allocation.</summary>
    void RestoreKvCache();

    /// <summary>Gives the weights' memory back: copied to host memory first when <paramref name="backup"/> (level 1), else discarded (level 2).</summary>
    void ReleaseWeights(bool backup);

    /// <summary>
    /// Takes the weights' memory again. True when their values are back (from the backup, or never released); false when
    /// they were discarded and must be loaded again between <see cref="BeginWeightReload"/> and <see cref="EndWeightReload"/>.
    /// </summary>
    bool RestoreWeights();

    /// <summary>
    /// The model's weights are loaded again, the same tensors in the same order: each weight load until
    /// <see cref="EndWeightReload"/> writes where that weight was first put, and whatever else the loading allocates
    /// (a second model's activations) is freed at the end.
    /// </summary>
    void BeginWeightReload();

    /// <summary>Ends a reload; false when it did not load every weight of the first load again (it failed part way).</summary>
    bool EndWeightReload();
}
