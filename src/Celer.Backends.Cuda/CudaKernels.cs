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

    // CELER_CUDA_PDL=0 launches every kernel plainly (to measure what programmatic dependent launch gives, or rule it out).
    private static readonly bool PdlDisabled = Environment.GetEnvironmentVariable("CELER_CUDA_PDL") == "0";

    // Programmatic dependent launch (sm_90+, and a driver of CUDA 12.3+, which records it in graphs): each kernel may be
    // scheduled while the previous one finishes; the kernels wait for it themselves (celer_pdl_begin in common.cuh).
    private readonly bool _programmaticLaunch;

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
        _programmaticLaunch = !PdlDisabled && device.ComputeCapability.Major >= 9
            && CudaDriver.cuDriverGetVersion(out int driver) == 0 && driver >= 12030;
    }

    /// <summary>While a graph is being recorded nothing may synchronize the stream.</summary>
    public bool Capturing { get; set; }

    public void Launch(string kernel, uint gridX, uint gridY, uint blockX, void** args) => Launch(kernel, gridX, gridY, 1, blockX, args);

    public void Launch(string kernel, uint gridX, uint gridY, uint gridZ, uint blockX, void** args) =>
        Launch(Function(kernel), kernel, gridX, gridY, gridZ, blockX, args);

    /// <summary>Kernels launched so far: a caller can tell whether any kernel ran between two of its own.</summary>
    public long Launches { get; private set; }

    /// <param name="name">For error messages only.</param>
    /// <param name="sharedBytes">Dynamic shared memory of the block (above 48 KB only after <see cref="AllowSharedMemory"/>).</param>
    public void Launch(nint function, string name, uint gridX, uint gridY, uint gridZ, uint blockX, void** args, uint sharedBytes = 0)
    {
        Launches++;
        int status;
        if (_programmaticLaunch)
        {
            CudaDriver.LaunchAttribute attribute = new() { Id = CudaDriver.CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION, Value = 1 };
            CudaDriver.LaunchConfig config = new()
            {
                GridDimX = gridX, GridDimY = gridY, GridDimZ = gridZ, BlockDimX = blockX, BlockDimY = 1, BlockDimZ = 1,
                SharedMemBytes = sharedBytes, Stream = _device.Stream, Attributes = &attribute, NumAttributes = 1,
            };
            status = CudaDriver.cuLaunchKernelEx(&config, function, args, null);
        }
        else
        {
            status = CudaDriver.cuLaunchKernel(function, gridX, gridY, gridZ, blockX, 1, 1, sharedBytes, _device.Stream, args, null);
        }

        if (status != 0)
        {
            CudaDriver.Check(status, $"launch {name}");   // the message is built only for a failure: launches allocate nothing
        }

        if (SyncAfterLaunch && !Capturing)
        {
            CudaDriver.Check(CudaDriver.cuStreamSynchronize(_device.Stream), $"after {name}");
        }
    }

    /// <summary>Element <paramref name="index"/> of an int array the kernel sources define (<c>extern "C" __device__ const int</c>).</summary>
    public int ReadInt(string global, int index)
    {
        CudaDriver.Check(CudaDriver.cuModuleGetGlobal_v2(out ulong pointer, out nuint bytes, _module.DangerousGetHandle(), global), $"cuModuleGetGlobal({global})");
        if ((ulong)(index + 1) * sizeof(int) > bytes)
        {
            throw new ArgumentOutOfRangeException(nameof(index), $"{global} holds {bytes / sizeof(int)} values");
        }

        int value;
        CudaDriver.Check(CudaDriver.cuMemcpyDtoHAsync_v2(&value, pointer + (ulong)index * sizeof(int), sizeof(int), _device.Stream), "cuMemcpyDtoH");
        CudaDriver.Check(CudaDriver.cuStreamSynchronize(_device.Stream), "cuStreamSynchronize");
        return value;
    }

    /// <summary>Lets a kernel take <paramref name="bytes"/> of dynamic shared memory (the default cap is 48 KB).</summary>
#pragma warning disable CA1822 // sets an attribute of one of this module's functions (see Function), in its context
    public void AllowSharedMemory(nint function, int bytes) =>
#pragma warning restore CA1822
        CudaDriver.Check(CudaDriver.cuFuncSetAttribute(function, CudaDriver.CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, bytes), "cuFuncSetAttribute");

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
