namespace Celer.Models.Weights;

/// <summary>Element types of stored weights and of the KV cache, named as safetensors names them (FP8 with an underscore: <see cref="DTypeExtensions.SafetensorsName"/>).</summary>
public enum DType
{
    F32,
    F16,
    BF16,

    /// <summary>FP8 with 4 exponent and 3 mantissa bits (OCP E4M3, max 448): <c>--kv-cache-dtype fp8</c>, FP8 checkpoints' weights.</summary>
    F8E4M3,

    /// <summary>FP8 with 5 exponent and 2 mantissa bits (OCP E5M2): <c>--kv-cache-dtype fp8_e5m2</c>.</summary>
    F8E5M2,

    /// <summary>Signed bytes: compressed-tensors' unpacked INT8 weights and zero points.</summary>
    I8,

    /// <summary>32-bit integers: the words GPTQ, AWQ and compressed-tensors pack 4- and 8-bit codes into, and GPTQ's g_idx.</summary>
    I32,

    /// <summary>64-bit integers: compressed-tensors' <c>weight_shape</c> (torch's default integer tensor).</summary>
    I64,

    /// <summary>Unsigned bytes: MXFP4's packed E2M1 pairs (<c>*_blocks</c>) and E8M0 scales (<c>*_scales</c>).</summary>
    U8,
}

public static class DTypeExtensions
{
    public static int ByteSize(this DType dtype) => dtype switch
    {
        DType.I64 => 8,
        DType.F32 or DType.I32 => 4,
        DType.F16 or DType.BF16 => 2,
        DType.F8E4M3 or DType.F8E5M2 or DType.I8 or DType.U8 => 1,
        _ => throw new ArgumentOutOfRangeException(nameof(dtype), dtype, null),
    };

    /// <summary>The dtype string a safetensors header writes for <paramref name="dtype"/>.</summary>
    public static string SafetensorsName(this DType dtype) => dtype switch
    {
        DType.F8E4M3 => "F8_E4M3",
        DType.F8E5M2 => "F8_E5M2",
        _ => dtype.ToString(),
    };

    /// <summary>Parses the dtype string of a safetensors header (<see cref="SafetensorsName"/> of a <see cref="DType"/>).</summary>
    public static bool TryParseSafetensors(string name, out DType dtype)
    {
        foreach (DType candidate in Enum.GetValues<DType>())
        {
            if (candidate.SafetensorsName() == name)
            {
                dtype = candidate;
                return true;
            }
        }

        dtype = default;
        return false;
    }

    /// <summary>
    /// Parses a torch dtype name as config.json writes it in <c>torch_dtype</c> / <c>dtype</c>
    /// ("bfloat16", "float16", "float32", and the aliases "half", "float").
    /// </summary>
    public static bool TryParseTorch(string name, out DType dtype)
    {
        switch (name)
        {
            case "float32" or "float": dtype = DType.F32; return true;
            case "float16" or "half": dtype = DType.F16; return true;
            case "bfloat16": dtype = DType.BF16; return true;
            default: dtype = default; return false;
        }
    }
}
