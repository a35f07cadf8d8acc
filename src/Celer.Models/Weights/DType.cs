namespace Celer.Models.Weights;

/// <summary>Element types of stored weights, named as safetensors names them.</summary>
public enum DType
{
    F32,
    F16,
    BF16,
}

public static class DTypeExtensions
{
    public static int ByteSize(this DType dtype) => dtype switch
    {
        DType.F32 => 4,
        DType.F16 or DType.BF16 => 2,
        _ => throw new ArgumentOutOfRangeException(nameof(dtype), dtype, null),
    };

    /// <summary>Parses the dtype string of a safetensors header ("BF16", "F16", "F32").</summary>
    public static bool TryParseSafetensors(string name, out DType dtype)
    {
        switch (name)
        {
            case "F32": dtype = DType.F32; return true;
            case "F16": dtype = DType.F16; return true;
            case "BF16": dtype = DType.BF16; return true;
            default: dtype = default; return false;
        }
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
