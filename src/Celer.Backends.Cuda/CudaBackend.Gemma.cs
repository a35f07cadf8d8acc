using Celer.Models.Backend;

namespace Celer.Backends.Cuda;

/// <summary>Gemma's operators: its RMSNorm (weight 1 + w, one rounding) and fused residual step, GeGLU, logit soft-capping.</summary>
public sealed unsafe partial class CudaBackend
{
    public void GemmaRmsNorm(Tensor x, int rows, Tensor weight, float eps, Tensor y)
    {
        int size = (int)weight.ElementCount;
        long normRows = rows * (x.Columns / size);
        ulong xp = (ulong)x.Data, wp = (ulong)weight.Data, yp = (ulong)y.Data;
        void** args = stackalloc void*[] { &xp, &wp, &size, &eps, &yp };
        Launch("gemma_rms_norm", (uint)normRows, 1, Threads(Vectors(size)), args);
    }

    public void GemmaAddRmsNorm(Tensor x, Tensor residual, int rows, Tensor postNorm, Tensor nextNorm, float eps)
    {
        int size = (int)nextNorm.ElementCount;
        ulong xp = (ulong)x.Data, rp = (ulong)residual.Data, pw = (ulong)postNorm.Data, nw = (ulong)nextNorm.Data;
        void** args = stackalloc void*[] { &xp, &rp, &pw, &nw, &size, &eps };
        Launch("gemma_add_rms_norm", (uint)rows, 1, Threads(Vectors(size)), args);
    }

    public void GeluTanhMul(Tensor gateUp, int rows, Tensor output)
    {
        const int threads = 128;
        int d = (int)output.Columns;
        ulong g = (ulong)gateUp.Data, o = (ulong)output.Data;
        void** args = stackalloc void*[] { &g, &d, &o };
        Launch("gelu_tanh_mul", (uint)rows, (uint)((Vectors(d) + threads - 1) / threads), threads, args);
    }

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
