using System.Runtime.InteropServices;

namespace Celer.Backends.Cuda.Interop;

/// <summary>NVRTC, the run-time CUDA C++ compiler. Reference: https://docs.nvidia.com/cuda/nvrtc/</summary>
internal static unsafe partial class Nvrtc
{
    static Nvrtc() => CudaLibraryResolver.Register();

    public static void Check(int result, string call)
    {
        if (result != 0)
        {
            throw new CudaException($"{call} failed: {Marshal.PtrToStringUTF8(nvrtcGetErrorString(result))} ({result})");
        }
    }

    [LibraryImport(CudaLibraryResolver.Nvrtc)] public static partial int nvrtcVersion(out int major, out int minor);
    [LibraryImport(CudaLibraryResolver.Nvrtc)]
    public static partial int nvrtcCreateProgram(out nint program, byte* source, byte* name, int numHeaders, byte** headers, byte** includeNames);
    [LibraryImport(CudaLibraryResolver.Nvrtc)] public static partial int nvrtcCompileProgram(nint program, int numOptions, byte** options);
    [LibraryImport(CudaLibraryResolver.Nvrtc)] public static partial int nvrtcGetProgramLogSize(nint program, out nuint size);
    [LibraryImport(CudaLibraryResolver.Nvrtc)] public static partial int nvrtcGetProgramLog(nint program, byte* log);
    [LibraryImport(CudaLibraryResolver.Nvrtc)] public static partial int nvrtcGetCUBINSize(nint program, out nuint size);
    [LibraryImport(CudaLibraryResolver.Nvrtc)] public static partial int nvrtcGetCUBIN(nint program, byte* cubin);
    [LibraryImport(CudaLibraryResolver.Nvrtc)] public static partial int nvrtcDestroyProgram(ref nint program);
    [LibraryImport(CudaLibraryResolver.Nvrtc)] public static partial nint nvrtcGetErrorString(int result);
}
