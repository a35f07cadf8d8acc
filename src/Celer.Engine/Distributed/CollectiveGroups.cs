using System.Globalization;
using System.Net;
using Celer.Models.Backend;

namespace Celer.Engine.Distributed;

/// <summary>
/// Where the ranks of a CPU tensor-parallel group meet: in a shared-memory file when they all run on one host
/// (<see cref="ShmCollectives"/>), over TCP through node 0 when they span hosts (<see cref="TcpCollectives"/>, on
/// <c>--master-port</c> + 1). Rank 0 makes the group and puts its address in the workers' plan; each worker joins it.
/// </summary>
// The Member returned owns each group object: the caller disposes it through Member.Owner.
#pragma warning disable CA2000
internal static class CollectiveGroups
{
    private const string TcpScheme = "tcp://";

    /// <summary>A rank's membership: the collectives its model calls, and the object to dispose (the same one).</summary>
    public readonly record struct Member(ICollectives Collectives, IDisposable Owner);

    /// <summary>Rank 0's group and the address its workers join it by.</summary>
    public static (Member Member, string Address) Create(EngineArgs args, long slotBytes, TimeSpan timeout)
    {
        if (args.NNodes == 1)
        {
            ShmCollectives shm = ShmCollectives.Create(args.TensorParallelSize, slotBytes, timeout);
            return (new Member(shm, shm), shm.Name);
        }

        int port = args.MasterPort + 1;
        TcpCollectives tcp = TcpCollectives.Create(new IPEndPoint(WorkerProcesses.MasterAddress(args.MasterAddr), port), args.TensorParallelSize, timeout);
        return (new Member(tcp, tcp), $"{TcpScheme}{args.MasterAddr}:{port.ToString(CultureInfo.InvariantCulture)}");
    }

    /// <summary>Worker <paramref name="rank"/>'s membership of the group at <paramref name="address"/>.</summary>
    public static Member Join(string address, int rank, int size, TimeSpan timeout)
    {
        if (!address.StartsWith(TcpScheme, StringComparison.Ordinal))
        {
            ShmCollectives shm = ShmCollectives.Join(address, rank, timeout);
            return new Member(shm, shm);
        }

        string endpoint = address[TcpScheme.Length..];
        int colon = endpoint.LastIndexOf(':');
        if (colon <= 0 || !int.TryParse(endpoint[(colon + 1)..], NumberStyles.None, CultureInfo.InvariantCulture, out int port))
        {
            throw new ArgumentException($"'{address}' is not a collectives address (tcp://HOST:PORT or a shared-memory name).", nameof(address));
        }

        TcpCollectives tcp = TcpCollectives.Join(endpoint[..colon], port, rank, size, timeout);
        return new Member(tcp, tcp);
    }
}
#pragma warning restore CA2000
