using Celer.Backends.Cpu.Kernels;
using Celer.Models.Weights;
using Xunit;

namespace Celer.Backends.Cpu.Tests.Kernels;

public unsafe class KvCacheTests
{
    private const float Untouched = -12345f;

    [Fact]
    public void Write_PutsEachTokenAtItsSlot_AndSkipsPadding()
    {
        const int numKvHeads = 2, headDim = 3, numBlocks = 4, blockSize = 5, tokenSize = numKvHeads * headDim;
        var random = new Random(31);
        int[] slots = [7, -1, 0, 19, 12];
        float[] k = TestData.Floats(random, slots.Length * tokenSize);
        float[] v = TestData.Floats(random, slots.Length * tokenSize);
        float[] kCache = Enumerable.Repeat(Untouched, numBlocks * blockSize * tokenSize).ToArray();
        float[] vCache = (float[])kCache.Clone();
        fixed (float* pk = k, pv = v, pkc = kCache, pvc = vCache)
        fixed (int* ps = slots)
        {
            KvCache.Write(pk, pv, slots.Length, numKvHeads, headDim, ps, pkc, pvc);
        }

        AssertCache(k, v, kCache, vCache, slots.Select(s => (long)s).ToArray(), tokenSize, tokenSize);
    }

    [Fact]
    public void Write_WithStride_ReadsKAndVOutOfFusedQkv()
    {
        // One fused qkv row per token: q (4 heads), k (2 heads), v (2 heads) of head dim 8.
        const int numHeads = 4, numKvHeads = 2, headDim = 8, tokenSize = numKvHeads * headDim;
        const int stride = (numHeads + (2 * numKvHeads)) * headDim;
        var random = new Random(32);
        int[] slots = [3, 1, -1, 30, 16];
        float[] qkv = TestData.Floats(random, slots.Length * stride);
        float[] kCache = Enumerable.Repeat(Untouched, 2 * 16 * tokenSize).ToArray();
        float[] vCache = (float[])kCache.Clone();
        fixed (float* pqkv = qkv, pkc = kCache, pvc = vCache)
        fixed (int* ps = slots)
        {
            KvCache.Write(pqkv + (numHeads * headDim), pqkv + ((numHeads + numKvHeads) * headDim), slots.Length, numKvHeads, headDim, ps, pkc, pvc, stride);
        }

        float[] k = new float[slots.Length * stride];
        float[] v = new float[slots.Length * stride];
        for (int t = 0; t < slots.Length; t++)
        {
            Array.Copy(qkv, (t * stride) + (numHeads * headDim), k, t * stride, tokenSize);
            Array.Copy(qkv, (t * stride) + ((numHeads + numKvHeads) * headDim), v, t * stride, tokenSize);
        }

        AssertCache(k, v, kCache, vCache, slots.Select(s => (long)s).ToArray(), tokenSize, stride);
    }

    [Theory]
    [InlineData(DType.F8E4M3, 0.25f, 3f)]
    [InlineData(DType.F8E5M2, 1f, 0.5f)]
    public void Write_Fp8_StoresEachValueOverItsScale_AndSkipsPadding(DType type, float kScale, float vScale)
    {
        const int numKvHeads = 2, headDim = 3, tokenSize = numKvHeads * headDim;
        var random = new Random(33);
        int[] slots = [7, -1, 0, 19];
        float[] k = TestData.Floats(random, slots.Length * tokenSize).Select(x => x * 40).ToArray();
        float[] v = TestData.Floats(random, slots.Length * tokenSize);
        byte[] kCache = Enumerable.Repeat((byte)0xAA, 20 * tokenSize).ToArray();
        byte[] vCache = (byte[])kCache.Clone();
        fixed (float* pk = k, pv = v)
        fixed (byte* pkc = kCache, pvc = vCache)
        fixed (int* ps = slots)
        {
            KvCache.Write(pk, pv, slots.Length, numKvHeads, headDim, ps, pkc, pvc, new KvCacheFormat(type, kScale, vScale));
        }

        for (int slot = 0; slot < 20; slot++)
        {
            int t = Array.IndexOf(slots, slot);
            for (int i = 0; i < tokenSize; i++)
            {
                byte expectedK = t < 0 ? (byte)0xAA : Fp8.Encode(k[(t * tokenSize) + i] / kScale, type);
                byte expectedV = t < 0 ? (byte)0xAA : Fp8.Encode(v[(t * tokenSize) + i] / vScale, type);
                Assert.Equal(expectedK, kCache[(slot * tokenSize) + i]);
                Assert.Equal(expectedV, vCache[(slot * tokenSize) + i]);
            }
        }
    }

    [Fact]
    public void Write_Bf16_RoundsEachValueToNearestEven_AndSkipsPadding()
    {
        const int numKvHeads = 2, headDim = 3, tokenSize = numKvHeads * headDim;
        var random = new Random(34);
        int[] slots = [4, -1, 9];
        float[] k = TestData.Floats(random, slots.Length * tokenSize);
        float[] v = TestData.Floats(random, slots.Length * tokenSize);
        k[0] = BitConverter.UInt32BitsToSingle(0x3F808000);   // halfway between two bf16 values: to the even one, 0x3F80
        ushort[] kCache = Enumerable.Repeat((ushort)0xAAAA, 12 * tokenSize).ToArray();
        ushort[] vCache = (ushort[])kCache.Clone();
        fixed (float* pk = k, pv = v)
        fixed (ushort* pkc = kCache, pvc = vCache)
        fixed (int* ps = slots)
        {
            KvCache.Write(pk, pv, slots.Length, numKvHeads, headDim, ps, pkc, pvc, new KvCacheFormat(DType.BF16));
        }

        Assert.Equal(0x3F80, kCache[4 * tokenSize]);
        for (int slot = 0; slot < 12; slot++)
        {
            int t = Array.IndexOf(slots, slot);
            for (int i = 0; i < tokenSize; i++)
            {
                Assert.Equal(t < 0 ? (ushort)0xAAAA : Conversions.F32ToBF16(k[(t * tokenSize) + i]), kCache[(slot * tokenSize) + i]);
                Assert.Equal(t < 0 ? (ushort)0xAAAA : Conversions.F32ToBF16(v[(t * tokenSize) + i]), vCache[(slot * tokenSize) + i]);
            }
        }
    }

    private static void AssertCache(float[] k, float[] v, float[] kCache, float[] vCache, long[] slots, int tokenSize, int stride)
    {
        var written = new HashSet<long>();
        for (int t = 0; t < slots.Length; t++)
        {
            if (slots[t] < 0)
            {
                continue;
            }

            written.Add(slots[t]);
            Assert.Equal(k.AsSpan(t * stride, tokenSize).ToArray(), kCache.AsSpan((int)slots[t] * tokenSize, tokenSize).ToArray());
            Assert.Equal(v.AsSpan(t * stride, tokenSize).ToArray(), vCache.AsSpan((int)slots[t] * tokenSize, tokenSize).ToArray());
        }

        for (int slot = 0; slot < kCache.Length / tokenSize; slot++)
        {
            if (!written.Contains(slot))
            {
                Assert.All(kCache.AsSpan(slot * tokenSize, tokenSize).ToArray(), value => Assert.Equal(Untouched, value));
                Assert.All(vCache.AsSpan(slot * tokenSize, tokenSize).ToArray(), value => Assert.Equal(Untouched, value));
            }
        }
    }
}
