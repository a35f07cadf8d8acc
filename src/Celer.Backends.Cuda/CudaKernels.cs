using Celer.Backends.Cuda.Interop;

namespace Celer.Backends.Cuda;

/// <summary>The compiled kernel module and its functions, with one launch path that checks every status.</summary>
internal sealed unsafe class CudaKernels : IDisposable
{
    private readonly CudaDevice _device;
    private readonly SafeCudaModuleHandle _module;
    private readonly Dictionary<string, nint> _functions = new(StringComparer.Ordinal);

    // CELER_CUDA_SYNC=1 synchronizes after every launch so an asynchronous fault names the kernel that caused it.
    private static readonly bool SyncAfterLaunch = Environment.GetEnvironmentVariable("CELER_CUDA_SYNC") == "1";

    public CudaKernels(CudaDevice device)
    {
        _device = device;
        byte[] cubin = KernelCompiler.Compile(KernelCompiler.LoadSource(), device.ComputeCapability);
        nint module;
        fixed (byte* image = cubin)
        {
            CudaDriver.Check(CudaDriver.cuModuleLoadData(out module, image), "cuModuleLoadData");
        }

        _module = new SafeCudaModuleHandle(module, device.Context);
    }

    /// <summary>While a graph is being recorded nothing may synchronize the stream.</summary>
    public bool Capturing { get; set; }

    public void Launch(string kernel, uint gridX, uint gridY, uint blockX, void** args) => Launch(kernel, gridX, gridY, 1, blockX, args);

    public void Launch(string kernel, uint gridX, uint gridY, uint gridZ, uint blockX, void** args) =>
        Launch(Function(kernel), kernel, gridX, gridY, gridZ, blockX, args);

    /// <param name="name">For error messages only.</param>
    public void Launch(nint function, string name, uint gridX, uint gridY, uint gridZ, uint blockX, void** args)
    {
        CudaDriver.Check(CudaDriver.cuLaunchKernel(function, gridX, gridY, gridZ, blockX, 1, 1, 0, _device.Stream, args, null), $"launch {name}");
        if (SyncAfterLaunch && !Capturing)
        {
            CudaDriver.Check(CudaDriver.cuStreamSynchronize(_device.Stream), $"after {name}");
        }
    }

    public nint Function(string name)
    {
        if (!_functions.TryGetValue(name, out nint function))
        {
            CudaDriver.Check(CudaDriver.cuModuleGetFunction(out function, _module.DangerousGetHandle(), name), $"cuModuleGetFunction({name})");
            _functions[name] = function;
        }

        return function;
    }

    public void Dispose() => _module.Dispose();
}
