using Celer.Models.Backend;
using Celer.Models.Quantization;

namespace Celer.Backends.Cuda;

/// <summary>Gemma's operators: its RMSNorm (weight 1 + w, one rounding) and fused residual step, GeGLU, logit soft-capping.</summary>
public sealed unsafe partial class CudaBackend
{
    public void GemmaRmsNorm(Tensor x, int rows, Tensor weight, float eps, Tensor y) => LaunchRmsNorm("gemma_rms_norm", x, rows, weight, eps, y);

    public void GemmaAddRmsNorm(Tensor x, Tensor residual, int rows, Tensor postNorm, Tensor nextNorm, float eps)
    {
        int size = (int)nextNorm.ElementCount;
        ulong xp = (ulong)x.Data, rp = (ulong)residual.Data, pw = (ulong)postNorm.Data, nw = (ulong)nextNorm.Data;
        void** args = stackalloc void*[] { &xp, &rp, &pw, &nw, &size, &eps };
        Launch("gemma_add_rms_norm", (uint)rows, 1, Threads(Vectors(size)), args);
    }

    public void GeluTanhMul(Tensor gateUp, int rows, Tensor output, ActivationQuantization? quantizeFor = null) =>
        LaunchGatedActivation("gelu_tanh_mul", "gelu_tanh_mul_fp8", gateUp, rows, output, quantizeFor);

    public void SoftCap(Tensor x, int rows, float cap)
    {
        if (x.DType != Models.Weights.DType.F32)
        {
            throw new NotSupportedException($"SoftCap takes the fp32 logits, not a {x.DType} tensor.");
        }

        ulong xp = (ulong)x.Data;
        long n = rows * x.Columns;
        void** args = stackalloc void*[] { &xp, &n, &cap };
        _kernels.Launch("logit_softcap", Blocks(n), 1, 256, args);
    }
}
