using System.Globalization;
using System.Net;
using Celer.Backends.Cuda;
using Celer.Models.Backend;

namespace Celer.Engine.Distributed;

/// <summary>
/// Where the ranks of a tensor-parallel group meet. On GPUs: an NCCL communicator (<see cref="NcclCollectives"/>), its
/// id made by rank 0; NCCL finds its own way between the GPUs of one host or of several. On the CPU: a shared-memory file
/// when all ranks run on one host (<see cref="ShmCollectives"/>), else TCP through node 0 (<see cref="TcpCollectives"/>, on
/// <c>--master-port</c> + 1). Rank 0 makes the group and puts its address in the workers' plan; each worker joins it.
/// </summary>
// Each Member returned owns its group object: the caller disposes it through Member.Owner.
#pragma warning disable CA2000
internal static class CollectiveGroups
{
    private const string TcpScheme = "tcp://", NcclScheme = "nccl:";

    /// <summary>A rank's membership: the collectives its model calls, and the object to dispose (the same one).</summary>
    public readonly record struct Member(ICollectives Collectives, IDisposable Owner);

    /// <summary>
    /// Rank 0's half, before the workers have their plan: the address they join by, and how rank 0 joins once they have
    /// it (an NCCL communicator forms only when every rank joins, so rank 0 joins after sending the plan).
    /// </summary>
    public static (string Address, Func<IModelBackend, Member> JoinAsRankZero) Prepare(EngineArgs args, long slotBytes, TimeSpan timeout)
    {
        if (args.Device.Equals("cuda", StringComparison.OrdinalIgnoreCase))
        {
            byte[] id = NcclCollectives.CreateUniqueId();
            return (NcclScheme + Convert.ToBase64String(id), backend => Nccl(backend, id, 0, args.TensorParallelSize, !args.DisableCustomAllReduce));
        }

        if (args.NNodes == 1)
        {
            ShmCollectives shm = ShmCollectives.Create(args.TensorParallelSize, slotBytes, timeout);
            return (shm.Name, _ => new Member(shm, shm));
        }

        int port = args.MasterPort + 1;
        TcpCollectives tcp = TcpCollectives.Create(new IPEndPoint(WorkerProcesses.MasterAddress(args.MasterAddr), port), args.TensorParallelSize, timeout);
        return ($"{TcpScheme}{args.MasterAddr}:{port.ToString(CultureInfo.InvariantCulture)}", _ => new Member(tcp, tcp));
    }

    /// <summary>
    /// Worker <paramref name="rank"/>'s membership of the group at <paramref name="address"/>, on its backend;
    /// <paramref name="customAllReduce"/>: rank 0's choice (<see cref="EngineArgs.DisableCustomAllReduce"/> is false).
    /// </summary>
    public static Member Join(string address, IModelBackend backend, int rank, int size, bool customAllReduce, TimeSpan timeout)
    {
        if (address.StartsWith(NcclScheme, StringComparison.Ordinal))
        {
            return Nccl(backend, Convert.FromBase64String(address[NcclScheme.Length..]), rank, size, customAllReduce);
        }

        if (!address.StartsWith(TcpScheme, StringComparison.Ordinal))
        {
            ShmCollectives shm = ShmCollectives.Join(address, rank, timeout);
            return new Member(shm, shm);
        }

        string endpoint = address[TcpScheme.Length..];
        int colon = endpoint.LastIndexOf(':');
        if (colon <= 0 || !int.TryParse(endpoint[(colon + 1)..], NumberStyles.None, CultureInfo.InvariantCulture, out int port))
        {
            throw new ArgumentException($"'{address}' is not a collectives address (nccl:ID, tcp://HOST:PORT or a shared-memory name).", nameof(address));
        }

        TcpCollectives tcp = TcpCollectives.Join(endpoint[..colon], port, rank, size, timeout);
        return new Member(tcp, tcp);
    }

    private static Member Nccl(IModelBackend backend, byte[] id, int rank, int size, bool customAllReduce)
    {
        var nccl = new NcclCollectives((CudaBackend)backend, id, rank, size, customAllReduce);
        return new Member(nccl, nccl);
    }
}
#pragma warning restore CA2000
