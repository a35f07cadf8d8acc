using System.Diagnostics;
using Celer.TestSupport;

namespace Celer.Backends.Cuda.Tests;

/// <summary>
/// The tensor-core attention kernels (and moe.cu's, rope.cu's, encoder.cu's, skinny_gemm.cu's and the FP8 kernels', below) where no GPU is (CI):
/// flash_attention.cu and flash_decode.cu as they are, built by the host's C++ compiler against a CUDA emulation
/// (Emulation/cuda_emulation.cuh: fibers for threads, mma.sync, ldmatrix and cp.async from their PTX definitions) and
/// compared with a double-precision reference over every head size, 16-bit and fp8 cache, GQA groups 1–16, block sizes,
/// sliding windows and splits (Emulation/flash_emulation_test.cpp; each configuration at three head sizes, rotating with
/// the seed), with both e4m3 conversion paths. On a GPU machine the kernels run for real
/// in <see cref="OperatorParityTests"/>, so this test skips there.
/// </summary>
public sealed class KernelEmulationTests
{
    [Fact]
    public async Task Flash_kernels_match_the_reference_under_emulation()
    {
        string compiler = EmulationCompiler("OperatorParityTests");
        DirectoryInfo build = EmulationBuild("flash_emulation_test.cpp", "flash_attention.cu", "flash_decode.cu");
        try
        {
            // FLASH_FP8_CVT=0: the bit-exact integer e4m3 path of sm_80/sm_89; 1: sm_90's cvt instruction, emulated, which
            // changes only the e4m3 caches' conversion, so that build runs those alone.
            await Task.WhenAll(Compile(0), Compile(1));
            // The integer path's attention sweep in two runs (16-bit caches, fp8 caches), so that the five runs, sharing the
            // cores, end closer together. Alone on one core (2026-12-02): 117, 149, 115, 95 and 32 s; the other kernels' tests below
            // take about 340 s between them.
            var runs = new (string Binary, string[] Args)[]
            {
                ("test_int", ["attention", "7", "16"]), ("test_int", ["attention", "11", "8"]), ("test_cvt", ["attention", "8", "e4m3"]),
                ("test_int", ["decode", "9"]), ("test_cvt", ["decode", "10", "e4m3"]),
            };
            (int Code, string Output)[] results = await Task.WhenAll(runs.Select(r => Run(Path.Combine(build.FullName, r.Binary), r.Args)));
            for (int i = 0; i < runs.Length; i++)
            {
                string lastLine = results[i].Output.TrimEnd().Split('\n')[^1];
                Assert.True(results[i].Code == 0 && lastLine.EndsWith("-> PASS", StringComparison.Ordinal),
                    $"{runs[i].Binary} {string.Join(' ', runs[i].Args)} exited {results[i].Code}:\n{Tail(results[i].Output)}");
            }
        }
        finally
        {
            build.Delete(recursive: true);
        }

        Task Compile(int hardwareConversion) => CompileEmulation(
            compiler, build, "flash_emulation_test.cpp", hardwareConversion == 1 ? "test_cvt" : "test_int", $"-DFLASH_FP8_CVT={hardwareConversion}");
    }

    /// <summary>
    /// moe.cu's kernels as they are (routing with ties, the align kernel's padded per-expert list, the tensor-core
    /// grouped GEMMs with 16- and 64-row tiles, the CUDA-core GEMM, the sum, add_sigmoid_gated; MXFP4, FP8 and 4-bit integer
    /// experts, the last decoded by int4_gemm.cu's int4_dequant8) in bf16, fp16 and fp32,
    /// on shapes off the tile sizes, against a double-precision reference (Emulation/moe_emulation_test.cpp).
    /// </summary>
    [Fact]
    public async Task Moe_kernels_match_the_reference_under_emulation()
    {
        await BuildAndRun("MoeParityTests", "moe_emulation_test.cpp", ["elementwise.cu", "flash_attention.cu", "int4_gemm.cu", "moe.cu"], "7", "8");
    }

    /// <summary>
    /// rope.cu's prepare_attention as it is (a warp per row and head, several per warp when the grid is short): the q/k
    /// split, Qwen3's and Gemma 3's q/k norms, full and partial RoPE, the stores at each row's slot and none for padding
    /// rows, in bf16 and fp16, against a host reference (Emulation/rope_emulation_test.cpp).
    /// </summary>
    [Fact]
    public async Task Prepare_attention_matches_the_reference_under_emulation()
    {
        await BuildAndRun("OperatorParityTests", "rope_emulation_test.cpp", ["rope.cu"], "7");
    }

    /// <summary>
    /// encoder.cu's kernels as they are (LayerNorm and the residual LayerNorm on the vectorized path with 1–4 vectors per
    /// thread and on the element-wise one, in place too; GELU's erf and tanh forms off 16-byte alignment; the input
    /// embeddings with and without token types, RoBERTa's position offset, a clamped token id) in bf16, fp16 and fp32,
    /// blocks of up to 1024 threads, against a double-precision reference (Emulation/encoder_emulation_test.cpp).
    /// </summary>
    [Fact]
    public async Task Encoder_kernels_match_the_reference_under_emulation()
    {
        await BuildAndRun("EncoderOperatorParityTests", "encoder_emulation_test.cpp", ["elementwise.cu", "encoder.cu"], "7", "8");
    }

    /// <summary>
    /// skinny_gemm.cu's kernels as they are: the CUDA-core GEMM of 1–4 rows and the tensor-core one of 8–64 in fp32, fp16
    /// and bf16 against a double-precision reference, and the gated GEMM (gate/up with SiLU or gelu(tanh) in its
    /// epilogue) bit for bit against the plain GEMM followed by elementwise.cu's activation kernels
    /// (Emulation/skinny_emulation_test.cpp).
    /// </summary>
    [Fact]
    public async Task Skinny_kernels_match_the_reference_under_emulation()
    {
        await BuildAndRun("OperatorParityTests", "skinny_emulation_test.cpp", ["elementwise.cu", "flash_attention.cu", "skinny_gemm.cu"], "7", "8");
    }

    /// <summary>
    /// int4_gemm.cu's tensor-core W4A16 kernels as they are (int4_gemm_tc; int4_gemm_tiled's cp.async pipeline with row
    /// tiles, blocks of 4 and 8 warps, split k summed by the last block, groups of 32 to per channel, bias, fp32 output) in fp16
    /// and bf16, on weights packed from the layout's definition, against a double-precision reference
    /// (Emulation/int4_emulation_test.cpp). On a GPU machine <see cref="Int4GemmTests"/> runs them for real.
    /// </summary>
    [Fact]
    public async Task Int4_kernels_match_the_reference_under_emulation()
    {
        await BuildAndRun("Int4GemmTests", "int4_emulation_test.cpp", ["flash_attention.cu", "int4_gemm.cu"], "7", "8");
    }

    /// <summary>
    /// fp8_quant.cu's input quantization and fp8_skinny_gemm.cu's tensor-core GEMM as they are: quantize_fp8's codes and
    /// scales in the three schemes byte for byte against the e4m3 format's definition, then the GEMM on those codes
    /// (blocks of 4 and 8 warps, per-row and 128 x 128 block scales, 1, 3 and 8 rows, partial chunks and groups, warps
    /// that reload both register stages) in fp32, fp16 and bf16 against a double-precision reference
    /// (Emulation/fp8_emulation_test.cpp; mma.sync m16n8k32 e4m3 emulated from its PTX fragment layout); and the kernels
    /// that write a layer's codes as they store its input (add_rms_norm_fp8, silu_mul_fp8, gelu_tanh_mul_fp8) against
    /// the unfused kernels and the same definition, byte for byte.
    /// </summary>
    [Fact]
    public async Task Fp8_kernels_match_the_reference_under_emulation()
    {
        await BuildAndRun("Fp8GemmTests", "fp8_emulation_test.cpp", ["elementwise.cu", "fp8_quant.cu", "fp8_skinny_gemm.cu", "rmsnorm.cu"], "7", "8");
    }

    /// <summary>
    /// Builds an emulation test program (Emulation/<paramref name="test"/>) against <paramref name="kernels"/> as they are
    /// and runs it once per seed; each run must exit 0 and end with "-> PASS".
    /// </summary>
    private static async Task BuildAndRun(string realTests, string test, string[] kernels, params string[] seeds)
    {
        string compiler = EmulationCompiler(realTests);
        DirectoryInfo build = EmulationBuild(test, kernels);
        try
        {
            string name = test.Replace("_emulation_test.cpp", "_test", StringComparison.Ordinal);
            await CompileEmulation(compiler, build, test, name);
            foreach (string seed in seeds)
            {
                (int exit, string output) = await Run(Path.Combine(build.FullName, name), [seed]);
                Assert.True(exit == 0 && output.TrimEnd().EndsWith("-> PASS", StringComparison.Ordinal), $"{name} {seed} exited {exit}:\n{Tail(output)}");
            }
        }
        finally
        {
            build.Delete(recursive: true);
        }
    }

    /// <summary>The host's g++; skips the test where a GPU runs the kernels for real (in <paramref name="realTests"/>) or no g++ is found.</summary>
    private static string EmulationCompiler(string realTests)
    {
        Assert.SkipWhen(CudaDevice.IsAvailable(), $"A GPU is present: the kernels run for real in {realTests}.");
        string? compiler = FindOnPath("g++");
        Assert.SkipWhen(compiler is null, "No g++ on this machine to build the emulation.");
        return compiler!;
    }

    /// <summary>
    /// A temporary folder with the emulation as common.cuh, the test program and the kernel sources as they are in the
    /// repo (the program includes them by name); the caller deletes it.
    /// </summary>
    private static DirectoryInfo EmulationBuild(string test, params string[] kernels)
    {
        DirectoryInfo build = Directory.CreateTempSubdirectory("celer-kernel-emulation");
        string kernelDir = Path.Combine(RepoPaths.Root, "src", "Celer.Backends.Cuda", "Kernels");
        string emulation = Path.Combine(RepoPaths.Root, "tests", "Celer.Backends.Cuda.Tests", "Emulation");
        File.Copy(Path.Combine(emulation, "cuda_emulation.cuh"), Path.Combine(build.FullName, "common.cuh"));
        File.Copy(Path.Combine(emulation, test), Path.Combine(build.FullName, test));
        foreach (string kernel in kernels)
        {
            File.Copy(Path.Combine(kernelDir, kernel), Path.Combine(build.FullName, kernel));
        }

        return build;
    }

    private static async Task CompileEmulation(string compiler, DirectoryInfo build, string test, string binary, params string[] defines)
    {
        (int code, string log) = await Run(compiler, ["-std=c++17", "-O2", "-fno-strict-aliasing", "-w", .. defines,
            "-o", Path.Combine(build.FullName, binary), Path.Combine(build.FullName, test)]);
        Assert.True(code == 0, $"g++ failed:\n{Tail(log)}");
    }

    // A guard against a hang, not a speed target: on a 2-core machine in a slow phase the flash emulation's runs, sharing
    // the cores, took up to 13 minutes (2026-12-01), where a whole CI run had taken 12.5 the day before.
    private static readonly TimeSpan RunLimit = TimeSpan.FromMinutes(20);

    private static async Task<(int Code, string Output)> Run(string file, string[] args)
    {
        var start = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (string arg in args)
        {
            start.ArgumentList.Add(arg);
        }

        using Process process = Process.Start(start)!;
        Task<string> stdout = process.StandardOutput.ReadToEndAsync(), stderr = process.StandardError.ReadToEndAsync();
        try
        {
            await process.WaitForExitAsync().WaitAsync(RunLimit);
        }
        catch (TimeoutException)
        {
            // Left running, an emulation past its limit would take the machine's cores from every test after it.
            process.Kill(entireProcessTree: true);
            throw;
        }

        return (process.ExitCode, await stdout + await stderr);
    }

    private static string Tail(string text) => string.Join('\n', text.Split('\n').TakeLast(30));

    private static string? FindOnPath(string name) =>
        (Environment.GetEnvironmentVariable("PATH") ?? "").Split(Path.PathSeparator)
            .Select(dir => Path.Combine(dir, name)).FirstOrDefault(File.Exists);
}
