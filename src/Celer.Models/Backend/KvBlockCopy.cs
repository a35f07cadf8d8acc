namespace Celer.Models.Backend;

/// <summary>
/// One KV block copied between the device's paged cache and the host tier (<c>--kv-offload-size</c>): every layer's
/// keys and values of device block <see cref="DeviceBlock"/> and of host block <see cref="HostBlock"/>. The direction
/// is the operation's (<see cref="IModelBackend.StoreKvBlocks"/> or <see cref="IModelBackend.LoadKvBlocks"/>).
/// </summary>
public readonly record struct KvBlockCopy(int DeviceBlock, int HostBlock);
