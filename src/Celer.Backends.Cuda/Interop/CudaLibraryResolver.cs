using System.Reflection;
using System.Runtime.InteropServices;

namespace Celer.Backends.Cuda.Interop;

/// <summary>
/// Finds the CUDA libraries by name: the loader's own search first, then the usual install folders (the CUDA
/// toolkit, the pip wheels that PyTorch brings, the distribution's library folder), newest major version first.
/// Never one hard-coded path: the set of folders differs from machine to machine.
/// </summary>
internal static class CudaLibraryResolver
{
    internal const string Driver = "cuda";
    internal const string Nvrtc = "nvrtc";
    internal const string Cublas = "cublas";
    internal const string CublasLt = "cublasLt";
    internal const string Nccl = "nccl";

    private static readonly Dictionary<string, string[]> Candidates = new(StringComparer.Ordinal)
    {
        [Driver] = ["libcuda.so.1", "libcuda.so", "nvcuda.dll"],
        [Nvrtc] = ["libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so"],
        [Cublas] = ["libcublas.so.13", "libcublas.so.12", "libcublas.so"],
        [CublasLt] = ["libcublasLt.so.13", "libcublasLt.so.12", "libcublasLt.so"],
        [Nccl] = ["libnccl.so.2", "libnccl.so"],   // NCCL keeps soname 2 across CUDA versions
    };

    private static int _registered;

    public static void Register()
    {
        if (Interlocked.Exchange(ref _registered, 1) == 0)
        {
            NativeLibrary.SetDllImportResolver(typeof(CudaLibraryResolver).Assembly, Resolve);
        }
    }

    /// <summary>Folders searched after the loader's default paths; CUDA_HOME / CUDA_PATH come first when set.</summary>
    public static IEnumerable<string> SearchFolders()
    {
        foreach (string variable in new[] { "CUDA_HOME", "CUDA_PATH" })
        {
            if (Environment.GetEnvironmentVariable(variable) is { Length: > 0 } home)
            {
                yield return Path.Combine(home, "lib64");
                yield return Path.Combine(home, "targets", "x86_64-linux", "lib");
            }
        }

        foreach (string root in new[] { "/usr/local" })
        {
            if (!Directory.Exists(root))
            {
                continue;
            }

            foreach (string cuda in Directory.EnumerateDirectories(root, "cuda*").OrderDescending(StringComparer.Ordinal))
            {
                yield return Path.Combine(cuda, "targets", "x86_64-linux", "lib");
                yield return Path.Combine(cuda, "lib64");
            }
        }

        // NVIDIA's pip wheels (as PyTorch installs them) keep the libraries under site-packages/nvidia/*/lib
        // (nvidia/nccl/lib for NCCL).
        foreach (string venv in new[] { "/opt/torch/.venv/lib" })
        {
            if (!Directory.Exists(venv))
            {
                continue;
            }

            foreach (string python in Directory.EnumerateDirectories(venv, "python3*"))
            {
                string nvidia = Path.Combine(python, "site-packages", "nvidia");
                if (!Directory.Exists(nvidia))
                {
                    continue;
                }

                foreach (string lib in Directory.EnumerateDirectories(nvidia).OrderDescending(StringComparer.Ordinal))
                {
                    yield return Path.Combine(lib, "lib");
                }
            }
        }

        yield return "/usr/lib/x86_64-linux-gnu";
        yield return "/usr/lib64";
        yield return "/usr/local/nvidia/lib64";
    }

    /// <summary>The include folder that holds cuda_bf16.h, for NVRTC's -I.</summary>
    public static string? IncludeFolder()
    {
        IEnumerable<string> roots = new[] { Environment.GetEnvironmentVariable("CUDA_HOME"), Environment.GetEnvironmentVariable("CUDA_PATH") }
            .Where(r => !string.IsNullOrEmpty(r))!
            .Concat(Directory.Exists("/usr/local")
                ? Directory.EnumerateDirectories("/usr/local", "cuda*").OrderDescending(StringComparer.Ordinal)
                : [])!;
        foreach (string? root in roots)
        {
            foreach (string candidate in new[] { Path.Combine(root!, "include"), Path.Combine(root!, "targets", "x86_64-linux", "include") })
            {
                if (File.Exists(Path.Combine(candidate, "cuda_bf16.h")))
                {
                    return candidate;
                }
            }
        }

        return null;
    }

    private static nint Resolve(string name, Assembly assembly, DllImportSearchPath? searchPath)
    {
        if (!Candidates.TryGetValue(name, out string[]? files))
        {
            return 0;
        }

        foreach (string file in files)
        {
            if (NativeLibrary.TryLoad(file, assembly, searchPath, out nint handle))
            {
                return handle;
            }
        }

        foreach (string folder in SearchFolders())
        {
            foreach (string file in files)
            {
                string path = Path.Combine(folder, file);
                if (File.Exists(path) && NativeLibrary.TryLoad(path, out nint handle))
                {
                    return handle;
                }
            }
        }

        throw new CudaException(name == Nccl
            ? $"NCCL ({string.Join(", ", files)}) was not found; tensor parallelism on GPUs needs NCCL 2 (a libnccl2 package, or the nvidia-nccl wheel PyTorch installs)."
            : $"The CUDA library '{name}' ({string.Join(", ", files)}) was not found. Is an NVIDIA driver and CUDA 12/13 installed?");
    }
}
