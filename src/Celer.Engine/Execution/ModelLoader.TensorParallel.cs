using Celer.Engine.Distributed;
using Celer.Models.Architectures;
using Celer.Models.Backend;
using Celer.Models.Config;
using Celer.Models.Weights;

namespace Celer.Engine.Execution;

public static partial class ModelLoader
{
    /// <summary>How long a collective waits for a rank that is alive: longer than any step's skew between ranks.</summary>
    private static readonly TimeSpan CollectiveTimeout = TimeSpan.FromMinutes(5);

    /// <summary>
    /// Rank 0's half of starting a tensor-parallel group (<c>--tensor-parallel-size</c> &gt; 1): starts this node's worker
    /// processes (and waits for the other nodes' to connect), makes the group's collectives and sends the plan, so the
    /// workers load their shards while rank 0 loads its own. Both returned objects are the caller's to dispose, the
    /// processes first.
    /// </summary>
    private static (WorkerProcesses Workers, CollectiveGroups.Member Group) StartWorkers(
        EngineArgs args, ModelConfig config, IModelBackend backend, int maxModelLen, int maxNumTokens, int maxLogitsRows, DType dtype, DType? kvDType, Action<string>? log)
    {
        int size = args.TensorParallelSize;
        // The largest collective: an all-reduce of a whole step's hidden rows, or the gather of its logits' vocabulary parts.
        long slotBytes = sizeof(float) * Math.Max((long)maxNumTokens * config.HiddenSize, (long)maxLogitsRows * (config.VocabSize / size));
        (string address, Func<IModelBackend, CollectiveGroups.Member> joinAsRankZero) = CollectiveGroups.Prepare(args, slotBytes, CollectiveTimeout);
        WorkerProcesses? workers = null;
        CollectiveGroups.Member? group = null;
        try
        {
            workers = WorkerProcesses.Start(args, log);
            workers.SendPlan(new WorkerPlan(args, size, address, maxModelLen, maxNumTokens, maxLogitsRows, dtype, kvDType));
            group = joinAsRankZero(backend);
            if (group.Value.Collectives is Backends.Cuda.NcclCollectives nccl)
            {
                // Every rank decided as rank 0 did (CustomAllReduce.TryCreate), so rank 0 speaks for the group.
                log?.Invoke(nccl.CustomAllReduceUnavailable is { } why
                    ? $"tensor parallelism: every all-reduce through NCCL ({why})"
                    : $"tensor parallelism: all-reduces of up to {nccl.CustomAllReduceBytes >> 20} MiB through the custom all-reduce (CUDA IPC peer memory), larger ones through NCCL");
            }

            return (workers, group.Value);
        }
        catch
        {
            workers?.Dispose();
            group?.Owner.Dispose();
            throw;
        }
    }

    /// <summary>A worker's shard of the model as <see cref="LoadWorkerRank"/> built it, with what it runs on.</summary>
    internal sealed class WorkerRank(DecoderModel model, IModelBackend backend, IDisposable? weights, IDisposable group, int numLayers, int blockSize, (float[] K, float[] V)? kvScales)
        : IDisposable
    {
        public DecoderModel Model => model;

        public void AllocateKvCache(int numBlocks)
        {
            backend.AllocateKvCache(numLayers, numBlocks, blockSize, model.Attention);
            if (kvScales is { } scales)
            {
                backend.SetKvCacheScales(scales.K, scales.V);
            }
        }

        public void Dispose()
        {
            backend.Dispose();
            weights?.Dispose();
            group.Dispose();
        }
    }

    /// <summary>
    /// A worker's half: rank <paramref name="rank"/>'s shard of the model rank 0 planned, with the sizes rank 0 derived
    /// (every rank's buffers and graphs must match its steps), on a backend of its own.
    /// </summary>
    internal static WorkerRank LoadWorkerRank(WorkerPlan plan, int rank)
    {
        EngineArgs args = plan.Args;
        ModelConfig config = ModelConfig.Load(args.Model, args.ParseHfOverrides());
        DevicePlatform platform = DevicePlatform.For(args.Device);
        CollectiveGroups.Member? group = null;
        IModelBackend? backend = null;
        ProgressWeightSource? weights = null;
        try
        {
#pragma warning disable CA2000 // the returned WorkerRank owns them (or they are disposed here, or in the catch)
            // A GPU rank takes its node's GPU of its index there (CUDA_VISIBLE_DEVICES picks and orders them).
            backend = platform.CreateBackend(plan.DType, plan.KvCacheDType, sleepMode: false, device: rank % args.RanksPerNode);
            group = CollectiveGroups.Join(plan.Collectives, backend, rank, plan.WorldSize, !args.DisableCustomAllReduce, CollectiveTimeout);
            weights = OpenWeights(args, args.Model, quantization: null, plan.DType, platform, progress: null);
#pragma warning restore CA2000
            var model = new DecoderModel(
                config, weights, backend, plan.MaxNumTokens, plan.MaxLogitsRows, GraphOptions(args, plan.MaxModelLen, pooling: false), tensorParallel: group.Value.Collectives);
            weights.Complete();
            (float[] K, float[] V)? kvScales = KvScales(args, plan.KvCacheDType, weights, config.NumHiddenLayers);
            IDisposable? keepOpen = platform.ReadsWeightsInPlace ? weights : null;
            if (keepOpen is null)
            {
                weights.Dispose();
            }

            return new WorkerRank(model, backend, keepOpen, group.Value.Owner, config.NumHiddenLayers, args.BlockSize, kvScales);
        }
        catch
        {
            weights?.Dispose();
            backend?.Dispose();
            group?.Owner.Dispose();
            throw;
        }
    }
}
