using System.Reflection;
using System.Security.Cryptography;
using System.Text;
using Celer.Backends.Cuda.Interop;

namespace Celer.Backends.Cuda;

/// <summary>
/// Compiles Celer's kernel sources (embedded .cu files) with NVRTC for the card's architecture at first use, and
/// caches the cubin on disk keyed by a hash of the source, the options, the architecture and NVRTC's version, so
/// later starts skip compilation. The cache folder is CELER_CACHE_DIR, else XDG_CACHE_HOME/celer, else ~/.cache/celer.
/// </summary>
internal static unsafe class KernelCompiler
{
    private const string ResourcePrefix = "Celer.Kernels.";

    /// <summary>All kernel files as one translation unit: common.cuh first, then every .cu file in name order.</summary>
    public static string LoadSource()
    {
        Assembly assembly = typeof(KernelCompiler).Assembly;
        var sb = new StringBuilder(ReadResource(assembly, ResourcePrefix + "common.cuh"));
        foreach (string name in assembly.GetManifestResourceNames().Where(n => n.EndsWith(".cu", StringComparison.Ordinal)).Order(StringComparer.Ordinal))
        {
            sb.AppendLine().AppendLine($"// ---- {name[ResourcePrefix.Length..]}");
            sb.AppendLine(ReadResource(assembly, name).Replace("#include \"common.cuh\"", string.Empty, StringComparison.Ordinal));
        }

        return sb.ToString();
    }

    public static byte[] Compile(string source, (int Major, int Minor) capability)
    {
        // sm_90a unlocks Hopper-only instructions; plain sm_XY elsewhere.
        string arch = capability.Major == 9 && capability.Minor == 0 ? "sm_90a" : $"sm_{capability.Major}{capability.Minor}";
        var options = new List<string> { $"--gpu-architecture={arch}", "--std=c++17", "-default-device" };
        if (CudaLibraryResolver.IncludeFolder() is { } include)
        {
            options.Add($"-I{include}");
        }

        Nvrtc.Check(Nvrtc.nvrtcVersion(out int major, out int minor), "nvrtcVersion");
        string key = Convert.ToHexString(SHA256.HashData(Encoding.UTF8.GetBytes($"{source}\n{string.Join(' ', options)}\nnvrtc {major}.{minor}")))[..32];
        string cachePath = Path.Combine(CacheFolder(), $"kernels-{arch}-{key}.cubin");
        if (File.Exists(cachePath))
        {
            return File.ReadAllBytes(cachePath);
        }

        byte[] cubin = CompileWithNvrtc(source, options);
        try
        {
            Directory.CreateDirectory(Path.GetDirectoryName(cachePath)!);
            string temp = cachePath + "." + Environment.ProcessId + ".tmp";
            File.WriteAllBytes(temp, cubin);
            File.Move(temp, cachePath, overwrite: true);
        }
        catch (IOException)
        {
            // A read-only or full cache folder only costs a recompilation next time.
        }
        catch (UnauthorizedAccessException)
        {
        }

        return cubin;
    }

    private static byte[] CompileWithNvrtc(string source, List<string> options)
    {
        byte[] src = Encoding.UTF8.GetBytes(source + "\0");
        byte[] name = "celer_kernels.cu\0"u8.ToArray();
        byte[][] opts = options.Select(o => Encoding.UTF8.GetBytes(o + "\0")).ToArray();
        nint program;
        fixed (byte* s = src, n = name)
        {
            Nvrtc.Check(Nvrtc.nvrtcCreateProgram(out program, s, n, 0, null, null), "nvrtcCreateProgram");
        }

        try
        {
            var handles = opts.Select(o => System.Runtime.InteropServices.GCHandle.Alloc(o, System.Runtime.InteropServices.GCHandleType.Pinned)).ToArray();
            int result;
            try
            {
                byte** ptrs = stackalloc byte*[opts.Length];
                for (int i = 0; i < opts.Length; i++)
                {
                    ptrs[i] = (byte*)handles[i].AddrOfPinnedObject();
                }

                result = Nvrtc.nvrtcCompileProgram(program, opts.Length, ptrs);
            }
            finally
            {
                foreach (var h in handles)
                {
                    h.Free();
                }
            }

            if (result != 0)
            {
                throw new CudaException($"NVRTC could not compile Celer's kernels ({string.Join(' ', options)}):\n{Log(program)}");
            }

            Nvrtc.Check(Nvrtc.nvrtcGetCUBINSize(program, out nuint size), "nvrtcGetCUBINSize");
            byte[] cubin = new byte[(int)size];
            fixed (byte* c = cubin)
            {
                Nvrtc.Check(Nvrtc.nvrtcGetCUBIN(program, c), "nvrtcGetCUBIN");
            }

            return cubin;
        }
        finally
        {
            Nvrtc.nvrtcDestroyProgram(ref program);
        }
    }

    private static string Log(nint program)
    {
        if (Nvrtc.nvrtcGetProgramLogSize(program, out nuint size) != 0 || size <= 1)
        {
            return "(no log)";
        }

        byte[] log = new byte[(int)size];
        fixed (byte* l = log)
        {
            _ = Nvrtc.nvrtcGetProgramLog(program, l);   // the log is best effort, on a compile that already failed
        }

        return Encoding.UTF8.GetString(log, 0, log.Length - 1);
    }

    private static string CacheFolder()
    {
        if (Environment.GetEnvironmentVariable("CELER_CACHE_DIR") is { Length: > 0 } explicitDir)
        {
            return Path.Combine(explicitDir, "kernels");
        }

        string root = Environment.GetEnvironmentVariable("XDG_CACHE_HOME") is { Length: > 0 } xdg
            ? xdg
            : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache");
        return Path.Combine(root, "celer", "kernels");
    }

    private static string ReadResource(Assembly assembly, string name)
    {
        using Stream stream = assembly.GetManifestResourceStream(name) ?? throw new CudaException($"Kernel source '{name}' is missing from the assembly.");
        using var reader = new StreamReader(stream);
        return reader.ReadToEnd();
    }
}
